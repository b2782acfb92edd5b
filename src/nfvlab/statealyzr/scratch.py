"""Per-packet scratch globals (issue 15; the dissertation's "27 updateable variables only used for
processing a single packet", §4.6.1): a global that every packet overwrites completely before it
reads it carries no value from one packet to the next, so it is not per-/cross-flow state.

A global G is scratch when
  * every read of G's storage (directly or through any pointer, per the points-to sets) is in a
    packet procedure other than the loop procedure (nothing reads it at start-up or at exit), and
  * no packet entry has an upward-exposed read of G: on every path from the entry (a receive
    callback, a procedure called from the receive loop, a packet thread) each read of G comes
    after a *full* write of G: a direct store to a scalar G, or memset/memcpy of at least
    sizeof(G) bytes to G, or a call whose callee fully writes G on every path.
Summaries per procedure: MW (globals fully written on every path to a return) and UE (globals
read before being fully written on some path), bottom-up over the call graph; a recursive cycle
is treated pessimistically (MW empty, UE everything). Writes through pointers never count as
full writes, reads through pointers always count as reads: the test is sound, not exhaustive.
"""

from __future__ import annotations

import re

from .sdg import cfg_preds

_MEM_CALL = re.compile(r"@llvm\.mem(?:set|cpy|move)\.")
_LEN = re.compile(r"i64 (\d+), i1 (?:false|true)\)")


def _size_bytes(sa, key: str) -> int:
    tid = sa.vars[key].type_md
    for _ in range(20):
        f = sa.mod.mdf(tid) if tid else {}
        if f.get("size"):
            return int(f["size"]) // 8
        nxt = sa.mod.md_ref(tid, "baseType") if tid else 0
        if not nxt:
            return 0
        tid = nxt
    return 0


class Scratch:
    def __init__(self, sa, cands: dict[int, str]):
        self.sa = sa
        self.C = cands                     # object -> variable key
        self.cset = set(cands)
        self.memo: dict[str, tuple[frozenset, frozenset]] = {}
        self.active: set[str] = set()
        self.size = {o: _size_bytes(sa, k) for o, k in cands.items()}
        self.gname = {}
        for g in sa.global_var:
            o = sa.prog.gobj.get(g)
            if o in self.cset:
                self.gname[g] = o

    def _full_writes(self, ins) -> set[int]:
        sa = self.sa
        if ins.op == "store" and len(ins.parts) > 1 and len(ins.parts[1]) == 1:
            o = self.gname.get(ins.parts[1][0])
            if o is not None and sa.type_str(sa.vars[self.C[o]].type_md) in ("scalar", "pointer") \
                    and "getelementptr" not in ins.text.split(",", 1)[-1]:
                return {o}
        if ins.op == "call" and ins.direct and _MEM_CALL.match(ins.direct) and ins.parts \
                and len(ins.parts[0]) == 1:
            o = self.gname.get(ins.parts[0][0])
            m = _LEN.search(ins.text)
            # the destination must be G itself (offset 0, not a field of it), all of it
            dest = ins.text.split("(", 1)[-1]
            if o is not None and m and int(m.group(1)) >= self.size.get(o, 1 << 30) > 0 \
                    and "getelementptr" not in dest.split(",", 1)[0]:
                return {o}
        return set()

    def summary(self, f: str) -> tuple[frozenset, frozenset]:
        """(MW, UE) of procedure f over the candidate objects."""
        got = self.memo.get(f)
        if got is not None:
            return got
        if f in self.active:
            return frozenset(), frozenset(self.cset)     # recursion: pessimistic
        self.active.add(f)
        sa, mod = self.sa, self.sa.mod
        fn = mod.functions[f]
        preds = cfg_preds(fn)
        order = list(fn.blocks)
        out: dict[str, set[int] | None] = {b: None for b in order}   # None: not reached yet (top)

        def step(b: str, cur: set[int], ue: set[int] | None) -> set[int]:
            for ins in fn.blocks[b].instrs:
                reads: set[int] = set()
                writes: set[int] = set()
                if ins.op in ("call", "invoke"):
                    defined = [g for g in sa.pta.callees.get(ins.id, ()) if g in mod.functions]
                    if defined:
                        mws = []
                        for g in defined:
                            mw, u = self.summary(g)
                            reads |= u
                            mws.append(mw)
                        writes = set.intersection(*map(set, mws))
                    else:
                        reads = set(sa.sdg.reads.get(ins.id, ())) & self.cset
                        writes = self._full_writes(ins)
                else:
                    reads = set(sa.sdg.reads.get(ins.id, ())) & self.cset
                    writes = self._full_writes(ins)
                if ue is not None:
                    ue |= reads - cur
                cur |= writes
            return cur
        changed = True
        while changed:
            changed = False
            for b in order:
                ps = [out[p] for p in preds[b] if out[p] is not None]
                cur = set() if b == fn.entry or not ps else set.intersection(*ps)
                res = step(b, set(cur), None)
                if out[b] is None or res != out[b]:
                    out[b] = res
                    changed = True
        ue: set[int] = set()
        mw: set[int] | None = None
        for b in order:
            ps = [out[p] for p in preds[b] if out[p] is not None]
            cur = set() if b == fn.entry or not ps else set.intersection(*ps)
            end = step(b, set(cur), ue)
            term = fn.blocks[b].instrs[-1] if fn.blocks[b].instrs else None
            if term is not None and term.op == "ret":
                mw = set(end) if mw is None else mw & end
        res = (frozenset(mw if mw is not None else self.cset), frozenset(ue))
        self.active.discard(f)
        self.memo[f] = res
        return res


def scratch_globals(sa, top: dict[str, str], pkt_procs: set[str], entries: set[str]) -> dict[str, str]:
    """Top-level globals that are per-packet scratch -> evidence."""
    mod = sa.mod
    cands: dict[int, str] = {}
    for k in top:
        if sa.vars[k].kind not in ("global", "static"):
            continue
        objs = sa.var_obj.get(k, set())
        if len(objs) == 1:
            cands[next(iter(objs))] = k
    if not cands or not entries:
        return {}
    # every read must be inside packet processing proper
    inside = set(pkt_procs) - set(sa.loop_procs) - set(getattr(sa, "concurrent", ()))
    bad: set[int] = set()
    for iid, objs in sa.sdg.reads.items():
        hit = objs & cands.keys() if objs else ()
        if hit and mod.instrs[iid].fn not in inside:
            bad |= set(hit)
    cands = {o: k for o, k in cands.items() if o not in bad}
    if not cands:
        return {}
    sc = Scratch(sa, cands)
    exposed: set[int] = set()
    for e in sorted(entries):
        if e in mod.functions:
            exposed |= sc.summary(e)[1]
    read_any: set[int] = set()
    for objs in sa.sdg.reads.values():
        if objs:
            read_any |= objs & cands.keys()
    # a global written but never read stays updateable (the paper's "updated but never used")
    return {k: "per-packet scratch: fully written before every read in each packet's processing"
            for o, k in cands.items() if o not in exposed and o in read_any}
