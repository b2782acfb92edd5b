"""relocate_tree: a copied kernel tree's tools/ build records point at the copy, mtimes unchanged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nfvlab.kernel.relocate import relocate_tree


def _tree(root: Path) -> Path:
    tree = root / "seed" / "linux"
    obj = tree / "tools" / "objtool"
    obj.mkdir(parents=True)
    (obj / ".help.o.cmd").write_text(f"cmd_{obj}/help.o := gcc -o {obj}/help.o help.c\n")
    (obj / ".fixdep.o.d").write_text(f"{obj}/fixdep.o: {tree}/tools/build/fixdep.c\n")
    (obj / "objtool").write_bytes(b"\x7fELF" + str(obj).encode())  # a binary: left alone
    (tree / "kernel").mkdir()
    (tree / "kernel" / ".fork.o.cmd").write_text("cmd_kernel/fork.o := gcc -c -o kernel/fork.o kernel/fork.c\n")
    for p in tree.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    return tree


def test_relocate_rewrites_tool_records_keeping_mtimes(tmp_path: Path) -> None:
    seed = _tree(tmp_path)
    copy = tmp_path / "copy" / "linux"
    shutil.copytree(seed, copy, copy_function=shutil.copy2)
    assert relocate_tree(copy, seed) == 2
    cmd = (copy / "tools" / "objtool" / ".help.o.cmd").read_text()
    assert str(seed) not in cmd and f"cmd_{copy}/tools/objtool/help.o" in cmd
    assert str(copy / "tools" / "build" / "fixdep.c") in (copy / "tools" / "objtool" / ".fixdep.o.d").read_text()
    assert str(seed).encode() in (copy / "tools" / "objtool" / "objtool").read_bytes()
    for p in copy.rglob("*"):
        if p.is_file():
            assert p.stat().st_mtime_ns == 1_000_000_000, p
    assert relocate_tree(copy, seed) == 0  # nothing left to rewrite
    assert relocate_tree(copy, copy) == 0
