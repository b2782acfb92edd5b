"""A Python model of textual LLVM IR (clang-14, typed pointers, -O0 -g).

We parse the `.ll` text rather than bitcode because the text reaches what llvmlite cannot: global
initializers (function-pointer tables, pointer-valued globals) and constant-expression operands
(``getelementptr (... @g ...)``, ``bitcast (@f to ...)``). At -O0 every source variable is an
``alloca`` or a global carrying debug metadata, so everything maps back to source names and lines.

Only what the analyses need is modelled: globals (+ initializer references), functions (params,
blocks, instructions), debug variables (global, static, local, formal) and debug locations.
Operands are kept as lists of *references* (``%5``, ``@g``): constants carry no references, and a
constant expression carries every global it mentions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_REF = re.compile(r'[%@](?:"[^"]*"|[-\w.$]+)')
_MD_ATTACH_TAIL = re.compile(r'(?:,\s*![-\w.]+\s+!\d+)+\s*$')
_ATTR_TAIL = re.compile(r'(?:\s+#\d+)+\s*$')
_DEF_HEAD = re.compile(r'^define\b.*?@("[^"]+"|[-\w.$]+)\(')
_DECL_HEAD = re.compile(r'^declare\b.*?@("[^"]+"|[-\w.$]+)\(')
_LABEL = re.compile(r'^("[^"]+"|[-\w.$]+):')
_MD_LINE = re.compile(r'^!(\d+) = (?:distinct )?!(\w+)\((.*)\)\s*$')
_MD_TUPLE = re.compile(r'^!(\d+) = (?:distinct )?!\{(.*)\}\s*$')
_MD_FIELD = re.compile(r'(\w+): ("(?:[^"\\]|\\.)*"|[^,]+)')
_DBG = re.compile(r'!dbg !(\d+)')
_CSTR = re.compile(r'c"[^"]*"')
_TYPE_DEF = re.compile(r'^(%(?:"[^"]+"|[-\w.$]+)) = type ')


def split_top(s: str) -> list[str]:
    """Split at commas not nested in (), [], {}, <> or quotes."""
    if not any(c in s for c in '([{<"'):
        return [p.strip() for p in s.split(",")]
    out, depth, cur, inq = [], 0, [], False
    for ch in s:
        if inq:
            cur.append(ch)
            if ch == '"':
                inq = False
            continue
        if ch == '"':
            inq = True
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _last_group(s: str) -> tuple[int, int]:
    """Span (open, close) of the last balanced parenthesised group of s (ignoring quotes)."""
    depth, close, inq = 0, -1, False
    for i in range(len(s) - 1, -1, -1):
        ch = s[i]
        if ch == '"':
            inq = not inq
            continue
        if inq:
            continue
        if ch == ")":
            if depth == 0:
                close = i
            depth += 1
        elif ch == "(":
            depth -= 1
            if depth == 0 and close >= 0:
                return i, close
    return -1, -1


@dataclass(slots=True)
class Instr:
    id: int
    fn: str
    block: str
    op: str
    res: str | None          # "%5" or None
    parts: list[list[str]]   # references per top-level operand
    line: int                # source line (0 if unknown)
    dbg: int                 # DILocation metadata id (0 if none)
    callee: list[str] | None = None   # call: references of the callee operand
    direct: str | None = None         # call: "@name" when the callee is a (cast of a) function
    targets: list[str] | None = None  # br/switch: successor labels
    is_cond: bool = False             # br with a condition / switch
    text: str = ""
    ptr_args: list[bool] | None = None  # call: which actual arguments are pointers
    ret_ptr: bool = False               # call: does it return a pointer

    @property
    def refs(self) -> list[str]:
        return [r for p in self.parts for r in p]


@dataclass(slots=True)
class Block:
    name: str
    instrs: list[Instr] = field(default_factory=list)
    succs: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Function:
    name: str                 # "@main"
    params: list[str]         # ["%0", "%1"]
    vararg: bool
    blocks: dict[str, Block]
    dbg: int = 0              # DISubprogram id
    entry: str = ""

    def instrs(self):
        for b in self.blocks.values():
            yield from b.instrs


@dataclass(slots=True)
class Global:
    name: str                 # "@head"
    init_refs: list[str]
    is_const: bool
    external: bool
    dbg: list[int]            # DIGlobalVariableExpression ids
    text: str = ""


@dataclass(slots=True)
class DebugVar:
    """A source variable: global, static (function-scope), local or formal."""
    md: int
    name: str
    kind: str                 # global | static | local | formal
    function: str | None      # source name of the enclosing function (static/local/formal)
    file: str
    line: int
    type_md: int
    arg: int = 0

    @property
    def key(self) -> str:
        if self.kind == "global":
            return self.name
        return f"{self.function}::{self.name}"


class Module:
    def __init__(self) -> None:
        self.globals: dict[str, Global] = {}
        self.functions: dict[str, Function] = {}
        self.declared: set[str] = set()
        self.md: dict[int, tuple[str, str]] = {}     # id -> (kind, raw fields)
        self.md_tuples: dict[int, str] = {}
        self.types: set[str] = set()
        self.instrs: list[Instr] = []
        self._mdf: dict[int, dict[str, str]] = {}
        self.source_files: list[str] = []

    # ---------------------------------------------------------------- metadata helpers
    def mdf(self, mid: int) -> dict[str, str]:
        f = self._mdf.get(mid)
        if f is None:
            kind_raw = self.md.get(mid)
            f = {}
            if kind_raw:
                f = {k: v.strip() for k, v in _MD_FIELD.findall(kind_raw[1])}
                f["__kind"] = kind_raw[0]
            self._mdf[mid] = f
        return f

    def md_ref(self, mid: int, key: str) -> int:
        v = self.mdf(mid).get(key, "")
        return int(v[1:]) if v.startswith("!") and v[1:].isdigit() else 0

    def md_str(self, mid: int, key: str) -> str:
        v = self.mdf(mid).get(key, "")
        if v.startswith('"'):
            return bytes(v[1:-1], "utf-8").decode("unicode_escape", errors="replace")
        return v

    def md_file(self, mid: int) -> str:
        """Path of the file of a scope-like node (DISubprogram, DILexicalBlock, DIFile...)."""
        seen = 0
        while mid and seen < 50:
            f = self.mdf(mid)
            if f.get("__kind") == "DIFile":
                name = self.md_str(mid, "filename")
                d = self.md_str(mid, "directory")
                return name if name.startswith("/") or not d else f"{d}/{name}"
            mid = self.md_ref(mid, "file") or self.md_ref(mid, "scope")
            seen += 1
        return ""

    def loc(self, dbg: int) -> tuple[str, int]:
        if not dbg:
            return "", 0
        return self.md_file(self.md_ref(dbg, "scope")), int(self.mdf(dbg).get("line", "0") or 0)

    def subprogram_name(self, mid: int) -> str:
        while mid:
            f = self.mdf(mid)
            if f.get("__kind") == "DISubprogram":
                return self.md_str(mid, "name")
            mid = self.md_ref(mid, "scope")
        return ""

    def strip_type(self, tid: int) -> tuple[str, int]:
        """Follow typedef/const/volatile/member to the underlying type: (tag-or-kind, id)."""
        for _ in range(50):
            if not tid:
                return "void", 0
            f = self.mdf(tid)
            kind = f.get("__kind", "")
            tag = f.get("tag", "")
            if kind == "DIDerivedType" and tag in (
                    "DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
                    "DW_TAG_member", "DW_TAG_restrict_type", "DW_TAG_atomic_type"):
                tid = self.md_ref(tid, "baseType")
                continue
            if kind == "DIDerivedType":
                return tag, tid
            if kind == "DICompositeType":
                return tag, tid
            return kind, tid
        return "?", tid

    # ---------------------------------------------------------------- debug variables
    def debug_vars(self) -> dict[int, DebugVar]:
        out: dict[int, DebugVar] = {}
        for mid, (kind, _raw) in self.md.items():
            if kind == "DIGlobalVariable":
                scope = self.md_ref(mid, "scope")
                fn = self.subprogram_name(scope) if scope else ""
                out[mid] = DebugVar(mid, self.md_str(mid, "name"), "static" if fn else "global",
                                    fn or None, self.md_file(mid),
                                    int(self.mdf(mid).get("line", "0") or 0), self.md_ref(mid, "type"))
            elif kind == "DILocalVariable":
                arg = int(self.mdf(mid).get("arg", "0") or 0)
                out[mid] = DebugVar(mid, self.md_str(mid, "name"), "formal" if arg else "local",
                                    self.subprogram_name(self.md_ref(mid, "scope")), self.md_file(mid),
                                    int(self.mdf(mid).get("line", "0") or 0), self.md_ref(mid, "type"), arg)
        return out

    def global_var_md(self, g: Global) -> list[int]:
        return [self.md_ref(e, "var") for e in g.dbg if self.md_ref(e, "var")]


# ------------------------------------------------------------------------------------- parsing
def _refs(text: str, types: set[str]) -> list[str]:
    return [r for r in _REF.findall(text) if r not in types]


def _strip_tail(s: str) -> str:
    s = _MD_ATTACH_TAIL.sub("", s)
    return _ATTR_TAIL.sub("", s)


def parse_module(path: str | Path) -> Module:
    text = Path(path).read_text(errors="replace")
    return parse_text(text)


def parse_text(text: str) -> Module:
    m = Module()
    lines = text.split("\n")
    types = m.types
    for ln in lines:
        if ln.startswith("%"):
            t = _TYPE_DEF.match(ln)
            if t:
                types.add(t.group(1))
    i, n = 0, len(lines)
    iid = 0
    while i < n:
        ln = lines[i]
        if not ln:
            i += 1
            continue
        c = ln[0]
        if c == "!":
            mm = _MD_LINE.match(ln)
            if mm:
                m.md[int(mm.group(1))] = (mm.group(2), mm.group(3))
            else:
                mt = _MD_TUPLE.match(ln)
                if mt:
                    m.md_tuples[int(mt.group(1))] = mt.group(2)
            i += 1
            continue
        if c == "@":
            name, _, rest = ln.partition(" = ")
            dbg = [int(x) for x in _DBG.findall(rest)]
            body = re.sub(r",\s*!\w+ !\d+", "", rest)
            kw = re.search(r"\b(global|constant|alias|ifunc)\b", body)
            external = bool(re.match(r"(?:extern_weak|external)\b", body))
            init = body[kw.end():] if kw else body
            init = _CSTR.sub('c""', init)          # "user@host" inside a string is no reference
            refs = [r for r in _refs(init, types) if r.startswith("@") and r != name]
            m.globals[name] = Global(name, refs, bool(kw and kw.group(1) == "constant"), external, dbg, ln)
            i += 1
            continue
        if ln.startswith("declare"):
            d = _DECL_HEAD.match(ln)
            if d:
                m.declared.add("@" + d.group(1))
            i += 1
            continue
        if ln.startswith("define"):
            d = _DEF_HEAD.match(ln)
            fname = "@" + d.group(1)
            head = ln[: ln.rindex("{")] if "{" in ln else ln
            op_i = d.end() - 1
            # params: the balanced group starting at op_i
            depth, j = 0, op_i
            while j < len(head):
                if head[j] == "(":
                    depth += 1
                elif head[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            ptxt = head[op_i + 1: j]
            params, vararg = [], False
            for p in split_top(ptxt) if ptxt.strip() else []:
                if p == "...":
                    vararg = True
                    continue
                r = _refs(p, types)
                params.append(r[-1] if r else f"%arg{len(params)}")
            fdbg = _DBG.search(head[j:])
            fn = Function(fname, params, vararg, {}, int(fdbg.group(1)) if fdbg else 0)
            i += 1
            cur = Block("%entry")
            fn.entry = cur.name
            fn.blocks[cur.name] = cur
            first = True
            while i < n and not lines[i].startswith("}"):
                ln = lines[i]
                i += 1
                if not ln.strip() or ln.lstrip().startswith(";"):
                    continue
                if not ln.startswith(" "):
                    lb = _LABEL.match(ln)
                    if lb:
                        name = "%" + lb.group(1)
                        if first and not cur.instrs:
                            del fn.blocks[cur.name]
                            fn.entry = name
                        cur = Block(name)
                        fn.blocks[name] = cur
                        first = False
                        continue
                first = False
                s = ln.strip()
                if s.startswith("switch ") or " = switch " in s or (s.startswith("indirectbr") and "]" not in s):
                    while "]" not in s and i < n:
                        s += " " + lines[i].strip()
                        i += 1
                ins = _parse_instr(iid, fname, cur.name, s, types)
                iid += 1
                cur.instrs.append(ins)
                m.instrs.append(ins)
                if ins.targets:
                    cur.succs.extend(ins.targets)
            i += 1
            m.functions[fname] = fn
            continue
        i += 1
    # source files of the compile units
    for mid, (kind, _r) in m.md.items():
        if kind == "DICompileUnit":
            m.source_files.append(m.md_file(m.md_ref(mid, "file")))
    return m


def _parse_instr(iid: int, fn: str, block: str, s: str, types: set[str]) -> Instr:
    dbgm = _DBG.search(s)
    dbg = int(dbgm.group(1)) if dbgm else 0
    res = None
    body = s
    if s.startswith("%"):
        res, _, body = s.partition(" = ")
    body = _strip_tail(body)
    op, _, rest = body.partition(" ")
    if op in ("tail", "musttail", "notail"):
        op, _, rest = rest.partition(" ")
    ins = Instr(iid, fn, block, op, res, [], 0, dbg, text=s)
    if op in ("call", "invoke", "callbr"):
        if op == "invoke":
            to = rest.find(" to label ")
            tail = rest[to:] if to >= 0 else ""
            rest = rest[:to] if to >= 0 else rest
            ins.targets = re.findall(r"label (%[-\w.$\"]+)", tail)
        o, c = _last_group(rest)
        args = rest[o + 1: c]
        pre = rest[:o].rstrip()
        if " asm " in pre or pre.startswith("asm ") or "asm sideeffect" in pre:
            ins.callee = []
            ins.direct = "@__asm"
        else:
            if pre.endswith(")"):
                # constant-expression callee such as bitcast (void (...)* @f to void (i32)*)
                o2, _c2 = _last_group(pre)
                crefs = _refs(pre[o2:], types)
            else:
                crefs = _refs(pre.rsplit(" ", 1)[-1], types)
            ins.callee = crefs
            gl = [r for r in crefs if r.startswith("@")]
            if gl and len(crefs) == 1:
                ins.direct = gl[0]
        alist = split_top(args) if args.strip() else []
        ins.parts = [_refs(a, types) for a in alist]
        ins.ptr_args = [_is_ptr_arg(a) for a in alist]
        ins.ret_ptr = bool(res) and _ret_is_ptr(pre)
        return ins
    if op == "br":
        labels = re.findall(r"label (%[-\w.$\"]+)", rest)
        ins.targets = labels
        if rest.startswith("i1 "):
            ins.is_cond = True
            ins.parts = [_refs(rest.split(",", 1)[0], types)]
        return ins
    if op == "switch":
        labels = re.findall(r"label (%[-\w.$\"]+)", rest)
        ins.targets = labels
        ins.is_cond = True
        ins.parts = [_refs(rest.split(",", 1)[0], types)]
        return ins
    if op == "indirectbr":
        ins.targets = re.findall(r"label (%[-\w.$\"]+)", rest)
        ins.is_cond = True
        ins.parts = [_refs(rest.split(",", 1)[0], types)]
        return ins
    if op == "phi":
        vals = re.findall(r"\[\s*(.+?),\s*%[-\w.$\"]+\s*\]", rest)
        ins.parts = [_refs(v, types) for v in vals]
        return ins
    if op in ("load", "store", "getelementptr", "atomicrmw", "cmpxchg", "va_arg"):
        if rest.startswith("volatile "):
            rest = rest[9:]
        if rest.startswith("inbounds "):
            rest = rest[9:]
        parts = split_top(rest)
        if op in ("load", "getelementptr"):
            parts = parts[1:]    # leading result/source element type
        ins.parts = [_refs(p, types) for p in parts if not p.startswith("align ")]
        return ins
    if op in ("ret", "resume"):
        ins.parts = [_refs(rest, types)]
        return ins
    if op == "unreachable":
        return ins
    ins.parts = [_refs(p, types) for p in split_top(rest)] if rest else []
    return ins


_TYPE_TOKEN = re.compile(r'^(?:i\d+|void|half|float|double|x86_fp80|fp128|ptr|%|\{|\[|<)')


def _is_ptr_arg(a: str) -> bool:
    toks = a.split()
    if len(toks) < 2:
        return False
    ty = toks[0]
    return ty.endswith("*") or ty == "ptr" or ty.startswith("ptr")


def _ret_is_ptr(pre: str) -> bool:
    for t in pre.split():
        if _TYPE_TOKEN.match(t):
            return t.endswith("*") or t == "ptr"
    return False


def load_lines(mod: Module, dbg_line_cache: dict | None = None) -> None:
    """Fill Instr.line from the debug locations."""
    cache: dict[int, int] = {}
    for ins in mod.instrs:
        if ins.dbg:
            ln = cache.get(ins.dbg)
            if ln is None:
                ln = int(mod.mdf(ins.dbg).get("line", "0") or 0)
                cache[ins.dbg] = ln
            ins.line = ln
