"""Runs inside gdb (``gdb -x agent.py``): the export and import code of the state-transfer
experiment, generated at run time from StateAlyzr's variable list and the binary's DWARF types.

Export walks each transferred variable's storage by its DWARF type: struct fields, array
elements, and pointers to heap memory, followed transitively (a heap block's extent is its glibc
chunk size; its elements are the pointee type). Every object is recorded with its bytes and the
pointer fields inside it. Import allocates each heap object afresh in the standby (malloc in the
inferior), writes the bytes, and relocates every recorded pointer; globals keep their addresses
(non-PIE binary). CFG (a JSON file path) is set by the caller before this file runs.
"""
import bisect
import json

import gdb  # noqa: F401  (provided by gdb)


def load(path):
    with open(path) as f:
        return json.load(f)


def dump(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f)


cfg = load(CFG)  # noqa: F821
inf = None


def heap_ranges():
    pid = gdb.selected_inferior().pid
    out = []
    with open(f"/proc/{pid}/maps") as f:
        lines = f.readlines()
    for line in lines:
        if line.rstrip().endswith("[heap]"):
            a, b = line.split()[0].split("-")
            out.append((int(a, 16), int(b, 16)))
    return out


GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15", "rip", "eflags")


def call(fn, arg):
    """fn(arg) in the stopped inferior, touching only the general registers.

    gdb's own inferior call saves and restores the whole register file; gdb 13 writes the
    extended (xsave) state back with its own size for it, which a kernel with AMX refuses
    ("Couldn't write extended state status: Bad address"). So do what gdb does by hand with
    the general registers alone: a return address at the program's entry point with a
    breakpoint on it, the argument in rdi, an aligned stack below the red zone. We stop only at
    function entries, where the vector registers are the caller's to lose (SysV ABI)."""
    frame = gdb.selected_frame()
    saved = {r: int(frame.read_register(r)) for r in GPRS}
    ret = int(gdb.parse_and_eval("&_start"))
    sp = ((saved["rsp"] - 512) & ~0xF) - 8          # at a callee's entry rsp is 8 mod 16
    inf.write_memory(sp, ret.to_bytes(8, "little"))
    trap = gdb.Breakpoint(f"*{ret:#x}", internal=True)
    try:
        gdb.execute(f"set $rdi = {arg}")
        gdb.execute(f"set $rsp = {sp:#x}")
        gdb.execute(f"set $rip = {int(gdb.parse_and_eval(f'&{fn}')):#x}")
        gdb.execute("continue")
        frame = gdb.selected_frame()
        if int(frame.read_register("rip")) != ret:
            raise gdb.GdbError(f"{fn}({arg}) did not return to the entry-point trap")
        result = int(frame.read_register("rax"))
    finally:
        trap.delete()
    for r in GPRS:
        gdb.execute(f"set ${r} = {saved[r]:#x}")
    return result


def in_heap(p, hr):
    return any(a <= p < b for a, b in hr)


def chunk_usable(p):
    """glibc: the size field sits just before the user pointer; usable = chunk size - 8."""
    sz = int.from_bytes(bytes(inf.read_memory(p - 8, 8)), "little")
    if sz & 2:            # mmapped chunk: not in [heap]; be conservative
        return None
    return (sz & ~7) - 8


class Walker:
    def __init__(self):
        self.hr = heap_ranges()
        self.objs = {}        # addr -> [size, bytes, [(offset, target)]]

    def walk_var(self, sym):
        v = gdb.parse_and_eval(sym)
        addr = int(v.address)
        self.walk(addr, v.type, 1)

    def walk(self, addr, typ, count):
        if addr in self.objs:
            return
        size = max(1, typ.sizeof) * count
        try:
            data = bytes(inf.read_memory(addr, size))
        except gdb.MemoryError:
            return
        rec = [size, data, [], str(typ.strip_typedefs())]
        self.objs[addr] = rec
        for i in range(count):
            self.scan(addr, addr + i * typ.sizeof, typ, rec)

    def scan(self, base, addr, typ, rec):
        t = typ.strip_typedefs()
        code = t.code
        if code == gdb.TYPE_CODE_STRUCT:
            for f in t.fields():
                if f.bitpos is None or f.bitpos % 8 or f.bitsize:
                    continue
                self.scan(base, addr + f.bitpos // 8, f.type, rec)
        elif code == gdb.TYPE_CODE_ARRAY:
            el = t.target()
            if el.sizeof and el.strip_typedefs().code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_ARRAY,
                                                          gdb.TYPE_CODE_PTR):
                for i in range(t.sizeof // el.sizeof):
                    self.scan(base, addr + i * el.sizeof, el, rec)
        elif code == gdb.TYPE_CODE_PTR:
            off = addr - base
            p = int.from_bytes(rec[1][off:off + 8], "little")
            if not p:
                return
            tt = t.target().strip_typedefs()
            if tt.code == gdb.TYPE_CODE_FUNC:
                return
            if cfg["globals_lo"] <= p < cfg["globals_hi"]:
                # a global reached through the pointer (hostcount's fwd_ctr -> forwarded): same
                # address in the standby, so sent as is and never relocated
                if tt.sizeof and tt.code != gdb.TYPE_CODE_VOID:
                    self.walk(p, tt, 1)
                return
            if not in_heap(p, self.hr):
                return            # library memory (FILE, pcap_t, the packet buffer)
            rec[2].append((off, p))
            el = tt if tt.sizeof and tt.code != gdb.TYPE_CODE_VOID else gdb.lookup_type("char")
            usable = chunk_usable(p)
            n = max(1, (usable or el.sizeof) // max(1, el.sizeof))
            self.walk(p, el, n)

    def nbytes(self):
        return sum(r[0] for r in self.objs.values())

    def export(self):
        return [{"addr": a, "size": r[0], "hex": r[1].hex(), "ptrs": r[2]} for a, r in self.objs.items()]


def state_of(syms):
    w = Walker()
    for s in syms:
        w.walk_var(s)
    return w


def flow_bytes(w, sym, fields, values):
    """Model (ii) for one keyed variable: only the part of its state in the last packet's
    flowspace. From the variable's storage (already walked into w), the heap objects holding the
    packet's values of every flowspace field (network-order bytes, fields of 2+ bytes), what they
    point to, and one pointer slot per link on the path to them. An array of scalars keyed by one
    1-byte field (a TTL histogram) sends the one element the value indexes."""
    v = gdb.parse_and_eval(sym)
    root = int(v.address)
    wide = [bytes.fromhex(values[f]) for f in fields if f in values and len(values[f]) >= 4]
    if not wide:
        t = v.type.strip_typedefs()
        if t.code == gdb.TYPE_CODE_ARRAY and t.target().sizeof and len(fields) == 1 and fields[0] in values:
            return t.target().sizeof
        return w.objs[root][0] if root in w.objs else 0
    parent = {root: None}
    order = [root]
    for a in order:
        for _off, p in w.objs.get(a, [0, b"", [], ""])[2]:
            if p in w.objs and p not in parent:
                parent[p] = a
                order.append(p)
    chosen = set()
    links = set()
    for a in order[1:]:
        data = w.objs[a][1]
        if all(x in data for x in wide):
            st = [a]
            kind = w.objs[a][3]
            while st:
                x = st.pop()
                if x in chosen:
                    continue
                chosen.add(x)
                # what the entry points to, but not its siblings (a `next` of the same type
                # links the table, it is not this flow's state)
                st.extend(p for _o, p in w.objs[x][2] if p in w.objs and w.objs[p][3] != kind)
            y = a
            while parent.get(y) is not None:
                links.add((parent[y], y))
                y = parent[y]
    return sum(w.objs[a][0] for a in chosen) + 8 * len(links)


def read_bits():
    n = len(cfg["bits"])
    if not n:
        return []
    a = int(gdb.parse_and_eval("&__sa_updated[0]"))
    b = bytes(inf.read_memory(a, n))
    inf.write_memory(a, bytes(n))          # reset for the next packet
    return [cfg["bits"][i] for i in range(n) if b[i]]


def primary():
    rows = []
    last_sent = {}                         # variable -> export of its last (iii) copy
    k = cfg["switch_at"]
    n = 0
    gdb.execute(f"run {cfg['args']} > {cfg['stdout']} 2> {cfg['stderr']}")
    while gdb.selected_inferior().pid:
        n += 1                             # stopped at the entry of packet n: packet n-1 is done
        if n > 1:
            w_all = state_of(cfg["model_i"])
            vals = cfg["packet_fields"][n - 2] if n - 2 < len(cfg["packet_fields"]) else {}
            ii = 0
            for sym in cfg["model_i"]:
                ks = cfg["keyed"].get(sym)
                if ks:
                    ii += flow_bytes(w_all, sym, ks, vals)
                else:                      # flowspace "*": every packet's state
                    one = Walker()
                    one.walk_var(sym)
                    ii += one.nbytes()
            upd = [v for v in read_bits() if v in cfg["sym_of"]]
            w_upd = state_of([cfg["sym_of"][v] for v in upd])
            iii = 0                        # (iii): (ii) restricted to the variables marked updated
            for v in upd:
                sym = cfg["sym_of"][v]
                ks = cfg["keyed"].get(sym)
                if ks:
                    iii += flow_bytes(w_all, sym, ks, vals)
                else:
                    one = Walker()
                    one.walk_var(sym)
                    iii += one.nbytes()
            for v in upd:
                last_sent[v] = state_of([cfg["sym_of"][v]]).export()
            rows.append({"packet": n - 1, "model_i_bytes": w_all.nbytes(), "model_ii_bytes": ii,
                         "model_iii_bytes": iii, "marked_whole_bytes": w_upd.nbytes(),
                         "model_iii_vars": len(upd)})
            if n - 1 == k:
                dump(w_all.export(), cfg["export_i"])
                dump([o for objs in last_sent.values() for o in objs], cfg["export_iii"])
                call("fflush", 0)
                gdb.execute("kill")
                break
        gdb.execute("continue")
    dump(rows, cfg["rows"])


def standby():
    gdb.execute(f"run {cfg['args']} > {cfg['stdout']} 2> {cfg['stderr']}")
    if gdb.selected_inferior().pid:
        objs = load(cfg["import"])
        hr = heap_ranges()
        old = sorted(o["addr"] for o in objs)
        by = {o["addr"]: o for o in objs}
        new = {}
        for o in objs:                     # globals keep their address; heap blocks are new
            a = o["addr"]
            if in_heap(a, hr) or not cfg["globals_lo"] <= a < cfg["globals_hi"]:
                new[a] = call("malloc", o["size"])
            else:
                new[a] = a
        for o in objs:
            inf.write_memory(new[o["addr"]], bytes.fromhex(o["hex"]))
        for o in objs:
            for off, p in o["ptrs"]:
                i = bisect.bisect_right(old, p) - 1
                if i < 0 or p >= old[i] + by[old[i]]["size"]:
                    continue                # not exported: leave it
                q = new[old[i]] + (p - old[i])
                inf.write_memory(new[o["addr"]] + off, q.to_bytes(8, "little"))
        for b in BPS:
            b.delete()
        gdb.execute("continue")


gdb.execute("set pagination off")
gdb.execute("set confirm off")
inf = gdb.selected_inferior()
BPS = [gdb.Breakpoint(e, internal=True) for e in cfg["entries"]]
(primary if cfg["mode"] == "primary" else standby)()
