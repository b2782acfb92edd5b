"""Moving a built kernel tree to another directory without making kbuild rebuild everything.

Why this exists: kbuild proper uses relative paths for an in-tree build, but the host tools under
``tools/`` (objtool, resolve_btfids and their libsubcmd/libbpf) are built with ``OUTPUT=`` an
absolute path, and their ``.*.cmd`` files record absolute targets, command lines and dependencies.
In a copied tree those no longer match, so the tools rebuild; and every kernel object's ``.cmd``
ends with ``<obj>: $(wildcard ./tools/objtool/objtool)``, so a relinked (newer) objtool makes make
recompile *every* object. Rewriting the old path to the new one in those text files, mtimes kept,
makes the copy look as if it had been built where it now is.
"""

from __future__ import annotations

import os
from pathlib import Path

# Only the host tools' build records hold absolute paths (checked on a finished 6.1 tree:
# `grep -rlI <tree path>` finds files under tools/ only, besides debian/ which mkdebian rewrites).
RELOCATE_UNDER = ("tools",)


def relocate_tree(tree: Path, old: Path, new: Path | None = None) -> int:
    """Replace `old` by `new` (default: `tree`) in the text build records under tools/; returns
    how many files changed. Each rewritten file keeps its atime/mtime, so make sees no change."""
    new = new or tree
    old_b, new_b = str(old.resolve()).encode(), str(new.resolve()).encode()
    if old_b == new_b:
        return 0
    changed = 0
    for sub in RELOCATE_UNDER:
        root = tree / sub
        if not root.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                # .*.cmd (tools/build's saved commands + deps), *.d (gcc -MD output) and the
                # generated makefile fragments; binaries are left alone (they only embed debug paths).
                if not (name.endswith((".cmd", ".d")) or name in ("FEATURE-DUMP", "Makefile.deps")):
                    continue
                p = Path(dirpath) / name
                data = p.read_bytes()
                if old_b not in data:
                    continue
                st = p.stat()
                p.write_bytes(data.replace(old_b, new_b))
                os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
                changed += 1
    return changed
