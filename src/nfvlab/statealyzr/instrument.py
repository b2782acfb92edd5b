"""Update-tracking instrumentation (dissertation §4.4.2, Fig 4.12).

Every updateable top-level variable gets a bit in ``__sa_updated[]``. Before each statement of a
packet-processing procedure that may write a value reachable from the variable (the same
points-to reasoning as the updateable analysis) we set its bit. Redundant settings are pruned
with a must-analysis on the CFG: a bit already set on *every* path into a statement (the
intersection over incoming edges of the sets along the paths, Fig 4.12b) needs no new setting.

The plan is turned into a source patch: ``__sa_updated[k] = 1;`` is inserted at the start of the
statement's line when that is a statement boundary in a compound statement; otherwise (e.g. the
body of an un-braced ``if``) the setting moves to the start of the enclosing procedure, which is
still sound (the bit is set whenever the update may happen) but less precise. The result is
checked to compile by the test-suite.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from .ir import Function
from .sdg import cfg_preds

BITS = "__sa_updated"


def _bits_of_write(sa, ins, bit_of: dict[str, int]) -> set[int]:
    objs = sa.sdg.writes.get(ins.id, set())
    out = set()
    if ins.op == "store":
        for r in ins.parts[1]:
            k = sa.global_var.get(r) if r[0] == "@" else sa.alloca_var.get(sa.prog.local.get((ins.fn, r), -1))
            if k in bit_of:
                out.add(bit_of[k])
    for k, b in bit_of.items():
        if b in out:
            continue
        if objs & sa.var_obj.get(k, set()) or objs & sa.reach_of.get(k, set()):
            out.add(b)
    return out


def _must_plan(fn: Function, wbits: dict[int, set[int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    preds = cfg_preds(fn)
    order = list(fn.blocks)
    full = set().union(*wbits.values()) if wbits else set()
    out_set = {b: set(full) for b in order}     # optimistic start for the must-analysis
    in_set: dict[str, set[int]] = {}
    changed = True
    while changed:
        changed = False
        for b in order:
            ps = [out_set[p] for p in preds[b]]
            cur = set() if b == fn.entry or not ps else set.intersection(*ps)
            in_set[b] = set(cur)
            for ins in fn.blocks[b].instrs:
                cur |= wbits.get(ins.id, set())
            if cur != out_set[b]:
                out_set[b] = cur
                changed = True
    keep, pruned = [], []
    for b in order:
        cur = set(in_set[b])
        for ins in fn.blocks[b].instrs:
            for bit in sorted(wbits.get(ins.id, ())):
                (pruned if bit in cur else keep).append((ins.id, bit))
            cur |= wbits.get(ins.id, set())
    return keep, pruned


def plan_instrumentation(sa) -> dict:
    upd = sorted(k for k in sa.upd if k in sa.top)
    bit_of = {k: i for i, k in enumerate(upd)}
    mod = sa.mod
    by_fn: dict[str, dict[int, set[int]]] = {}
    for i in sa.write_instrs:
        ins = mod.instrs[i]
        b = _bits_of_write(sa, ins, bit_of)
        if b:
            by_fn.setdefault(ins.fn, {})[i] = b
    inserts, prunes = [], []
    for f, wb in by_fn.items():
        keep, pruned = _must_plan(mod.functions[f], wb)
        for i, bit in keep:
            inserts.append(_site(sa, i, bit, upd))
        for i, bit in pruned:
            prunes.append(_site(sa, i, bit, upd))
    return {"bits": upd, "inserted": inserts, "pruned": prunes,
            "n_inserted": len(inserts), "n_pruned": len(prunes)}


def _site(sa, i: int, bit: int, upd: list[str]) -> dict:
    ins = sa.mod.instrs[i]
    file, line = sa.mod.loc(ins.dbg)
    fn = sa.mod.functions[ins.fn]
    scope_line = int(sa.mod.mdf(fn.dbg).get("scopeLine", "0") or 0) if fn.dbg else 0
    ffile = sa.mod.md_file(fn.dbg) if fn.dbg else ""
    return {"function": ins.fn[1:], "file": file, "line": line, "bit": bit, "var": upd[bit],
            "fn_file": ffile, "scope_line": scope_line}


_UNSAFE_START = ("else", "}", "case ", "case\t", "default", "#", ")", "&&", "||", "?", ":", ".", "-", "+")


def _paren_depth(lines: list[str], start: int, end: int) -> int:
    """Parenthesis depth at the start of line `end` (1-based), counted from line `start`, skipping
    string/char literals and comments (a `for (...;\n ...)` header is not a statement boundary)."""
    depth, in_block = 0, False
    for ln in range(max(1, start), end):
        t = lines[ln - 1]
        i, n = 0, len(t)
        while i < n:
            c = t[i]
            if in_block:
                if c == "*" and i + 1 < n and t[i + 1] == "/":
                    in_block = False
                    i += 1
            elif c == "/" and i + 1 < n and t[i + 1] == "/":
                break
            elif c == "/" and i + 1 < n and t[i + 1] == "*":
                in_block = True
                i += 1
            elif c in "\"'":
                q = c
                i += 1
                while i < n and t[i] != q:
                    i += 2 if t[i] == "\\" else 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            i += 1
    return depth


def _safe_line(lines: list[str], ln: int, scope_line: int) -> bool:
    if ln <= scope_line or ln > len(lines):
        return False
    if _paren_depth(lines, scope_line, ln) != 0:
        return False
    cur = lines[ln - 1].strip()
    if not cur or cur.startswith(_UNSAFE_START):
        return False
    j = ln - 2
    while j >= 0:
        p = lines[j].strip()
        if p and not p.startswith(("//", "/*", "*")) and not p.startswith("#"):
            break
        j -= 1
    if j < 0:
        return False
    prev = lines[j].split("//")[0].rstrip()
    if prev.endswith("{"):
        body = prev[:-1].rstrip()
        if body.endswith(("=", ",", "[", "(")):
            return False          # an initializer, not a block
        return not body.lstrip().startswith(("struct", "union", "enum", "typedef"))
    return prev.endswith((";", "}")) or (prev.endswith(":") and not prev.endswith("::"))


def make_patch(plan: dict, out_dir: str | Path | None = None, root: str | Path | None = None) -> tuple[str, dict]:
    """Return (unified diff, {path: new text}); write instrumented copies under out_dir if given."""
    n = max(1, len(plan["bits"]))
    edits: dict[str, dict[int, set[int]]] = {}
    func_edits: dict[str, dict[int, set[int]]] = {}
    placed = {"at_statement": 0, "at_procedure_entry": 0, "unplaced": 0}
    cache: dict[str, list[str]] = {}

    def lines_of(p):
        if p not in cache:
            try:
                cache[p] = Path(p).read_text(errors="replace").split("\n")
            except OSError:
                cache[p] = []
        return cache[p]

    for s in plan["inserted"]:
        ls = lines_of(s["file"]) if s["file"] else []
        if s["file"] and s["file"] == s["fn_file"] and _safe_line(ls, s["line"], s["scope_line"]):
            edits.setdefault(s["file"], {}).setdefault(s["line"], set()).add(s["bit"])
            placed["at_statement"] += 1
        elif s["fn_file"] and s["scope_line"] and \
                "{" in (lines_of(s["fn_file"]) + [""] * s["scope_line"])[s["scope_line"] - 1]:
            func_edits.setdefault(s["fn_file"], {}).setdefault(s["scope_line"], set()).add(s["bit"])
            placed["at_procedure_entry"] += 1
        else:
            placed["unplaced"] += 1
    diff, new_texts = [], {}
    for path in sorted(set(edits) | set(func_edits)):
        old = lines_of(path)
        new = list(old)
        for ln in sorted(set(edits.get(path, {})) | set(func_edits.get(path, {})), reverse=True):
            if ln in func_edits.get(path, {}):
                bits = func_edits[path][ln]
                text = new[ln - 1]
                k = text.index("{") + 1
                new[ln - 1] = text[:k] + " " + " ".join(f"{BITS}[{b}] = 1;" for b in sorted(bits)) + text[k:]
            if ln in edits.get(path, {}):
                bits = edits[path][ln]
                text = new[ln - 1]
                indent = text[: len(text) - len(text.lstrip())]
                new[ln - 1] = indent + " ".join(f"{BITS}[{b}] = 1;" for b in sorted(bits)) + " " + text.lstrip()
        new.insert(0, f"unsigned char {BITS}[{n}] __attribute__((weak));  /* StateAlyzr updated bits */")
        rel = str(Path(path).relative_to(root)) if root and str(path).startswith(str(root)) else path
        diff.extend(difflib.unified_diff([x + "\n" for x in old], [x + "\n" for x in new],
                                         f"a/{rel}", f"b/{rel}"))
        new_texts[path] = "\n".join(new)
        if out_dir:
            dst = Path(out_dir) / Path(rel).name if not root else Path(out_dir) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(new_texts[path])
    return "".join(diff), {"placed": placed, "files": sorted(new_texts)}
