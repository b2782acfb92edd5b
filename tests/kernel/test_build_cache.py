"""The build cache: a finished build (result.json + bzImage) makes a second build a no-op."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nfvlab.kernel import build as build_mod
from nfvlab.kernel.build import build, config_mismatches
from nfvlab.kernel.recipe import debian_package_version, load_recipe


@pytest.mark.skipif(debian_package_version("linux-source-6.1") is None, reason="linux-source-6.1 not installed")
def test_second_build_is_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_mod, "BUILD_ROOT", tmp_path)
    recipe = load_recipe("vanilla")
    out = tmp_path / recipe.hash
    image = out / "linux" / "arch" / "x86" / "boot" / "bzImage"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"not really a kernel")
    record = {"recipe": "vanilla", "recipe_hash": recipe.hash, "release": "6.1.0" + recipe.localversion,
              "bzimage": str(image), "debs": [], "seconds": 1234.5, "finished": "2026-12-02T06:00:00+00:00",
              "jobs": 2, "seeded_from": None}
    (out / "result.json").write_text(json.dumps(record))

    def no_make(*a, **k):  # a cached build must not run anything
        raise AssertionError("build ran a step although the result is cached")

    monkeypatch.setattr(build_mod, "_prepare_tree", no_make)
    monkeypatch.setattr(build_mod, "_make", no_make)
    lines: list[str] = []
    result = build(recipe, log=lines.append)
    assert result.cached and result.seconds == 1234.5 and result.image == image
    assert "cached build" in lines[0]


def test_config_mismatches_reports_dropped_settings(tmp_path: Path) -> None:
    frag = tmp_path / "f.config"
    frag.write_text('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_S=""\n')
    cfg = tmp_path / ".config"
    cfg.write_text("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n")
    assert config_mismatches(cfg, [str(frag)]) == ["f.config: CONFIG_B wanted n, got y",
                                                  "f.config: CONFIG_C wanted y, got n"]
