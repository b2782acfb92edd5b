"""Control-flow utilities and a system dependence graph (SDG) over the IR, with slicing.

Vertices: instructions, formal parameters, function returns, memory objects, per-block control
vertices, per-procedure entry vertices and per-call-site vertices. Edges (from definition to use):

* data, through SSA operands;
* data, through memory: a store (or a writing library call) reaches every object its pointer may
  point to, and every load/reading call whose pointer may point to one of those objects reads it.
  Objects come from the Andersen analysis, so the edges are flow-insensitive over-approximations;
  to keep the graph small, the edges go through one vertex per distinct points-to set;
* control: a conditional branch/switch reaches the block vertices of the blocks control-dependent
  on it (post-dominator based); a block vertex reaches its instructions; the entry vertex of a
  procedure reaches its blocks that depend on no branch; a call-site vertex (dependent on its
  block) reaches the entry vertex of every possible callee (direct, via function pointers or
  via library callbacks such as pcap_loop and pthread_create);
* parameter-in (actual -> formal) and parameter-out (return -> call) edges.

A forward slice is reachability along these edges; a backward slice is reachability against them;
a chop is the intersection of a forward and a backward slice.
"""

from __future__ import annotations

from collections import defaultdict

from .ir import Function, Module
from .pointsto import CALLBACKS, COPIES, PURE, SKIP_PREFIX, PointsTo, Program

EXIT = "%__exit"


def cfg_preds(fn: Function) -> dict[str, list[str]]:
    preds: dict[str, list[str]] = {b: [] for b in fn.blocks}
    for b in fn.blocks.values():
        for s in b.succs:
            if s in preds:
                preds[s].append(b.name)
    return preds


def control_deps(fn: Function) -> dict[str, set[str]]:
    """block -> set of blocks whose terminator it is control dependent on."""
    blocks = fn.blocks
    succ = {b: [s for s in blk.succs if s in blocks] for b, blk in blocks.items()}
    exits = {b for b, s in succ.items() if not s}
    # blocks that cannot reach an exit (infinite loops) get a virtual exit edge
    rpred: dict[str, list[str]] = defaultdict(list)
    for b, ss in succ.items():
        for s in ss:
            rpred[s].append(b)
    reach: set[str] = set()

    def mark(starts):
        st = list(starts)
        while st:
            x = st.pop()
            if x in reach:
                continue
            reach.add(x)
            st.extend(rpred[x])
    mark(exits)
    for b in blocks:  # in textual order: loop headers come first
        if b not in reach:
            exits.add(b)
            mark([b])
    rs = {b: list(ss) + ([EXIT] if b in exits else []) for b, ss in succ.items()}
    # post-dominators with Cooper-Harvey-Kennedy on the reverse CFG
    rev_succ: dict[str, list[str]] = defaultdict(list)   # reverse-graph successors = CFG preds
    for b, ss in rs.items():
        for s in ss:
            rev_succ[s].append(b)
    order, seen = [], {EXIT}
    stack = [(EXIT, iter(rev_succ[EXIT]))]
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            stack.pop()
            order.append(node)
        elif nxt not in seen:
            seen.add(nxt)
            stack.append((nxt, iter(rev_succ[nxt])))
    po = {b: i for i, b in enumerate(order)}
    rpo = list(reversed(order))
    ipdom = {EXIT: EXIT}
    changed = True
    while changed:
        changed = False
        for b in rpo:
            if b == EXIT:
                continue
            new = None
            for p in rs.get(b, []):
                if p in ipdom:
                    if new is None:
                        new = p
                    else:
                        a, c = p, new
                        while a != c:
                            while po[a] < po[c]:
                                a = ipdom[a]
                            while po[c] < po[a]:
                                c = ipdom[c]
                        new = a
            if new is not None and ipdom.get(b) != new:
                ipdom[b] = new
                changed = True
    cd: dict[str, set[str]] = defaultdict(set)
    for a, ss in succ.items():
        if len(set(ss)) < 2 or a not in ipdom:
            continue
        stop = ipdom[a]
        for b in set(ss):
            r = b
            guard = 0
            while r != stop and r != EXIT and r in ipdom and guard < 100000:
                cd[r].add(a)
                r = ipdom[r]
                guard += 1
    return cd


def dominators(fn: Function) -> dict[str, set[str]]:
    preds = cfg_preds(fn)
    names = list(fn.blocks)
    allb = set(names)
    dom = {b: set(allb) for b in names}
    dom[fn.entry] = {fn.entry}
    changed = True
    while changed:
        changed = False
        for b in names:
            if b == fn.entry:
                continue
            ps = [dom[p] for p in preds[b]]
            new = set.intersection(*ps) if ps else set()
            new = new | {b}
            if new != dom[b]:
                dom[b] = new
                changed = True
    return dom


def natural_loops(fn: Function) -> list[tuple[str, set[str]]]:
    """(header, body) of each natural loop, from back edges found by DFS."""
    preds = cfg_preds(fn)
    back = []
    color: dict[str, int] = {}
    stack = [(fn.entry, iter(fn.blocks[fn.entry].succs))]
    color[fn.entry] = 1
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            color[node] = 2
            stack.pop()
            continue
        if nxt not in fn.blocks:
            continue
        c = color.get(nxt, 0)
        if c == 0:
            color[nxt] = 1
            stack.append((nxt, iter(fn.blocks[nxt].succs)))
        elif c == 1:
            back.append((node, nxt))
    loops: dict[str, set[str]] = {}
    for tail, head in back:
        body = loops.setdefault(head, {head})
        st = [tail]
        while st:
            x = st.pop()
            if x in body:
                continue
            body.add(x)
            st.extend(preds[x])
    return list(loops.items())


class SDG:
    def __init__(self, prog: Program, pta: PointsTo):
        self.prog = prog
        self.pta = pta
        self.succ: dict[int, list[int]] = defaultdict(list)
        self._pred: dict[int, list[int]] | None = None
        self.blocknode: dict[tuple[str, str], int] = {}
        self.entry: dict[str, int] = {}
        self.callsite: dict[int, int] = {}
        self._rd: dict[frozenset, int] = {}
        self._wr: dict[frozenset, int] = {}
        self._rd_id: dict[int, tuple] = {}
        self._wr_id: dict[int, tuple] = {}
        self.cd: dict[str, dict[str, set[str]]] = {}
        self.reads: dict[int, set[int]] = {}    # instr -> objects read (loads, reading calls)
        self.writes: dict[int, set[int]] = {}   # instr -> objects written
        # interprocedural edges by kind, for context-sensitive (two-phase) backward slices:
        # climb[b] = {a}: a -> b passes a value or control into a callee (actual -> formal,
        # call site -> entry); ret[b] = {a}: a callee's return a -> the call's result b
        self.climb: dict[int, set[int]] = defaultdict(set)
        self.ret: dict[int, set[int]] = defaultdict(set)

    def _ec(self, a, b):
        if a is not None and b is not None:
            self.succ[a].append(b)
            self.climb[b].add(a)

    def _e(self, a, b):
        if a is not None and b is not None:
            self.succ[a].append(b)

    def _memnode(self, objs, table: dict, byid: dict, kind: str, read: bool) -> int | None:
        """One vertex per distinct points-to set (shared sets are recognised by identity)."""
        if not objs:
            return None
        hit = byid.get(id(objs))
        if hit is not None and hit[0] is objs:
            return hit[1]
        k = frozenset(objs)
        n = table.get(k)
        if n is None:
            n = self.prog.new(kind)
            table[k] = n
            if read:
                for o in k:
                    self.succ[o].append(n)
            else:
                self.succ[n].extend(k)
        byid[id(objs)] = (objs, n)
        return n

    def _rnode(self, objs: set[int]) -> int | None:
        return self._memnode(objs, self._rd, self._rd_id, "rd", True)

    def _wnode(self, objs: set[int]) -> int | None:
        return self._memnode(objs, self._wr, self._wr_id, "wr", False)

    def _ptsof(self, ins, part: int) -> set[int]:
        """Objects an operand may point to; the analysis' own set when there is one value (shared,
        never mutated), a new union otherwise."""
        if part >= len(ins.parts):
            return set()
        vals = [v for v in (self.prog.value(ins.fn, r) for r in ins.parts[part]) if v is not None]
        if len(vals) == 1:
            return self.pta.pts.get(vals[0]) or set()
        out: set[int] = set()
        for v in vals:
            out |= self.pta.pts.get(v, set())
        return out

    def build(self) -> SDG:
        prog, mod = self.prog, self.prog.mod
        for fn in mod.functions.values():
            self.entry[fn.name] = prog.new("entry", fn.name)
        for fn in mod.functions.values():
            cd = control_deps(fn)
            self.cd[fn.name] = cd
            term_of = {b.name: (b.instrs[-1].id if b.instrs else None) for b in fn.blocks.values()}
            for b in fn.blocks.values():
                bn = prog.new("block", fn.name)
                self.blocknode[(fn.name, b.name)] = bn
                ctl = cd.get(b.name)
                if ctl:
                    for a in ctl:
                        self._e(term_of[a], bn)
                else:
                    self._e(self.entry[fn.name], bn)
                for ins in b.instrs:
                    self._e(bn, ins.id)
                    self._instr(ins, bn)
        return self

    def _uses(self, ins, parts=None):
        idx = range(len(ins.parts)) if parts is None else parts
        for k in idx:
            if k < len(ins.parts):
                for r in ins.parts[k]:
                    if r[0] != "@":
                        v = self.prog.local.get((ins.fn, r))
                        if v is not None:
                            self.succ[v].append(ins.id)

    def _instr(self, ins, bn: int) -> None:
        prog, op = self.prog, ins.op
        if op == "load":
            self._uses(ins)
            objs = self._ptsof(ins, 0)
            self.reads[ins.id] = objs
            self._e(self._rnode(objs), ins.id)
        elif op == "store":
            self._uses(ins)
            objs = self._ptsof(ins, 1)
            self.writes[ins.id] = objs
            self._e(ins.id, self._wnode(objs))
        elif op in ("atomicrmw", "cmpxchg"):
            self._uses(ins)
            objs = self._ptsof(ins, 0)
            self.reads[ins.id] = objs
            self.writes[ins.id] = objs
            self._e(self._rnode(objs), ins.id)
            self._e(ins.id, self._wnode(objs))
        elif op in ("call", "invoke", "callbr"):
            self._call(ins, bn)
        elif op == "ret":
            self._uses(ins)
            self._e(ins.id, prog.retnode[ins.fn])
        elif op == "va_arg":
            self._uses(ins)
            self._e(prog.vargnode.get(ins.fn), ins.id)
        else:
            self._uses(ins)

    def _call(self, ins, bn: int) -> None:
        prog, pta, mod = self.prog, self.pta, self.prog.mod
        if ins.direct and ins.direct.startswith(SKIP_PREFIX):
            return
        cs = prog.new("callsite", ins.fn)
        self.callsite[ins.id] = cs
        self._e(bn, cs)
        for r in ins.callee or []:
            if r[0] != "@":
                self._e(prog.local.get((ins.fn, r)), cs)
        for f in pta.callees.get(ins.id, ()):
            fn = mod.functions.get(f)
            if fn is not None:
                self._ec(cs, self.entry[f])
                cb = ins.direct in CALLBACKS if ins.direct else False
                if cb:
                    fi, wiring = CALLBACKS[ins.direct]
                    for pi, (src, k) in wiring:
                        if src == "arg" and pi < len(fn.params) and k < len(ins.parts):
                            dst = prog.local[(f, fn.params[pi])]
                            for r in ins.parts[k]:
                                self._ec(prog.value(ins.fn, r) if r[0] != "@" else None, dst)
                        elif src == "obj" and pi < len(fn.params):
                            o = prog.site_obj.get((ins.id, k))
                            self._ec(o, prog.local[(f, fn.params[pi])])
                            self._e(ins.id, o)
                    continue
                for k in range(len(ins.parts)):
                    dst = prog.local[(f, fn.params[k])] if k < len(fn.params) else prog.vargnode[f]
                    for r in ins.parts[k]:
                        if r[0] != "@":
                            self._ec(prog.local.get((ins.fn, r)), dst)
                self._e(prog.retnode[f], ins.id)
                self.ret[ins.id].add(prog.retnode[f])
            else:
                self._ext(ins, f)
        if not pta.callees.get(ins.id):
            self._uses(ins)

    def _ext(self, ins, f: str) -> None:
        pta = self.pta
        self._uses(ins)
        base = ".".join(f.split(".")[:2]) if f.startswith("@llvm.") else f
        written: set[int] = set()
        for v in pta.ext_written.get(ins.id, ()):
            written |= pta.pts.get(v, set())
        read: set[int] = set()
        if not (base in ("@llvm.memset",) or f in ("@memset", "@bzero")):
            first = 1 if (base in ("@llvm.memcpy", "@llvm.memmove") or f in COPIES) else 0
            ptr = ins.ptr_args or []
            for k in range(first, len(ins.parts)):
                if k < len(ptr) and not ptr[k]:
                    continue
                read |= self._ptsof(ins, k)
        if f in PURE or f in CALLBACKS:
            written = set() if f in PURE else written
        self.reads[ins.id] = read
        self.writes[ins.id] = written
        self._e(self._rnode(read), ins.id)
        self._e(ins.id, self._wnode(written))
        for o in (self.prog.site_obj.get((ins.id, t)) for t in ("heap", "ext", "ret", "pkt", "hdr")):
            if o is not None:
                self._e(ins.id, o)

    # ------------------------------------------------------------------ slicing
    @property
    def pred(self) -> dict[int, list[int]]:
        if self._pred is None:
            p: dict[int, list[int]] = defaultdict(list)
            for a, bs in self.succ.items():
                for b in bs:
                    p[b].append(a)
            self._pred = p
        return self._pred

    @staticmethod
    def _reach(adj, seeds, allowed=None) -> set[int]:
        seen = set()
        st = [s for s in seeds if s is not None and (allowed is None or s in allowed)]
        seen.update(st)
        while st:
            x = st.pop()
            for y in adj.get(x, ()):
                if y not in seen and (allowed is None or y in allowed):
                    seen.add(y)
                    st.append(y)
        return seen

    def forward(self, seeds, allowed=None) -> set[int]:
        return self._reach(self.succ, seeds, allowed)

    def backward(self, seeds, allowed=None) -> set[int]:
        return self._reach(self.pred, seeds, allowed)

    def backward_ctx(self, seeds) -> set[int]:
        """Context-sensitive backward slice (Horwitz-Reps-Binkley's two phases, with the call's
        actuals standing in for summary edges). Phase 1 climbs from a procedure to its callers
        but, at a call's result, does not enter the callee's return in phase 1; it enters it in
        phase 2, which never climbs back out (formals and entries are reached only from the call
        site it came from, whose actuals are added to the slice in the caller's phase). Memory
        (object vertices) may be written in any context: it restarts phase 1. So a logging
        helper called from many places no longer drags every caller's state into every slice."""
        pred, climb, ret, kind = self.pred, self.climb, self.ret, self.prog.kind
        mod, prog = self.prog.mod, self.prog
        ph_of: dict[int, int] = {}
        work: list[tuple[int, int]] = []

        def add(n, ph):
            if n is None:
                return
            cur = ph_of.get(n)
            if cur is None or ph < cur:
                ph_of[n] = ph
                work.append((n, ph))
        for s in seeds:
            add(s, 1)
        while work:
            x, ph = work.pop()
            if ph_of.get(x) != ph:
                continue          # re-queued in phase 1 meanwhile
            cl = climb.get(x)
            rt = ret.get(x)
            if rt and x < len(mod.instrs):
                ins = mod.instrs[x]
                for part in ins.parts:        # the result depends on this call's actuals
                    for r in part:
                        if r[0] != "@":
                            add(prog.local.get((ins.fn, r)), ph)
            for p in pred.get(x, ()):
                if cl and p in cl:
                    if ph == 2:
                        continue              # phase 2 never leaves the callee
                    add(p, 1)
                elif rt and p in rt:
                    add(p, 2)                 # into the callee through its return
                elif kind.get(p) == "obj":
                    add(p, 1)                 # memory: written in any context
                else:
                    add(p, ph)
        return set(ph_of)


def build(mod: Module, progress=lambda _m: None) -> tuple[Program, PointsTo, SDG]:
    prog = Program(mod)
    pta = PointsTo.analyze(prog)
    progress(f"points-to: {len(pta.wrappers)} allocation wrappers, {len(pta.rep)} nodes merged")
    sdg = SDG(prog, pta).build()
    return prog, pta, sdg
