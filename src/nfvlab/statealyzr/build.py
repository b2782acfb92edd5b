"""Front end: C sources -> clang-14 textual LLVM IR (-O0 -g) -> one linked module.

Single files and small trees are compiled directly; real middleboxes are built with their own
build system under ``bear`` (compile_commands.json), then every recorded C compilation is replayed
with clang-14 to emit IR, and the units are linked with llvm-link-14.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

CLANG = shutil.which("clang-14") or shutil.which("clang") or "clang"
LLVM_LINK = shutil.which("llvm-link-14") or shutil.which("llvm-link") or "llvm-link"
IR_FLAGS = ["-S", "-emit-llvm", "-g", "-O0", "-Xclang", "-disable-O0-optnone", "-fcommon",
            "-fgnu89-inline", "-Wno-everything"]


def have_toolchain() -> bool:
    return bool(shutil.which(CLANG)) and bool(shutil.which(LLVM_LINK))


def compile_to_ll(src: str | Path, out: str | Path, flags: list[str] | None = None,
                  cwd: str | Path | None = None) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [CLANG, *IR_FLAGS, *(flags or []), "-o", str(out), str(src)]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"clang failed on {src}:\n{r.stderr[-4000:]}")
    return out


def link(lls: list[Path], out: str | Path) -> Path:
    out = Path(out)
    if len(lls) == 1:
        shutil.copyfile(lls[0], out)
        return out
    cmd = [LLVM_LINK, "-S", "-o", str(out), *map(str, lls)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"llvm-link failed:\n{r.stderr[-4000:]}")
    return out


def compile_sources(srcs: list[Path], workdir: Path, flags: list[str] | None = None) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    lls = []
    for s in srcs:
        h = hashlib.sha1(str(Path(s).resolve()).encode()).hexdigest()[:8]
        lls.append(compile_to_ll(Path(s).resolve(), workdir / f"{Path(s).stem}-{h}.ll", flags))
    return link(lls, workdir / "linked.ll")


_TAKES_VALUE = {"-I", "-D", "-U", "-include", "-isystem", "-iquote", "-idirafter", "-imacros"}
_DROP_F = ("-flto", "-fstack-clash", "-fcf-prot", "-ffile-prefix-map", "-fdebug-prefix-map",
           "-fprofile", "-fsanitize", "-fno-omit", "-fomit", "-fPIE", "-fpie", "-fPIC", "-fpic",
           "-fstack-protector", "-fvar-tracking", "-fasynchronous")


def _ir_command(entry: dict, out: Path) -> tuple[list[str], str]:
    """The compile flags that matter for the front end (-I/-D/-U/-std/-include/-f/-m), re-emitted
    for clang-14 with our IR flags; sources, outputs, optimisation, warnings and link flags go."""
    args = entry.get("arguments") or shlex.split(entry["command"])
    src = entry["file"]
    keep: list[str] = []
    i = 1
    while i < len(args):
        a = args[i]
        if a in _TAKES_VALUE and i + 1 < len(args):
            keep += [a, args[i + 1]]
            i += 2
            continue
        keep_flag = a.startswith(("-I", "-D", "-U", "-std=", "-isystem", "-iquote", "-include", "-m",
                                  "-pthread", "--sysroot")) and not a.startswith(("-MD", "-MM", "-MF", "-MT",
                                                                                 "-MQ", "-MP"))
        if keep_flag or (a.startswith("-f") and not a.startswith(_DROP_F)):
            keep.append(a)
        i += 1
    return [CLANG, *IR_FLAGS, *keep, "-c", src, "-o", str(out)], entry["directory"]


def compile_commands_to_ll(ccj: Path, workdir: Path, include=None, exclude=None,
                           log=print, root: Path | None = None) -> tuple[list[Path], float]:
    """Replay a compile_commands.json with clang-14 to emit IR. Returns (lls, seconds)."""
    entries = json.loads(Path(ccj).read_text())
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lls, seen = [], set()
    t0 = time.perf_counter()
    for e in entries:
        src = str(Path(e["directory"], e["file"]).resolve())
        if not src.endswith(".c") or src in seen:
            continue
        rel = os.path.relpath(src, root or Path(ccj).parent)
        if include and not any(Path(src).match(p) or rel.startswith(p) for p in include):
            continue
        if exclude and any(Path(src).match(p) or rel.startswith(p) or p in src for p in exclude):
            continue
        seen.add(src)
        h = hashlib.sha1(src.encode()).hexdigest()[:8]
        out = workdir / f"{Path(src).stem}-{h}.ll"
        e = dict(e, file=src)
        if out.exists() and out.stat().st_mtime > max(Path(src).stat().st_mtime, Path(ccj).stat().st_mtime):
            lls.append(out)      # up to date (headers are not tracked: delete the IR dir to force)
            continue
        cmd, cwd = _ir_command(e, out)
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if r.returncode != 0:
            err = [x for x in r.stderr.splitlines() if "error" in x][:2]
            log(f"statealyzr: skip {rel}: clang failed: {err}")
            continue
        lls.append(out)
    if not lls:
        raise RuntimeError(f"no compilation unit of {ccj} produced IR (include={include}, exclude={exclude})")
    return lls, time.perf_counter() - t0
