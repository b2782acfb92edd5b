"""Andersen-style (inclusion-based) points-to analysis over the IR: flow-, context- and
field-insensitive, as the dissertation prescribes (§4.3.2, [24]).

Every SSA value, formal parameter and function return is a *value node*; every global, alloca,
heap allocation site and external-library object is an *object node* whose points-to set is the
set of objects its contents may point to. Constraints:

    x = alloca          pts(x) ⊇ {obj_x}
    x = load p          ∀o ∈ pts(p): pts(x) ⊇ pts(o)
    store v, p          ∀o ∈ pts(p): pts(o) ⊇ pts(v)
    x = gep/cast/phi/select/arith(y, ...)   pts(x) ⊇ pts(y) ∪ ...   (field-insensitive)
    call f(a...)        pts(formal_i) ⊇ pts(a_i),  pts(x) ⊇ pts(ret_f)
    call *fp(a...)      resolved on the fly from the function objects in pts(fp)

External functions are modelled by name (allocators, memcpy-like copies, callbacks such as
pcap_loop/pthread_create/qsort); an unknown external returning a pointer returns a fresh object
per call site that is also stored into the objects its pointer arguments point to.
"""

from __future__ import annotations

from collections import defaultdict

from . import libmodels as _lib
from .ir import Instr, Module, split_top

# library behaviour comes from one model table (libmodels.py); these views keep the old names
ALLOCATORS = _lib.names("alloc", "realloc")
RETURNS_ARG0 = _lib.names("search", "strwrite", "tokenize")
COPIES = _lib.names("copy") - {"@memcpy", "@memmove"} | {"@memcpy", "@memmove"}
PURE = _lib.names("pure")
# library functions that store a pointer through an argument: name -> [(arg index, source)]
#   source "arg0": a pointer into argument 0 (strtol's endptr...); "fresh": a new object
PTR_OUT = {
    "@strtol": [(1, "arg0")], "@strtoul": [(1, "arg0")], "@strtoll": [(1, "arg0")],
    "@strtoull": [(1, "arg0")], "@strtod": [(1, "arg0")], "@strtof": [(1, "arg0")],
    "@strtoimax": [(1, "arg0")], "@strtoumax": [(1, "arg0")], "@strtok_r": [(2, "arg0")],
    "@strsep": [(0, "arg0")], "@getaddrinfo": [(3, "fresh")], "@posix_memalign": [(0, "fresh")],
    "@getline": [(0, "fresh")], "@getdelim": [(0, "fresh")], "@asprintf": [(0, "fresh")],
    "@vasprintf": [(0, "fresh")], "@pcap_findalldevs": [(0, "fresh")], "@scandir": [(1, "fresh")],
    "@pcap_compile": [(1, "fresh")], "@getpwnam_r": [(4, "fresh")], "@getgrnam_r": [(4, "fresh")],
    "@glob": [(3, "fresh")], "@regcomp": [(0, "fresh")], "@inflateInit_": [(0, "fresh")],
    "@deflateInit_": [(0, "fresh")], "@deflateInit2_": [(0, "fresh")], "@inflateInit2_": [(0, "fresh")],
}
# packet receive functions: (returns packet?, [(arg index, "fill"|"ptr-pkt"|"ptr-hdr")])
#   fill: the argument's objects receive packet bytes (no pointers); ptr-*: a pointer to a fresh
#   packet/header object is stored through the argument
RECEIVERS = {
    "@pcap_next": (True, [(1, "fill")]),
    "@pcap_next_ex": (False, [(1, "ptr-hdr"), (2, "ptr-pkt")]),
    "@recv": (False, [(1, "fill")]),
    "@recvfrom": (False, [(1, "fill"), (4, "fill"), (5, "fill")]),
    "@recvmsg": (False, [(1, "fill")]),
    "@read": (False, [(1, "fill")]),
}
# callbacks: name -> (index of function argument, [(callee param index, source)])
#   source: ("arg", k) = k-th actual, ("obj", tag) = a fresh object of the call site
CALLBACKS = {
    "@pcap_loop": (2, [(0, ("arg", 3)), (1, ("obj", "hdr")), (2, ("obj", "pkt"))]),
    "@pcap_dispatch": (2, [(0, ("arg", 3)), (1, ("obj", "hdr")), (2, ("obj", "pkt"))]),
    # DAQ 2.x: daq_acquire(module, handle, cnt, callback, user); callback(user, hdr, pkt)
    "@daq_acquire": (3, [(0, ("arg", 4)), (1, ("obj", "hdr")), (2, ("obj", "pkt"))]),
    # daq_acquire_with_meta(module, handle, cnt, callback, metaback, user): callback(user, hdr,
    # pkt) and metaback(user, meta_hdr, data) (what Snort 2.9's DAQ_Acquire calls with
    # HAVE_DAQ_ACQUIRE_WITH_META); the metaback is modelled in EXTRA_CALLBACKS below
    "@daq_acquire_with_meta": (3, [(0, ("arg", 5)), (1, ("obj", "hdr")), (2, ("obj", "pkt"))]),
    "@DAQ_Acquire": (1, [(0, ("arg", 2)), (1, ("obj", "hdr")), (2, ("obj", "pkt"))]),
    "@pthread_create": (2, [(0, ("arg", 3))]),
    "@qsort": (3, [(0, ("arg", 0)), (1, ("arg", 0))]),
    "@bsearch": (4, [(0, ("arg", 0)), (1, ("arg", 1))]),
    "@signal": (1, []),
    "@atexit": (0, []),
    "@on_exit": (0, [(1, ("arg", 1))]),
}
# further function arguments of a registration call (CALLBACKS holds the first one)
EXTRA_CALLBACKS = {
    "@daq_acquire_with_meta": [(4, [(0, ("arg", 5)), (1, ("obj", "meta")), (2, ("obj", "pkt"))])],
}
SKIP_PREFIX = ("@llvm.dbg.", "@llvm.lifetime.", "@llvm.stacksave", "@llvm.stackrestore",
               "@llvm.va_end", "@llvm.experimental.noalias", "@llvm.assume", "@__asm")


def callee_key(name: str) -> str:
    return name


class Program:
    """Node numbering shared by the points-to analysis and the dependence graph."""

    def __init__(self, mod: Module):
        self.mod = mod
        self.n = len(mod.instrs)          # instruction nodes are 0..n-1
        self.kind: dict[int, str] = {}    # non-instruction nodes: "param", "ret", "obj", "const", ...
        self.local: dict[tuple[str, str], int] = {}
        self.gconst: dict[str, int] = {}  # "@g" -> constant node whose pts is {obj(@g)}
        self.gobj: dict[str, int] = {}    # "@g" -> object node of the global / function
        self.obj_of_alloca: dict[int, int] = {}
        self.site_obj: dict[tuple[int, str], int] = {}
        self.retnode: dict[str, int] = {}
        self.vargnode: dict[str, int] = {}
        self.obj_label: dict[int, str] = {}
        self.obj_fn: dict[int, str] = {}  # object node -> function name for function objects
        self.node_fn: dict[int, str] = {}
        self.strobj: int | None = None
        for ins in mod.instrs:
            if ins.res:
                self.local[(ins.fn, ins.res)] = ins.id
        for fn in mod.functions.values():
            for p in fn.params:
                self.local[(fn.name, p)] = self.new("param", fn.name)
            self.retnode[fn.name] = self.new("ret", fn.name)
            self.vargnode[fn.name] = self.new("varg", fn.name)
        for g in list(mod.globals) + list(mod.functions) + sorted(mod.declared):
            self._global(g)

    def new(self, kind: str, fn: str | None = None) -> int:
        nid = self.n
        self.n += 1
        self.kind[nid] = kind
        if fn:
            self.node_fn[nid] = fn
        return nid

    def _global(self, g: str) -> int:
        if g not in self.gobj:
            gl = self.mod.globals.get(g)
            if gl is not None and gl.is_const and (g.startswith("@.str") or (
                    "unnamed_addr" in gl.text and ' c"' in gl.text)):
                # string literals: one abstract read-only object (thousands in printing code)
                if self.strobj is None:
                    self.strobj = self.new("obj")
                    self.obj_label[self.strobj] = "<string literals>"
                self.gobj[g] = self.strobj
                self.gconst[g] = self.new("const")
                return self.strobj
            o = self.new("obj")
            self.gobj[g] = o
            self.obj_label[o] = g
            if g in self.mod.functions or g in self.mod.declared or g not in self.mod.globals:
                self.obj_fn[o] = g
            self.gconst[g] = self.new("const")
        return self.gobj[g]

    def value(self, fn: str, ref: str) -> int | None:
        if ref[0] == "@":
            self._global(ref)
            return self.gconst[ref]
        return self.local.get((fn, ref))

    def alloca_obj(self, ins: Instr) -> int:
        o = self.obj_of_alloca.get(ins.id)
        if o is None:
            o = self.new("obj", ins.fn)
            self.obj_of_alloca[ins.id] = o
            self.obj_label[o] = f"{ins.fn}:{ins.res}"
        return o

    def site(self, ins: Instr, tag: str) -> int:
        k = (ins.id, tag)
        o = self.site_obj.get(k)
        if o is None:
            o = self.new("obj", ins.fn)
            self.site_obj[k] = o
            self.obj_label[o] = f"{tag}@{ins.fn[1:]}:{ins.line}"
        return o

    def fn_of(self, nid: int) -> str | None:
        if nid < len(self.mod.instrs):
            return self.mod.instrs[nid].fn
        return self.node_fn.get(nid)


# operations whose result cannot hold an address, and integer operations that can only hold one
# when they are 64-bit (pointer arithmetic done on integers after ptrtoint)
_NO_PTR_OPS = {"icmp", "fcmp", "trunc", "fptosi", "fptoui", "sitofp", "uitofp", "fadd", "fsub", "fmul",
               "fdiv", "frem", "fneg", "fpext", "fptrunc", "mul", "udiv", "sdiv", "urem", "srem",
               "shl", "lshr", "ashr"}
_INT_OPS = {"add", "sub", "and", "or", "xor", "zext", "sext"}


def store_value_type(text: str) -> str:
    """The type of the value a `store` writes. The pointer operand's type is that type plus '*',
    which also handles constant-expression values (`store i8* getelementptr (...), i8** %p`)."""
    parts = split_top(text.split("store ", 1)[-1].removeprefix("volatile "))
    if len(parts) < 2:
        return ""
    v, p = parts[0], parts[1]
    i = v.find(" ")
    while i > 0:
        t = v[:i]
        if p.startswith(t + "*"):
            return t
        i = v.find(" ", i + 1)
    return v.split(" ", 1)[0]


def _carries_ptr(ty: str) -> bool:
    """Can a value of this IR type hold an address? (pointers, 64-bit integers, aggregates)"""
    ty = ty.strip()
    return ty.endswith("*") or ty.startswith(("ptr", "i64", "{", "[", "<", "%")) or ty == "i128"


class PointsTo:
    def __init__(self, prog: Program, wrappers: dict[str, bool] | None = None):
        self.prog = prog
        self.wrappers = wrappers or {}   # allocation wrappers: name -> realloc-like
        self.pts: dict[int, set[int]] = defaultdict(set)
        self.copy: dict[int, set[int]] = defaultdict(set)
        self.loads: dict[int, list[int]] = defaultdict(list)
        self.stores: dict[int, list[int]] = defaultdict(list)
        self.icalls: dict[int, list[Instr]] = defaultdict(list)
        self.callees: dict[int, set[str]] = defaultdict(set)   # call instr id -> callee names
        self.bound: set[tuple[int, str]] = set()
        self._wl: list[int] = []
        self._delta: dict[int, set[int]] = {}
        self.ext_written: dict[int, list[int]] = defaultdict(list)  # call id -> pointer arg nodes written
        self._cb_pending: dict[int, tuple[Instr, list]] = {}
        self.rep: dict[int, int] = {}

    # ------------------------------------------------------------------ constraint helpers
    def find(self, n: int) -> int:
        """Representative of n (nodes on a copy cycle share one points-to set)."""
        rep = self.rep
        r = rep.get(n)
        if r is None:
            return n
        root = r
        while root in rep:
            root = rep[root]
        while n != root:
            nxt = rep[n]
            rep[n] = root
            n = nxt
        return root

    def _add(self, n: int, objs) -> None:
        n = self.find(n)
        cur = self.pts[n]
        new = set(objs) - cur if not isinstance(objs, set) else objs - cur
        if new:
            cur |= new
            d = self._delta.get(n)
            if d is None:
                self._delta[n] = set(new)
                self._wl.append(n)
            else:
                d |= new

    def _edge(self, a: int | None, b: int | None) -> None:
        if a is None or b is None:
            return
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        s = self.copy[a]
        if b not in s:
            s.add(b)
            if self.pts.get(a):
                self._add(b, self.pts[a])

    def _load(self, p: int | None, x: int | None) -> None:
        if p is None or x is None:
            return
        p = self.find(p)
        self.loads[p].append(x)
        for o in list(self.pts.get(p, ())):
            self._edge(o, x)

    def _store(self, v: int | None, p: int | None) -> None:
        if p is None or v is None:
            return
        p = self.find(p)
        self.stores[p].append(v)
        for o in list(self.pts.get(p, ())):
            if o != self.prog.strobj:       # string literals are never written
                self._edge(v, o)

    def _collapse(self) -> int:
        """Merge the strongly connected components of the copy graph (Tarjan, iterative)."""
        find = self.find
        adj: dict[int, set[int]] = {}
        for a, bs in self.copy.items():
            if a in self.rep or a in self._cb_pending:
                continue
            t = {find(b) for b in bs}
            t.discard(a)
            if t:
                adj[a] = t
        index: dict[int, int] = {}
        low: dict[int, int] = {}
        onst: set[int] = set()
        st: list[int] = []
        merged = 0
        counter = 0
        for root in list(adj):
            if root in index:
                continue
            work = [(root, iter(adj.get(root, ())))]
            index[root] = low[root] = counter
            counter += 1
            st.append(root)
            onst.add(root)
            while work:
                v, it = work[-1]
                w = next(it, None)
                if w is not None:
                    if w not in index:
                        index[w] = low[w] = counter
                        counter += 1
                        st.append(w)
                        onst.add(w)
                        work.append((w, iter(adj.get(w, ()))))
                    elif w in onst:
                        low[v] = min(low[v], index[w])
                    continue
                work.pop()
                if work:
                    u = work[-1][0]
                    low[u] = min(low[u], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = st.pop()
                        onst.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1 and not any(c in self._cb_pending for c in comp):
                        self._merge(comp)
                        merged += len(comp) - 1
        return merged

    def _merge(self, comp: list[int]) -> None:
        r = comp[0]
        pr = self.pts[r]
        for m in comp[1:]:
            self.rep[m] = r
            pm = self.pts.pop(m, None)
            if pm:
                pr |= pm
            cm = self.copy.pop(m, None)
            if cm:
                self.copy[r] |= cm
            for table in (self.loads, self.stores, self.icalls):
                lm = table.pop(m, None)
                if lm:
                    table[r].extend(lm)
            dm = self._delta.pop(m, None)
            del dm
        self.copy[r] = {self.find(b) for b in self.copy.get(r, ())} - {r}
        if pr:
            self._delta[r] = set(pr)      # re-propagate everything from the merged node
            self._wl.append(r)

    # ------------------------------------------------------------------ constraints
    @classmethod
    def analyze(cls, prog: Program, passes: int = 3) -> PointsTo:
        """Andersen with allocation-wrapper cloning: re-run while new wrappers are found."""
        pta = cls(prog).run()
        for _ in range(passes - 1):
            w = pta.detect_wrappers()
            if len(w) == len(pta.wrappers):
                break
            del pta                  # one pass in memory at a time (the passes are the peak)
            pta = cls(prog, w).run()
        pta.freeze()
        return pta

    def release_solver(self) -> None:
        """Drop what only the solver needs (constraint graph, work lists, bindings seen)."""
        self.n_merged = len(self.rep)
        self.copy = self.loads = self.stores = self.icalls = None  # type: ignore[assignment]
        self._delta, self._wl, self.bound, self._cb_pending = {}, [], set(), {}

    def freeze(self) -> None:
        """Points-to sets as shared frozensets: equal sets (copy chains, merged cycles) become
        one object, and the dependence graph can key memory vertices by them without copies."""
        intern: dict[frozenset, frozenset] = {}
        by_id: dict[int, frozenset] = {}
        pts = self.pts
        for n in list(pts):
            s = pts[n]
            if not s:
                del pts[n]
                continue
            f = by_id.get(id(s))
            if f is None:
                f = frozenset(s)
                f = intern.setdefault(f, f)
                by_id[id(s)] = f
            pts[n] = f
        self.pts = dict(pts)        # a plain dict: a missing node has no points-to set

    def run(self) -> PointsTo:
        prog, mod = self.prog, self.prog.mod
        for gname, o in list(prog.gobj.items()):
            self._add(prog.gconst[gname], {o})
        for g in mod.globals.values():
            for r in g.init_refs:
                prog._global(r)
                self._add(prog.gobj[g.name], {prog.gobj[r]})
        for gname in prog.gobj:  # late-created constants
            self._add(prog.gconst[gname], {prog.gobj[gname]})
        for ins in mod.instrs:
            self._instr(ins)
        self.solve()
        return self

    def detect_wrappers(self) -> dict[str, bool]:
        """Functions that return only memory they allocate (or, realloc-like, their first
        argument's), without storing it anywhere else: allocation wrappers."""
        prog, mod = self.prog, self.prog.mod
        heap_in: dict[str, set[int]] = defaultdict(set)
        for (iid, tag), o in prog.site_obj.items():
            if tag == "heap":
                heap_in[mod.instrs[iid].fn].add(o)
        own_alloca = defaultdict(set)
        for iid, o in prog.obj_of_alloca.items():
            own_alloca[mod.instrs[iid].fn].add(o)
        out = dict(self.wrappers)

        def escapes(f: str, mine: set[int]) -> bool:
            """Does f store a pointer to `mine` anywhere but its own stack slots?"""
            for ins in mod.functions[f].instrs():
                if ins.op == "store" and "*" in ins.text.split(",", 1)[0]:
                    vals = set()
                    for v in self._vals(ins, 0):
                        vals |= self.pts.get(v, set())
                    if vals & mine:
                        tgt = set()
                        for v in self._vals(ins, 1):
                            tgt |= self.pts.get(v, set())
                        if tgt - own_alloca[f]:
                            return True
            return False
        for f, fn in mod.functions.items():
            if f in out or not heap_in.get(f):
                continue
            r = self.pts.get(prog.retnode[f], set())
            mine = r & heap_in[f]
            if not mine:
                continue
            p0 = self.pts.get(prog.local[(f, fn.params[0])], set()) if fn.params else set()
            if not r <= heap_in[f] | p0:
                continue
            if escapes(f, mine):
                continue
            out[f] = bool(r & p0)
        return out

    def _vals(self, ins: Instr, part: int) -> list[int]:
        if part >= len(ins.parts):
            return []
        out = []
        for r in ins.parts[part]:
            v = self.prog.value(ins.fn, r)
            if v is not None:
                out.append(v)
        return out

    def _instr(self, ins: Instr) -> None:
        prog, op = self.prog, ins.op
        if op == "alloca":
            self._add(ins.id, {prog.alloca_obj(ins)})
        elif op == "load":
            if not _carries_ptr(split_top(ins.text.split(" = load ", 1)[-1].removeprefix("volatile "))[0]):
                return
            for p in self._vals(ins, 0):
                self._load(p, ins.id)
        elif op == "store":
            if not _carries_ptr(store_value_type(ins.text)):
                return
            for p in self._vals(ins, 1):
                for v in self._vals(ins, 0):
                    self._store(v, p)
        elif op in ("atomicrmw", "cmpxchg"):
            for p in self._vals(ins, 0):
                self._load(p, ins.id)
                for k in range(1, len(ins.parts)):
                    for v in self._vals(ins, k):
                        self._store(v, p)
        elif op == "va_arg":
            self._edge(prog.vargnode.get(ins.fn), ins.id)
        elif op in ("call", "invoke", "callbr"):
            self._call(ins)
        elif op == "ret":
            for v in self._vals(ins, 0):
                self._edge(v, prog.retnode[ins.fn])
        elif op in ("br", "switch", "indirectbr", "unreachable", "resume", "fence"):
            pass
        elif ins.res:
            if op in _NO_PTR_OPS:
                return
            rest = ins.text.split(op + " ", 1)[-1].replace("nuw ", "").replace("nsw ", "").replace("exact ", "")
            if op in _INT_OPS and not rest.startswith("i64"):
                return
            if op == "sub" and self._ptr_difference(ins):
                return        # p - q of two pointers is a length, not an address
            for k in range(len(ins.parts)):
                for v in self._vals(ins, k):
                    self._edge(v, ins.id)

    def _ptr_difference(self, ins: Instr) -> bool:
        """`sub i64 (ptrtoint p), (ptrtoint q)`: how clang emits a pointer difference."""
        mod, prog = self.prog.mod, self.prog
        if len(ins.parts) < 2:
            return False
        for part in ins.parts[:2]:
            if len(part) != 1 or part[0][0] != "%":
                return False
            d = prog.local.get((ins.fn, part[0]))
            if d is None or d >= len(mod.instrs) or mod.instrs[d].op != "ptrtoint":
                return False
        return True

    def _call(self, ins: Instr) -> None:
        if ins.direct:
            if ins.direct.startswith(SKIP_PREFIX):
                return
            self.bind(ins, ins.direct)
        else:
            for r in ins.callee or []:
                v = self.prog.value(ins.fn, r)
                if v is None:
                    continue
                v = self.find(v)
                self.icalls[v].append(ins)
                for o in list(self.pts.get(v, ())):
                    f = self.prog.obj_fn.get(o)
                    if f:
                        self.bind(ins, f)

    def bind(self, ins: Instr, f: str) -> None:
        key = (ins.id, f)
        if key in self.bound:
            return
        self.bound.add(key)
        self.callees[ins.id].add(f)
        prog, mod = self.prog, self.prog.mod
        fn = mod.functions.get(f)
        if fn is not None and f in self.wrappers:
            # allocation wrapper (xmalloc, ck_alloc...): a fresh object per call site (heap
            # cloning), as for malloc; the body is still analysed through its parameters
            for k in range(min(len(ins.parts), len(fn.params))):
                for v in self._vals(ins, k):
                    self._edge(v, prog.local[(f, fn.params[k])])
            if ins.res:
                self._add(ins.id, {prog.site(ins, "heap")})
                if self.wrappers[f]:
                    for v in self._vals(ins, 0):
                        self._edge(v, ins.id)
            return
        if fn is not None:
            for k in range(len(ins.parts)):
                dst = prog.local[(f, fn.params[k])] if k < len(fn.params) else prog.vargnode[f]
                for v in self._vals(ins, k):
                    self._edge(v, dst)
            if ins.res:
                self._edge(prog.retnode[f], ins.id)
            return
        self._external(ins, f)

    def _external(self, ins: Instr, f: str) -> None:
        prog = self.prog
        base = ".".join(f.split(".")[:2]) if f.startswith("@llvm.") else f
        if f in RECEIVERS:
            ret_pkt, args = RECEIVERS[f]
            if ret_pkt and ins.res:
                self._add(ins.id, {prog.site(ins, "pkt")})
            for k, how in args:
                for v in self._vals(ins, k):
                    self.ext_written[ins.id].append(v)
                    if how.startswith("ptr-"):
                        c = prog.new("const", ins.fn)
                        self._add(c, {prog.site(ins, how[4:])})
                        self._store(c, v)
            return
        if base in ("@llvm.memcpy", "@llvm.memmove") or f in COPIES:
            tmp = prog.new("tmp", ins.fn)
            for s in self._vals(ins, 1):
                self._load(s, tmp)
            for d in self._vals(ins, 0):
                self._store(tmp, d)
                self._edge(d, ins.id) if ins.res else None
            self.ext_written[ins.id].extend(self._vals(ins, 0))
            return
        if base == "@llvm.memset" or f in _lib.names("set"):
            self.ext_written[ins.id].extend(self._vals(ins, 0))
            if ins.res:
                for d in self._vals(ins, 0):
                    self._edge(d, ins.id)
            return
        if f.startswith("@llvm."):
            if ins.res:
                for k in range(len(ins.parts)):
                    for v in self._vals(ins, k):
                        self._edge(v, ins.id)
            return
        if f in CALLBACKS:
            for fi, wiring in [CALLBACKS[f], *EXTRA_CALLBACKS.get(f, [])]:
                for fv in self._vals(ins, fi):
                    self._cb_edges(ins, fv, wiring)
            if ins.res:
                self._add(ins.id, {prog.site(ins, "ret")})
            return
        m = _lib.model(f)
        kind = m.kind if m else None
        if kind in ("alloc", "realloc"):
            if ins.res:
                self._add(ins.id, {prog.site(ins, "heap")})
                if kind == "realloc":
                    for v in self._vals(ins, 0):
                        self._edge(v, ins.id)
            return
        if kind in ("search", "strwrite", "tokenize"):
            if ins.res:
                for v in self._vals(ins, 0):
                    self._edge(v, ins.id)
            if kind == "tokenize" and ins.res:
                self._add(ins.id, {prog.site(ins, "ret")})
            if kind != "search":           # strchr/strstr only read their arguments
                self.ext_written[ins.id].extend(self._vals(ins, 0))
            return
        if kind == "static":
            if ins.res and ins.ret_ptr:
                self._add(ins.id, {prog.site(ins, "ret")})
            return
        if kind == "pure":
            return
        if kind == "writes":
            if ins.res and ins.ret_ptr:
                self._add(ins.id, {prog.site(ins, "ext")})
            for k in _lib.written_args(m, len(ins.parts)):
                self.ext_written[ins.id].extend(self._vals(ins, k))
            self._ptr_out(ins, f, prog.site(ins, "ext"))
            return
        # unknown external: returns a fresh object if it returns a pointer, writes (data, not
        # pointers) through its pointer arguments; the few that store pointers are in PTR_OUT
        o = prog.site(ins, "ext")
        if ins.res and ins.ret_ptr:
            self._add(ins.id, {o})
        ptr = ins.ptr_args or []
        for k in range(len(ins.parts)):
            if k < len(ptr) and not ptr[k]:
                continue
            self.ext_written[ins.id].extend(self._vals(ins, k))
        self._ptr_out(ins, f, o)

    def _ptr_out(self, ins: Instr, f: str, o: int) -> None:
        """Pointers a library call stores through its arguments (PTR_OUT)."""
        prog = self.prog
        for k, src in PTR_OUT.get(f, []):
            c = prog.new("const", ins.fn)
            if src == "fresh":
                self._add(c, {o})
            else:
                for v in self._vals(ins, 0):
                    self._edge(v, c)
            for v in self._vals(ins, k):
                self._store(c, v)

    def _cb_edges(self, ins: Instr, fv: int, wiring) -> None:
        """Callback registration: the function objects fv may point to are called with `wiring`."""
        holder = self.prog.new("cb", ins.fn)
        self._cb_pending[holder] = (ins, wiring)
        self._edge(fv, holder)

    def _cb_bind(self, holder: int, f: str) -> None:
        ins, wiring = self._cb_pending[holder]
        key = (ins.id, "cb:" + f)
        if key in self.bound:
            return
        self.bound.add(key)
        self.callees[ins.id].add(f)
        fn = self.prog.mod.functions.get(f)
        if fn is None:
            return
        for pi, (src, k) in wiring:
            if pi >= len(fn.params):
                continue
            dst = self.prog.local[(f, fn.params[pi])]
            if src == "arg":
                for v in self._vals(ins, k):
                    self._edge(v, dst)
            else:
                self._add(dst, {self.prog.site(ins, k)})

    # ------------------------------------------------------------------ solver
    def solve(self, max_steps: int | None = None, collapse_every: int = 400_000) -> None:
        wl, delta = self._wl, self._delta
        steps = 0
        obj_fn = self.prog.obj_fn
        pending = self._cb_pending
        find = self.find
        strobj = self.prog.strobj
        self._collapse()
        while wl:
            steps += 1
            if max_steps and steps > max_steps:
                return
            if steps % collapse_every == 0:
                self._collapse()
            n = wl.pop()
            if n in self.rep:
                continue
            d = delta.pop(n, None)
            if not d:
                continue
            lds = self.loads.get(n)
            sts = self.stores.get(n)
            ics = self.icalls.get(n)
            if lds or sts or ics or n in pending:
                for o in d:
                    if lds:
                        for x in lds:
                            self._edge(o, x)
                    if sts and o != strobj:
                        for v in sts:
                            self._edge(v, o)
                    f = obj_fn.get(o)
                    if f:
                        if ics:
                            for c in list(ics):
                                self.bind(c, f)
                        if n in pending:
                            self._cb_bind(n, f)
            succ = self.copy.get(n)
            if succ:
                for m in list(succ):
                    if find(m) != n:
                        self._add(m, d)
        # every merged node shares its representative's set
        for m in list(self.rep):
            r = find(m)
            self.pts[m] = self.pts[r]
        self.release_solver()

    # ------------------------------------------------------------------ queries
    def of(self, fn: str, ref: str) -> set[int]:
        v = self.prog.value(fn, ref)
        return self.pts.get(v, set()) if v is not None else set()

    def reach(self, objs: set[int], limit: int = 1_000_000) -> set[int]:
        seen = set(objs)
        stack = list(objs)
        while stack and len(seen) < limit:
            o = stack.pop()
            for p in self.pts.get(o, ()):
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen
