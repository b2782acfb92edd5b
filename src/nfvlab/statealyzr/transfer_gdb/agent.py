"""Runs inside gdb (``gdb -x agent.py``): the export and import code of the state-transfer
experiment, generated at run time from StateAlyzr's variable list and the binary's DWARF types.

Export walks each transferred variable's storage by its DWARF type: struct fields, array
elements, and pointers to heap memory, followed transitively. A heap object is the whole malloc
block a pointer lands in (from glibc's chunk headers, so a wrapper's own header in front of the
pointer it hands out, p0f's ck_alloc, travels with it); its elements from the pointer on are the
pointee type. Every object is recorded with its bytes, the pointer fields inside it, and the
handle fields (pointers to library-owned structs: pcap_t, FILE) the standby keeps its own values
of. Import allocates each heap block afresh in the standby (malloc in the inferior), writes the
bytes, and relocates every recorded pointer; globals keep their addresses (non-PIE binary).
CFG (a JSON file path) is set by the caller before this file runs.
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


def calls(fn, args):
    """fn(arg) for every arg, in the stopped inferior, touching only the general registers.

    gdb's own inferior call saves and restores the whole register file; gdb 13 writes the
    extended (xsave) state back with its own size for it, which a kernel with AMX refuses
    ("Couldn't write extended state status: Bad address"). So do what gdb does by hand with
    the general registers alone: a return address at the program's entry point with a
    breakpoint on it, the argument in rdi, an aligned stack below the red zone. We stop only at
    function entries, where the vector registers are the caller's to lose (SysV ABI). One trap
    serves all the calls (an import makes a thousand)."""
    frame = gdb.selected_frame()
    saved = {r: int(frame.read_register(r)) for r in GPRS}
    ret = int(gdb.parse_and_eval("&_start"))
    entry = int(gdb.parse_and_eval(f"&{fn}"))
    sp = ((saved["rsp"] - 512) & ~0xF) - 8          # at a callee's entry rsp is 8 mod 16
    trap = gdb.Breakpoint(f"*{ret:#x}", internal=True)
    out = []
    try:
        for arg in args:
            inf.write_memory(sp, ret.to_bytes(8, "little"))
            gdb.execute(f"set $rdi = {arg}")
            gdb.execute(f"set $rsp = {sp:#x}")
            gdb.execute(f"set $rip = {entry:#x}")
            gdb.execute("continue", to_string=True)
            frame = gdb.selected_frame()
            if int(frame.read_register("rip")) != ret:
                raise gdb.GdbError(f"{fn}({arg}) did not return to the entry-point trap")
            out.append(int(frame.read_register("rax")))
    finally:
        trap.delete()
        for r in GPRS:
            gdb.execute(f"set ${r} = {saved[r]:#x}")
    return out


def call(fn, arg):
    return calls(fn, [arg])[0]


def in_heap(p, hr):
    return any(a <= p < b for a, b in hr)


class HeapMap:
    """The malloc blocks of the [heap] mapping, from glibc's chunk headers (one read of the
    mapping, then the size chain from its first chunk). A pointer anywhere inside a block
    resolves to the block: a wrapper that hands out ptr+8 behind its own size/canary header
    (p0f's ck_alloc) or a pointer to a field is a pointer into the block malloc returned, and the
    block is what an import must allocate and fill, wrapper header included (ck_free and
    ck_realloc read it back)."""

    def __init__(self):
        self.hr = heap_ranges()
        self.mem, self.starts, self.usable = {}, [], []
        for a, b in self.hr:
            data = bytes(inf.read_memory(a, b - a))
            self.mem[a] = data
            c = a
            while c + 16 <= b:
                sz = int.from_bytes(data[c - a + 8:c - a + 16], "little") & ~7
                if sz < 32 or sz % 16 or c + sz > b:
                    break             # the top chunk's tail or a layout we do not know
                self.starts.append(c + 16)
                self.usable.append(sz - 8)    # a used chunk also owns the next one's prev_size
                c += sz

    def block(self, p):
        """(user pointer, usable size) of the malloc block holding address p, or None."""
        i = bisect.bisect_right(self.starts, p) - 1
        if i < 0 or p >= self.starts[i] + self.usable[i]:
            return None
        return self.starts[i], self.usable[i]

    def read(self, a, n):
        for base, data in self.mem.items():
            if base <= a and a + n <= base + len(data):
                return data[a - base:a - base + n]
        return bytes(inf.read_memory(a, n))


_HANDLE = {}


def is_handle(t):
    """A pointer the standby must keep its own value of: to a struct the program sees only
    opaquely (pcap_t) or declares in a system header (FILE). That is library state the
    standby's own library calls made; a copy of the primary's would point at its files."""
    t = t.strip_typedefs()
    if t.code != gdb.TYPE_CODE_STRUCT:
        return False
    key = str(t)
    if key not in _HANDLE:
        decl = ""
        if t.tag:
            sym = gdb.lookup_symbol(t.tag, MAIN_BLOCK, gdb.SYMBOL_STRUCT_DOMAIN)[0]
            decl = sym.symtab.filename if sym is not None and sym.symtab else ""
        _HANDLE[key] = t.sizeof == 0 or not t.fields() or decl.startswith("/usr/")
    return _HANDLE[key]


class Walker:
    """Export of a set of variables: objects (a global's storage, or a whole malloc block) with
    their bytes, the pointer slots inside them (relocated on import) and the handle slots (kept
    as the standby has them)."""

    def __init__(self, hm=None):
        self.hm = hm or HeapMap()
        self.objs = {}        # base -> [size, bytes, [(offset, target)], type, [handle offsets], {succ bases}]
        self.seen = set()     # typed visits done: (address, type, count)

    def walk_var(self, sym):
        v = gdb.parse_and_eval(sym)
        addr = int(v.address)
        self.visit(addr, v.type, 1, addr, None)

    def obj_at(self, base, size, typ):
        if base not in self.objs:
            try:
                data = self.hm.read(base, size)
            except gdb.MemoryError:
                return None
            self.objs[base] = [size, data, [], str(typ.strip_typedefs()), [], set()]
        return self.objs[base]

    def visit(self, addr, typ, count, base, limit):
        """Scan `count` elements of typ at addr inside the object at base (its end: limit)."""
        key = (addr, str(typ), count)
        if key in self.seen:
            return
        self.seen.add(key)
        esz = max(1, typ.sizeof)
        size = limit - base if limit else esz * count
        rec = self.obj_at(base, size, typ)
        if rec is None:
            return
        for i in range(count):
            a = addr + i * esz
            if a + esz > base + rec[0]:
                break
            self.scan(base, a, typ, rec)

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
            self.pointer(base, addr - base, t.target(), rec)

    def pointer(self, base, off, target, rec):
        p = int.from_bytes(rec[1][off:off + 8], "little")
        tt = target.strip_typedefs()
        if tt.code == gdb.TYPE_CODE_FUNC:
            return                # same binary, same address
        if is_handle(tt):
            rec[4].append(off)
            return
        if not p:
            return
        el = tt if tt.sizeof and tt.code != gdb.TYPE_CODE_VOID else gdb.lookup_type("char")
        if cfg["globals_lo"] <= p < cfg["globals_hi"]:
            # a global reached through the pointer (hostcount's fwd_ctr -> forwarded): same
            # address in the standby, so sent as is and never relocated
            if tt.sizeof and tt.code != gdb.TYPE_CODE_VOID:
                self.visit(p, el, 1, p, None)
                rec[5].add(p)
            return
        blk = self.hm.block(p)
        if blk is None:
            return                # library memory outside the heap (stack, mmapped buffers)
        u, n = blk
        rec[2].append((off, p))
        rec[5].add(u)
        self.visit(p, el, max(1, (u + n - p) // max(1, el.sizeof)), u, u + n)

    def nbytes(self):
        return sum(r[0] for r in self.objs.values())

    def export(self):
        return [{"addr": a, "size": r[0], "hex": r[1].hex(), "ptrs": r[2], "keep": r[4]}
                for a, r in self.objs.items()]


def state_of(syms, hm=None):
    w = Walker(hm)
    for s in syms:
        w.walk_var(s)
    return w


def _holds(data, value):
    """Does an object hold a field value, in network order or as the host-order integer
    the program converted it to (p0f keeps ports ntohs'ed)?"""
    return value in data or value[::-1] in data


def flow_bytes(w, sym, fields, values):
    """Model (ii) for one keyed variable: only the part of its state in the last packet's
    flowspace. From the variable's storage (already walked into w), the heap objects holding the
    most of the packet's values of the flowspace fields (fields of 2+ bytes; an entry keyed by
    the source or the destination address holds one of them), what they point to, and one
    pointer slot per link on the path to them. An array of scalars keyed by one 1-byte field (a
    TTL histogram) sends the one element the value indexes."""
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
        for p in sorted(w.objs[a][5]) if a in w.objs else ():
            if p in w.objs and p not in parent:
                parent[p] = a
                order.append(p)
    score = {a: sum(_holds(w.objs[a][1], x) for x in wide) for a in order[1:]}
    best = max(score.values(), default=0)
    chosen = set()
    links = set()
    for a in order[1:]:
        if best and score[a] == best:
            st = [a]
            kind = w.objs[a][3]
            while st:
                x = st.pop()
                if x in chosen:
                    continue
                chosen.add(x)
                # what the entry points to, but not its siblings (a `next` of the same type
                # links the table, it is not this flow's state)
                st.extend(p for p in w.objs[x][5] if p in w.objs and w.objs[p][3] != kind)
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


def merged(walks):
    """One export of several variables' walks (an object reached from two is sent once)."""
    w = Walker(None if not walks else walks[0].hm)
    for x in walks:
        for base, rec in x.objs.items():
            if base not in w.objs:
                w.objs[base] = [rec[0], rec[1], list(rec[2]), rec[3], list(rec[4]), set(rec[5])]
                continue
            # two walks may type the same block from different pointers into it (tcpdump's
            # newhnamemem()::ptr points at the next free entry of a table's block): the
            # pointer slots each found are all to be relocated
            mine = w.objs[base]
            mine[0] = max(mine[0], rec[0])
            if len(rec[1]) > len(mine[1]):
                mine[1] = rec[1]
            mine[2] = sorted(set(map(tuple, mine[2])) | set(map(tuple, rec[2])))
            mine[4] = sorted(set(mine[4]) | set(rec[4]))
            mine[5] |= rec[5]
    return w


def model_bytes(w_all, walks, syms, vals):
    """Bytes of model (ii) over the variables syms: keyed ones by the packet's flowspace,
    unkeyed ones (flowspace "*") whole."""
    total = 0
    for sym in syms:
        ks = cfg["keyed"].get(sym)
        total += flow_bytes(w_all, sym, ks, vals) if ks else walks[sym].nbytes()
    return total


def measure(idx, walks, upd):
    """The row of the packet just done (trace index idx): what each model sends after it."""
    w_all = merged(list(walks.values()))
    vals = cfg["packet_fields"][idx] if 0 <= idx < len(cfg["packet_fields"]) else {}
    syms = [cfg["sym_of"][v] for v in upd]
    return {"packet": idx + 1, "model_i_bytes": w_all.nbytes(),
            "model_ii_bytes": model_bytes(w_all, walks, cfg["model_i"], vals),
            "model_iii_bytes": model_bytes(w_all, walks, syms, vals),
            "marked_whole_bytes": merged([walks[s] for s in syms]).nbytes(), "model_iii_vars": len(upd)}


def trace_index(n):
    """Which packet of the trace this entry processes: from the pcap_pkthdr the entry gets (a
    pcap_dispatch/pcap_loop callback's second argument; p0f's filter passes only TCP, so the
    n-th entry is not the n-th packet), by its unique timestamp; else the n-th packet."""
    frame = gdb.selected_frame()
    for sym in frame.block():
        if not sym.is_argument:
            continue
        t = sym.type.strip_typedefs()
        if t.code == gdb.TYPE_CODE_PTR and t.target().strip_typedefs().tag == "pcap_pkthdr":
            ts = sym.value(frame).dereference()["ts"]
            return cfg["ts_index"].get(f"{int(ts['tv_sec'])}.{int(ts['tv_usec'])}", n - 1)
    return n - 1


def latest_copies(last_sent):
    """What a standby fed the marked variables holds: of every object the last copy sent (an
    object reached from two variables was sent with each), with the pointer and handle slots
    any copy found."""
    out = {}
    for _n, objs in sorted(last_sent.values(), key=lambda x: x[0]):
        for o in objs:
            prev = out.get(o["addr"])
            out[o["addr"]] = o if prev is None else dict(
                o, ptrs=sorted(set(map(tuple, prev["ptrs"])) | set(map(tuple, o["ptrs"]))),
                keep=sorted(set(prev["keep"]) | set(o["keep"])))
    return list(out.values())


def primary():
    """Runs the trace, stopping at every packet's entry (the packet before is then done):
    per-packet bytes of the three models when cfg["measure"], and, at the entry of the first
    packet at or after trace index switch_at, the exports for the standby: model (i) and the
    last copy sent of every variable marked updated."""
    rows = []
    last_sent = {}                         # variable -> (packet, export of its last (iii) copy)
    k = cfg["switch_at"]
    n, prev = 0, None
    gdb.execute(f"run {cfg['args']} > {cfg['stdout']} 2> {cfg['stderr']}")
    while gdb.selected_inferior().pid:
        n += 1
        idx = trace_index(n)
        if idx == prev:                    # a second entry procedure within the same packet
            gdb.execute("continue")
            continue
        if prev is not None:
            hm = HeapMap()
            upd = [v for v in read_bits() if v in cfg["sym_of"]]
            need = cfg["model_i"] if cfg.get("measure", True) or idx >= k else [cfg["sym_of"][v] for v in upd]
            walks = {sym: state_of([sym], hm) for sym in need}
            if cfg.get("measure", True):
                rows.append(measure(prev, walks, upd))
            for v in upd:
                last_sent[v] = (n, walks[cfg["sym_of"][v]].export())
            if idx >= k:
                dump(merged(list(walks.values())).export(), cfg["export_i"])
                dump(latest_copies(last_sent), cfg["export_iii"])
                dump({"switch_index": idx, "entries": n - 1}, cfg["switch"])
                call("fflush", 0)
                gdb.execute("kill")
                break
        prev = idx
        gdb.execute("continue")
    dump(rows, cfg["rows"])


def output_offsets():
    """Where the standby's packet output starts: what it printed while starting up (a banner,
    "reading from file tail.pcap") is not part of the log of packets k+1..N."""
    call("fflush", 0)
    import os
    return {s: os.path.getsize(cfg[s]) for s in ("stdout", "stderr")}


def import_state(objs):
    """Allocate every exported heap block afresh, write every object's bytes, relocate the
    recorded pointers, and put back the standby's own handle pointers."""
    hr = heap_ranges()
    old = sorted(o["addr"] for o in objs)
    by = {o["addr"]: o for o in objs}
    # globals keep their address; heap blocks are new
    fresh = [o for o in objs if in_heap(o["addr"], hr) or not cfg["globals_lo"] <= o["addr"] < cfg["globals_hi"]]
    new = {o["addr"]: o["addr"] for o in objs}
    new.update(zip((o["addr"] for o in fresh), calls("malloc", [o["size"] for o in fresh]), strict=True))
    kept = {}
    for o in objs:
        if new[o["addr"]] == o["addr"]:
            for off in o.get("keep", []):
                kept[o["addr"] + off] = bytes(inf.read_memory(o["addr"] + off, 8))
    for o in objs:
        inf.write_memory(new[o["addr"]], bytes.fromhex(o["hex"]))
    for o in objs:
        data = bytes.fromhex(o["hex"])
        for off, _p in o["ptrs"]:
            # the value in this copy's bytes: a slot another copy of the object found is
            # relocated by what this copy holds there
            if off + 8 > len(data):
                continue
            p = int.from_bytes(data[off:off + 8], "little")
            i = bisect.bisect_right(old, p) - 1
            if i < 0 or p >= old[i] + by[old[i]]["size"]:
                continue                   # not exported: leave it
            q = new[old[i]] + (p - old[i])
            inf.write_memory(new[o["addr"]] + off, q.to_bytes(8, "little"))
    for a, b in kept.items():
        inf.write_memory(a, b)


def standby():
    gdb.execute(f"run {cfg['args']} > {cfg['stdout']} 2> {cfg['stderr']}")
    if gdb.selected_inferior().pid:
        dump(output_offsets(), cfg["offsets"])
        import_state(load(cfg["import"]))
        for b in BPS:
            b.delete()
        gdb.execute("continue")


def single():
    """The reference run, under gdb like the pair (gdb's own descriptors and environment are
    then the same: p0f reports how many descriptors it closed)."""
    for b in BPS:
        b.delete()
    gdb.execute(f"run {cfg['args']} > {cfg['stdout']} 2> {cfg['stderr']}")


gdb.execute("set pagination off")
gdb.execute("set confirm off")
inf = gdb.selected_inferior()
MAIN_BLOCK = gdb.block_for_pc(int(gdb.parse_and_eval("&main")))
def takes_pkthdr(fn):
    """Does fn have a pcap_handler's `const struct pcap_pkthdr *` parameter?"""
    sym = gdb.lookup_global_symbol(fn) or gdb.lookup_static_symbol(fn)
    if sym is None or sym.type is None or sym.type.code != gdb.TYPE_CODE_FUNC:
        return False
    for f in sym.type.fields():
        t = f.type.strip_typedefs()
        if t.code == gdb.TYPE_CODE_PTR and t.target().strip_typedefs().tag == "pcap_pkthdr":
            return True
    return False


def packet_entries():
    """Where a packet starts: StateAlyzr's packet entries, narrowed to the pcap callbacks among
    them when there are any (tcpdump's entries include get_if_printer() and info(), which run
    at start-up and on SIGINFO, not per packet)."""
    cb = [e for e in cfg["entries"] if takes_pkthdr(e)]
    return cb or cfg["entries"]


class _AssignOnReturn(gdb.FinishBreakpoint):
    def __init__(self, frame, var: str, value: int):
        super().__init__(frame, internal=True)
        self.var, self.value = var, value

    def stop(self):
        gdb.parse_and_eval(f"{self.var} = {self.value}")
        return False


class _FixAfter(gdb.Breakpoint):
    """When `function` returns, set `var` to `value`: a start-up value drawn at random (p0f's
    hash_seed from /dev/urandom) made the same in the single run, the primary and the standby, so
    their hash tables -- built at start-up in each process -- agree with the transferred state."""

    def __init__(self, function: str, var: str, value: int):
        super().__init__(function, internal=True)
        self.var, self.value = var, value

    def stop(self):
        _AssignOnReturn(gdb.newest_frame(), self.var, self.value)
        return False


FIXED = [_FixAfter(d["after"], d["set"], int(d["value"])) for d in cfg.get("deterministic", [])]
BPS = [gdb.Breakpoint(e, internal=True) for e in packet_entries()]
{"primary": primary, "standby": standby, "single": single}[cfg["mode"]]()
