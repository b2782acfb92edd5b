"""Field- and call-site-aware backward data chops for the flowspace (Fig 4.10).

The points-to analysis stays field-insensitive (the paper's Andersen); this module refines only
the chop from a keyed variable's index / comparison operands back to the packet, so that two
tables keyed on different header fields are told apart:

* **struct-field keys.** A pointer's *origin* is computed per procedure over SSA and through the
  procedure's own scalar stack slots (-O0 spills): which formal it derives from (if any) and which
  struct field (``%struct.T`` + constant field index of a getelementptr) it points into. A load
  reads only the writers of the same field (or writers of an unknown field); a store, memcpy or
  memset writes the field its destination points into.
* **realizable calls (two phases, as in Horwitz-Reps-Binkley slicing).** Phase 1 may climb from a
  procedure's formals to the actuals of its call sites but does not enter callees; phase 2 enters
  callees through their return values but does not climb out of them. A call's result depends on
  its actuals (a conservative summary) and on the memory the callee reads through each pointer
  actual: the fields of a per-formal *read summary* composed with the actual's own field. Inside a
  callee entered in phase 2, a load through a pointer that is just a formal (no field of its own)
  is left to that summary, so a shared helper such as a hash function does not mix the fields
  its different callers hash. A memory dependence may lead anywhere, so it restarts phase 1.

The chop is sound with respect to the slice it refines except for the call summary, which takes
all actuals: it never drops a dependence the field-insensitive slice has through a call.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict

from .ir import Instr, split_top
from .pointsto import CALLBACKS, COPIES, store_value_type

ALL = "*"          # read summary: every field of the pointee
_EMPTY: frozenset = frozenset()
_PASS_OPS = {"getelementptr", "bitcast", "phi", "select", "addrspacecast"}


def field_of_gep(ins: Instr) -> str | None:
    """'%struct.T#k' when a getelementptr selects field k of a struct (constant second index)."""
    rest = ins.text.split("getelementptr ", 1)[-1].removeprefix("inbounds ")
    ps = split_top(rest)
    if len(ps) < 4 or not ps[0].startswith("%struct."):
        return None
    idx = ps[3].split()
    if len(idx) != 2 or not idx[1].lstrip("-").isdigit():
        return None
    return f"{ps[0]}#{idx[1]}"


_CONST_GEP = re.compile(r"getelementptr (?:inbounds )?\((%struct\.[\w.$]+), %struct\.[\w.$]+\* @[\w.$]+, "
                        r"i(?:32|64) 0, i32 (\d+)")


def const_gep_field(ins: Instr, last: bool = False) -> str | None:
    """The struct field a constant-expression operand selects (`load ... getelementptr inbounds
    (%struct.T, %struct.T* @g, i32 0, i32 k)`: a field of a global accessed directly)."""
    ms = _CONST_GEP.findall(ins.text)
    if not ms:
        return None
    t, k = ms[-1] if last else ms[0]
    return f"{t}#{k}"


def _loads_pointer(ins: Instr) -> bool:
    ty = split_top(ins.text.split(" = load ", 1)[-1].removeprefix("volatile "))[0]
    return ty.strip().endswith("*")


class FlowChop:
    def __init__(self, sa):
        self.sa = sa
        self.mod = sa.mod
        self.prog = sa.prog
        self.pta = sa.pta
        self.sdg = sa.sdg
        self._origin: dict[str, dict[str, frozenset]] = {}
        self._slot_stores: dict[str, dict[str, list[int]]] = {}   # f -> spill slot -> its stores
        self._refs: dict[tuple[str, int], frozenset] | None = None
        self._wgroups: list[tuple] | None = None
        self._wgroups_of: dict[int, list[int]] = {}
        self._callers: dict[str, list[int]] = defaultdict(list)
        for cid, fs in self.pta.callees.items():
            for f in fs:
                self._callers[f].append(cid)
        # objects a receive call fills (and the callback's packet): where chops stop
        self.pkt_objs: set[int] = set(getattr(sa, "pkt_objs", ()))
        self.const_objs: set[int] = set(getattr(sa, "const_objs", ())) | (
            {self.prog.strobj} if self.prog.strobj is not None else set())
        self._ret_of = {n: f for f, n in self.prog.retnode.items()}
        self._sites: dict[tuple[int, int], tuple | None] = {}
        self._addr_cache: dict[tuple, list[int]] = {}
        self._fmem_memo: dict[tuple[str, int], tuple] = {}
        self._aux: list[tuple] = []          # states beyond value nodes: ("fmem"|"mem", ...)
        self._aux_ids: dict[tuple, int] = {}
        self._param_of: dict[int, tuple[str, int]] = {}
        for fn in self.mod.functions.values():
            for i, p in enumerate(fn.params):
                self._param_of[self.prog.local[(fn.name, p)]] = (fn.name, i)

    # ------------------------------------------------------------------ pointer origins
    def origins(self, f: str) -> dict[str, frozenset]:
        """SSA name -> {(formal index or -1, field or None)}: where a pointer comes from."""
        got = self._origin.get(f)
        if got is not None:
            return got
        fn = self.mod.functions[f]
        org: dict[str, set] = defaultdict(set)
        for i, p in enumerate(fn.params):
            org[p].add((i, None))
        slots = self._slots(f)
        stored: dict[str, list[str]] = defaultdict(list)   # slot -> SSA values stored into it
        slot_stores: dict[str, list[int]] = defaultdict(list)
        for ins in fn.instrs():
            if ins.op == "store" and len(ins.parts) > 1 and len(ins.parts[1]) == 1 and ins.parts[1][0] in slots:
                stored[ins.parts[1][0]].extend(r for r in ins.parts[0] if r[0] == "%")
                slot_stores[ins.parts[1][0]].append(ins.id)
        self._slot_stores[f] = dict(slot_stores)
        changed = True
        while changed:
            changed = False
            for ins in fn.instrs():
                if not ins.res:
                    continue
                new: set = set()
                if ins.op == "getelementptr" and ins.parts:
                    fld = field_of_gep(ins)
                    for r in ins.parts[0]:
                        for b, k in org.get(r, ()) or {(-1, None)}:
                            new.add((b, k if k is not None else fld))
                    if not ins.parts[0]:
                        new.add((-1, fld))
                elif ins.op in _PASS_OPS:
                    for r in (r for p in ins.parts for r in p if r[0] == "%"):
                        new |= org.get(r, set())
                elif ins.op == "load" and ins.parts and len(ins.parts[0]) == 1 and ins.parts[0][0] in slots:
                    for r in stored.get(ins.parts[0][0], ()):
                        new |= org.get(r, set())
                if not new:
                    new = {(-1, None)}
                if not new <= org[ins.res]:
                    org[ins.res] |= new
                    changed = True
        out = {k: frozenset(v) for k, v in org.items()}
        self._origin[f] = out
        return out

    def _slots(self, f: str) -> set[str]:
        """Allocas used only as the pointer operand of loads and stores (scalar spill slots)."""
        fn = self.mod.functions[f]
        allocas = {ins.res for ins in fn.instrs() if ins.op == "alloca" and ins.res}
        bad: set[str] = set()
        for ins in fn.instrs():
            for k, part in enumerate(ins.parts):
                for r in part:
                    if r not in allocas:
                        continue
                    ok = (ins.op == "load" and k == 0) or (ins.op == "store" and k == 1)
                    if not ok and not (ins.direct or "").startswith("@llvm.dbg"):
                        bad.add(r)
        return allocas - bad

    def field_key(self, f: str, refs: list[str]) -> str | None:
        """The one struct field a pointer operand points into, or None."""
        org = self.origins(f)
        ks = {k for r in refs if r[0] == "%" for _, k in org.get(r, {(-1, None)})}
        return next(iter(ks)) if len(ks) == 1 else None

    # ------------------------------------------------------------------ per-formal read summaries
    def read_summary(self, f: str, i: int) -> frozenset:
        if self._refs is None:
            self._refs = self._summaries()
        return self._refs.get((f, i), frozenset())

    def _summaries(self) -> dict[tuple[str, int], frozenset]:
        direct: dict[tuple[str, int], set] = defaultdict(set)
        passes: list[tuple[tuple[str, int], str | None, str, int]] = []   # (f,i) gets refs(g,j) via field
        for f, fn in self.mod.functions.items():
            if not fn.params:
                continue
            org = self.origins(f)
            for ins in fn.instrs():
                if ins.op == "load" and ins.parts:
                    for r in ins.parts[0]:
                        for b, k in org.get(r, ()):
                            if b >= 0:
                                direct[(f, b)].add(k if k is not None else ALL)
                elif ins.op in ("call", "invoke"):
                    callees = self.pta.callees.get(ins.id, ())
                    for j, part in enumerate(ins.parts):
                        for r in part:
                            for b, k in org.get(r, ()):
                                if b < 0:
                                    continue
                                for g in callees:
                                    if g in self.mod.functions and ins.direct not in CALLBACKS:
                                        passes.append(((f, b), k, g, j))
                                    elif g not in self.mod.functions:
                                        direct[(f, b)].add(k if k is not None else ALL)
        refs = {k: set(v) for k, v in direct.items()}
        changed = True
        while changed:
            changed = False
            for fi, k, g, j in passes:
                sub = refs.get((g, j))
                if not sub:
                    continue
                add = {k} if k is not None else sub
                cur = refs.setdefault(fi, set())
                if not add <= cur:
                    cur |= add
                    changed = True
        return {k: frozenset(v) for k, v in refs.items()}

    # ------------------------------------------------------------------ memory writers by field
    def writers(self) -> None:
        """Index the writers by the identity of their (shared, interned) points-to set: a store
        through a generic pointer is listed once, not once per object it may write."""
        if self._wgroups is not None:
            return
        groups: dict[int, tuple] = {}         # id(objs) -> (objs, {field: [writer]})
        mm = getattr(self.sa, "mm_wrappers", set())
        for iid, objs in self.sdg.writes.items():
            if not objs:
                continue
            ins = self.mod.instrs[iid]
            if ins.fn in mm:
                continue      # allocator bookkeeping (sizes, canaries), not the contents
            if ins.op == "store" and store_value_type(ins.text).endswith("*"):
                continue      # a stored pointer is an address, not header data (thin slice)
            if ins.op == "store" and len(ins.parts) > 1:
                k = self.field_key(ins.fn, ins.parts[1])
                if k is None and all(r[0] == "@" for r in ins.parts[1]):
                    k = const_gep_field(ins, last=True)
            elif ins.op in ("call", "invoke") and ins.parts and self._is_copy_or_set(ins):
                k = self.field_key(ins.fn, ins.parts[0])
                if k is None and ins.parts[0] and all(r[0] == "@" for r in ins.parts[0]):
                    k = const_gep_field(ins)
            else:
                k = None
            g = groups.get(id(objs))
            if g is None:
                g = groups[id(objs)] = (objs, defaultdict(list))
            g[1][k].append(iid)
        self._wgroups = list(groups.values())
        by_obj: dict[int, list[int]] = defaultdict(list)
        for gi, (objs, _) in enumerate(self._wgroups):
            for o in objs:
                by_obj[o].append(gi)
        self._wgroups_of = dict(by_obj)

    @staticmethod
    def _is_copy_or_set(ins: Instr) -> bool:
        d = ins.direct or ""
        return d.startswith(("@llvm.memcpy", "@llvm.memmove", "@llvm.memset")) or d in COPIES or d in (
            "@memset", "@bzero")

    def _mem_writers(self, objs, keys) -> list[int]:
        """Writers of `objs` that may write one of `keys` (None or ALL in keys: any field)."""
        self.writers()
        gids: set[int] = set()
        of = self._wgroups_of
        for o in objs:
            g = of.get(o)
            if g:
                gids.update(g)
        any_field = keys is None or None in keys or ALL in keys
        out: set[int] = set()
        for gi in gids:
            by_key = self._wgroups[gi][1]
            if any_field:
                for lst in by_key.values():
                    out.update(lst)
            else:
                for k in keys:
                    out.update(by_key.get(k, ()))
                out.update(by_key.get(None, ()))
        return list(out)

    # ------------------------------------------------------------------ the chop
    # The chop walks states: (node, phase) for a value node, or an "fmem" state (f, i, fields):
    # the memory formal i of f points to, read at every call site of f. _expand() gives a state's
    # successors (what it depends on) and the address computations met on the way; backward()
    # walks them from seeds, field_masks() labels every state with the header fields reachable
    # from it in one pass (Tarjan SCCs over the implicit graph, fields as a bit mask).
    def _state(self, node: int, phase: int) -> int:
        return node * 2 + phase - 1

    def _aux_state(self, key: tuple, value: tuple) -> int:
        s = self._aux_ids.get(key)
        if s is None:
            s = -1 - len(self._aux)
            self._aux_ids[key] = s
            self._aux.append(value)
        return s

    def _fmem_state(self, f: str, i: int, keys: frozenset) -> int:
        return self._aux_state(("fmem", f, i, keys), ("fmem", f, i, keys))

    def _mem_state(self, objs: set[int], keys) -> int:
        """One state per distinct (points-to set, fields) read: sets shared by the points-to
        analysis are recognised by identity, so a generic pointer's thousands of writers are
        listed once, not once per load through it."""
        keys = frozenset(keys)
        key = ("mem", id(objs), keys)
        hit = self._aux_ids.get(key)
        if hit is not None and self._aux[-1 - hit][1] is objs:
            return hit
        if hit is not None:      # the id was reused by another set: fall back to the contents
            key = ("mem", frozenset(objs), keys)
        return self._aux_state(key, ("mem", objs, keys))

    def _expand(self, st: int, allowed: set[int] | None) -> tuple[list[int], list[int]]:
        """(successor states, address-computation instructions) of state `st`."""
        prog, mod = self.prog, self.mod
        out: list[int] = []
        addr: list[int] = []

        def node(n: int | None, phase: int) -> None:
            if n is not None and (allowed is None or n in allowed):
                out.append(n * 2 + phase - 1)

        def writers(objs, keys) -> None:
            out.append(self._mem_state(objs, keys))   # shared by every read of the same memory

        def pointee(f: str, part: list[str]) -> set[int]:
            sets = [self.pta.pts.get(v, _EMPTY) for v in (prog.value(f, r) for r in part) if v is not None]
            if len(sets) == 1:
                return sets[0]                    # the analysis' own (shared) set: never mutated
            objs: set[int] = set()
            for s in sets:
                objs |= s
            return objs

        def read(f: str, part: list[str], keys_if_unknown, ph: int, ins: Instr | None = None) -> None:
            """Memory read through pointer operand `part` of procedure f."""
            self._address(f, part, addr)
            org = self.origins(f)
            els = {e for r in part if r[0] == "%" for e in org.get(r, {(-1, None)})}
            if els and all(b >= 0 and k is None for b, k in els):
                if ph == 1:            # only a formal: the fields are known at the call sites
                    for b, _ in els:
                        out.append(self._fmem_state(f, b, frozenset(keys_if_unknown)))
                return                 # phase 2: the call site's summary covers it
            k = self.field_key(f, part)
            if k is None and ins is not None and part and all(r[0] == "@" for r in part):
                k = const_gep_field(ins)        # a field of a global, as a constant expression
            objs = pointee(f, part)
            if not objs & self.pkt_objs:          # reading the received packet: the source
                writers(objs, {k} if k is not None else keys_if_unknown)

        if st < 0 and self._aux[-1 - st][0] == "mem":   # memory: its writers, any context
            _, objs, keys = self._aux[-1 - st]
            for y in self._mem_writers(objs - self.const_objs, keys):
                node(y, 1)
            return out, addr
        if st < 0:                                # fmem state: read at every call site
            _, f, i, keys = self._aux[-1 - st]
            site_addr, formals, mems = self._fmem_sites(f, i, allowed)
            addr.extend(site_addr)
            out.extend(self._fmem_state(g, b, keys) for g, b in formals)
            for objs, k in mems:
                writers(objs, {k} if k is not None else keys)
            return out, addr
        x, ph = st >> 1, (st & 1) + 1
        if x >= len(mod.instrs):
            if x in self._ret_of:
                f = self._ret_of[x]
                for ins in mod.functions[f].instrs() if f in mod.functions else ():
                    if ins.op == "ret":
                        for r in ins.parts[0] if ins.parts else ():
                            node(prog.local.get((f, r)), ph)
            elif x in self._param_of and ph == 1:
                f, i = self._param_of[x]
                for cid in self._callers.get(f, ()):
                    for a in self._actuals(mod.instrs[cid], f, i):
                        node(a, 1)
            return out, addr
        ins = mod.instrs[x]
        f, op = ins.fn, ins.op
        if op == "load":
            if _loads_pointer(ins):
                return out, addr       # the value is an address: its producers are not data
            self.origins(f)
            part = ins.parts[0] if ins.parts else []
            slot = part[0] if len(part) == 1 else None
            if slot in self._slot_stores[f]:
                for s in self._slot_stores[f][slot]:    # a spill slot is SSA in disguise:
                    node(s, ph)                          # same procedure, same phase
            else:
                read(f, part, {ALL}, ph, ins)
        elif op == "store":
            for r in ins.parts[0] if ins.parts else ():  # the value, not the address
                if r[0] == "%":
                    node(prog.local.get((f, r)), ph)
            if len(ins.parts) > 1:
                self._address(f, ins.parts[1], addr)
        elif op in ("call", "invoke"):
            self._call(ins, ph, node, read)
        else:
            for part in ins.parts:
                for r in part:
                    if r[0] == "%":
                        node(prog.local.get((f, r)), ph)
        return out, addr

    def backward(self, seeds: list[int], allowed: set[int] | None = None,
                 trace: dict[int, int] | None = None) -> set[int]:
        """Statements producing the seeds' values: a thin slice (values, not the base pointers
        they were loaded through or stored to) with field-aware memory and realizable calls,
        plus the address computations of the accesses met (their lines name fields too)."""
        seen: set[int] = set()
        nodes: set[int] = set()
        work = [self._state(s, 1) for s in seeds if allowed is None or s in allowed]
        seen.update(work)
        while work:
            st = work.pop()
            if st >= 0:
                nodes.add(st >> 1)
            succ, addr = self._expand(st, allowed)
            nodes.update(addr)
            for y in succ:
                if y not in seen:
                    seen.add(y)
                    work.append(y)
                    if trace is not None and y >= 0:
                        trace[y >> 1] = st >> 1 if st >= 0 else -1
        return nodes

    def field_masks(self, groups: list[list[int]], allowed: set[int] | None, own,
                    deadline: float | None = None) -> list[int | None]:
        """For each group of seed nodes, the OR of own(node) over every node its chop contains
        (own: node -> bit mask of header fields on its source line). One pass over all groups:
        strongly connected states share a mask, completed states are memoised. Groups not
        finished by `deadline` (time.perf_counter()) get None."""
        done: dict[int, int] = {}
        out: list[int | None] = []
        for g in groups:
            try:
                for s in g:
                    if allowed is None or s in allowed:
                        self._tarjan(self._state(s, 1), allowed, own, done, deadline)
            except TimeoutError:
                out.append(None)
                continue
            out.append(self._or(done.get(self._state(s, 1), 0) for s in g))
        return out

    @staticmethod
    def _or(masks) -> int:
        m = 0
        for x in masks:
            m |= x
        return m

    def _tarjan(self, root: int, allowed, own, done: dict[int, int], deadline: float | None = None) -> None:
        if root in done:
            return
        if deadline is not None and time.perf_counter() > deadline:
            raise TimeoutError
        index: dict[int, int] = {}
        low: dict[int, int] = {}
        mask: dict[int, int] = {}
        stack: list[int] = []
        onst: set[int] = set()
        counter = 0

        def enter(st: int) -> list:
            nonlocal counter
            index[st] = low[st] = counter
            counter += 1
            stack.append(st)
            onst.add(st)
            succ, addr = self._expand(st, allowed)
            m = own(st >> 1) if st >= 0 else 0
            for a in addr:
                m |= own(a)
            mask[st] = m
            return [st, iter(succ)]
        work = [enter(root)]
        steps = 0
        while work:
            steps += 1
            if deadline is not None and steps % 20000 == 0 and time.perf_counter() > deadline:
                raise TimeoutError     # nothing of this root is in `done`: no partial masks
            frame = work[-1]
            v = frame[0]
            w = next(frame[1], None)
            if w is not None:
                if w in done:
                    mask[v] |= done[w]
                elif w not in index:
                    work.append(enter(w))
                elif w in onst:
                    low[v] = min(low[v], index[w])
                    mask[v] |= mask[w]
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
                mask[u] |= mask[v]
            if low[v] == index[v]:
                comp, m = [], 0
                while True:
                    x = stack.pop()
                    onst.discard(x)
                    comp.append(x)
                    m |= mask[x]
                    if x == v:
                        break
                for x in comp:
                    done[x] = m
                    del mask[x]
                if work:
                    mask[work[-1][0]] |= m

    def _call(self, ins: Instr, ph: int, node, read) -> None:
        prog, mod, pta = self.prog, self.mod, self.pta
        f = ins.fn
        callees = pta.callees.get(ins.id, ())
        defined = [g for g in callees if g in mod.functions]
        if defined and ins.direct not in CALLBACKS:
            for g in defined:
                node(prog.retnode[g], 2)            # phase 2: into the callee, not out of it
                for j, part in enumerate(ins.parts):
                    refs = self.read_summary(g, j)
                    if refs:
                        read(f, part, set(refs), ph)
            for part in ins.parts:                  # summary: the result depends on the actuals
                for r in part:
                    if r[0] == "%":
                        node(prog.local.get((f, r)), ph)
            return
        if defined:
            return
        d = ins.direct or ""
        if d.startswith("@llvm.memset") or d in ("@memset", "@bzero"):
            return                                  # constant contents
        if self._is_copy_or_set(ins):
            if len(ins.parts) > 1:                  # the contents come from the source
                read(f, ins.parts[1], {ALL}, ph)
            return
        # other library calls: the result depends on the arguments and what they point to
        ptr = ins.ptr_args or []
        for j, part in enumerate(ins.parts):
            for r in part:
                if r[0] == "%":
                    node(prog.local.get((f, r)), ph)
            if j < len(ptr) and ptr[j]:
                read(f, part, {ALL}, ph)

    def _address(self, f: str, part: list[str], out: list[int]) -> None:
        """The getelementptr/cast chain computing a pointer operand, back to its base."""
        key = (f, tuple(part))
        got = self._addr_cache.get(key)
        if got is None:
            got = []
            self._address_walk(f, part, got)
            self._addr_cache[key] = got
        out.extend(got)

    def _address_walk(self, f: str, part: list[str], out: list[int]) -> None:
        self.origins(f)
        todo = [r for r in part if r[0] == "%"]
        slots = self._slot_stores.get(f, {})
        seen: set[str] = set()
        while todo:
            r = todo.pop()
            if r in seen:
                continue
            seen.add(r)
            d = self.prog.local.get((f, r))
            if d is None or d >= len(self.mod.instrs):
                continue
            ins = self.mod.instrs[d]
            if ins.op in _PASS_OPS:
                out.append(d)
                todo.extend(ins.parts[0] if ins.op in ("getelementptr", "bitcast", "addrspacecast") and ins.parts
                            else [x for p in ins.parts for x in p])
            elif ins.op == "load" and ins.parts and len(ins.parts[0]) == 1 and ins.parts[0][0] in slots:
                for st in slots[ins.parts[0][0]]:
                    out.append(st)
                    todo.extend(self.mod.instrs[st].parts[0])

    def _fmem_sites(self, f: str, i: int, allowed) -> tuple[list[int], list[tuple[str, int]], list[tuple]]:
        """Formal i of f read at every call site, deduplicated: (address instructions, the
        callers' formals it is an offset of, the (objects, field) it is otherwise). A shared
        helper has thousands of call sites in a few hundred callers (tcpdump's printers), and
        an fmem state exists once per set of fields read: without this, every such state walked
        every call site again (25 M site visits, the 1200 s budget hit). Same successors, once."""
        key = (f, i)
        got = self._fmem_memo.get(key)
        if got is not None and got[0] is allowed:
            return got[1]
        addr: dict[int, None] = {}
        formals: dict[tuple[str, int], None] = {}
        mems: dict[tuple[int, str | None], tuple] = {}
        for cid in self._callers.get(f, ()):
            if allowed is not None and cid not in allowed:
                continue
            site = self._site(cid, i)
            if site is None:
                continue
            site_addr, bases, k, objs = site
            addr.update(dict.fromkeys(site_addr))
            if bases:
                g = self.mod.instrs[cid].fn
                formals.update(dict.fromkeys((g, b) for b in bases))
            elif objs is not None:
                mems.setdefault((id(objs), k), (objs, k))   # objs are kept alive by _sites
        res = (list(addr), list(formals), list(mems.values()))
        self._fmem_memo[key] = (allowed, res)
        return res

    def _site(self, cid: int, i: int):
        """What formal i's memory is at call site cid (memoised: hot helpers have thousands of
        call sites): (address instructions, formals of the caller it is only an offset of,
        its field, the objects it points to or None when they are the received packet)."""
        key = (cid, i)
        got = self._sites.get(key, False)
        if got is not False:
            return got
        call = self.mod.instrs[cid]
        part = self._actual_refs(call, i)
        if part is None:
            self._sites[key] = None
            return None
        org = self.origins(call.fn)
        els = {e for r in part if r[0] == "%" for e in org.get(r, {(-1, None)})}
        addr: list[int] = []
        self._address(call.fn, part, addr)
        if els and all(b >= 0 and k is None for b, k in els):
            got = (addr, sorted({b for b, _ in els}), None, None)
        else:
            sets = [self.pta.pts.get(v, _EMPTY) for v in (self.prog.value(call.fn, r) for r in part)
                    if v is not None]
            objs = sets[0] if len(sets) == 1 else frozenset().union(*sets)
            got = (addr, [], self.field_key(call.fn, part), None if objs & self.pkt_objs else objs)
        self._sites[key] = got
        return got

    def _actual_refs(self, call: Instr, i: int) -> list[str] | None:
        """The operand passed as formal i at a call site (None: a callback's fresh object)."""
        if call.direct in CALLBACKS:
            for pi, (src, k) in CALLBACKS[call.direct][1]:
                if pi == i and src == "arg" and k < len(call.parts):
                    return call.parts[k]
            return None
        return call.parts[i] if i < len(call.parts) else None

    def _actuals(self, call: Instr, f: str, i: int) -> list[int]:
        """Value nodes passed as formal i of f at a call site (positional or callback wiring)."""
        prog = self.prog
        refs: list[str] = []
        if call.direct in CALLBACKS:
            for pi, (src, k) in CALLBACKS[call.direct][1]:
                if pi != i:
                    continue
                if src == "arg" and k < len(call.parts):
                    refs = call.parts[k]
                elif src == "obj":
                    o = prog.site_obj.get((call.id, k))
                    return [call.id] + ([o] if o is not None else [])
        elif i < len(call.parts):
            refs = call.parts[i]
        return [n for n in (prog.value(call.fn, r) for r in refs if r[0] == "%") if n is not None]
