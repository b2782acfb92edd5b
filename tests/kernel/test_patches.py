"""The Iron series applies, in order, to the Debian source the recipe names (no build)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nfvlab.kernel.recipe import debian_package_version, load_recipe
from nfvlab.kernel.source import apply_patches

TAR = Path("/usr/src/linux-source-6.1.tar.xz")


@pytest.mark.slow
@pytest.mark.skipif(debian_package_version("linux-source-6.1") is None or not TAR.is_file(),
                    reason="linux-source-6.1 is not installed (deps/apt.txt)")
def test_iron_series_applies_to_debian_source(tmp_path: Path) -> None:
    recipe = load_recipe("iron")
    patches = [recipe.path(p) for p in recipe.patches]
    touched = sorted({line.split(" b/", 1)[1] for p in patches for line in p.read_text().splitlines()
                      if line.startswith("diff --git ")})
    top = "linux-source-6.1"
    existing = [f"{top}/{f}" for f in touched if f != "include/linux/iron.h" and f != "kernel/sched/iron.c"]
    subprocess.run(["tar", "-xf", str(TAR), "-C", str(tmp_path), *existing], check=True)
    applied: list[str] = []
    apply_patches(tmp_path / top, patches, applied.append)
    assert applied == [f"applied {p.name}" for p in patches]
    tree = tmp_path / top
    assert "iron_refill_cfs_bandwidth" in (tree / "kernel/sched/fair.c").read_text()
    assert "iron_napi_park(n)" in (tree / "net/core/dev.c").read_text()
    assert (tree / "kernel/sched/iron.c").is_file() and (tree / "include/linux/iron.h").is_file()
    assert "obj-$(CONFIG_IRON) += iron.o" in (tree / "kernel/sched/Makefile").read_text()
