"""Kernel recipes: the shipped ones validate; bad ones fail naming file and field, before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nfvlab.kernel import recipe as recipe_mod
from nfvlab.kernel.recipe import KERNELS, RecipeError, load_recipe

needs_source = pytest.mark.skipif(recipe_mod.debian_package_version("linux-source-6.1") is None,
                                  reason="linux-source-6.1 is not installed (deps/apt.txt)")


@needs_source
@pytest.mark.parametrize("name", ["vanilla", "iron"])
def test_shipped_recipes_validate(name: str) -> None:
    r = load_recipe(name)
    assert r.name == name
    assert len(r.hash) == 16
    assert r.localversion == f"-nfvlab-{name}-{r.hash[:8]}"


@needs_source
def test_iron_series_is_format_patch_files_in_order() -> None:
    r = load_recipe("iron")
    assert [Path(p).name[:4] for p in r.patches] == ["0001", "0002", "0003"]
    for p in r.patches:
        text = r.path(p).read_text()
        assert text.startswith("From ") and "\nSubject: [PATCH" in text and "\ndiff --git " in text
    assert r.seed == "vanilla"


def _copy_recipe(tmp_path: Path, name: str = "iron") -> Path:
    """A recipe directory laid out like kernels/ (the recipe refers to ../common)."""
    root = tmp_path / "kernels"
    shutil.copytree(KERNELS / name, root / name)
    shutil.copytree(KERNELS / "common", root / "common")
    return root / name / "recipe.yaml"


@needs_source
def test_hash_changes_with_a_patch_and_is_stable_otherwise(tmp_path: Path) -> None:
    path = _copy_recipe(tmp_path)
    h1 = load_recipe(path).hash
    assert load_recipe(path).hash == h1
    patch = sorted((path.parent / "patches").glob("0003-*.patch"))[0]
    patch.write_text(patch.read_text().replace("software drop", "software  drop", 1))
    assert load_recipe(path).hash != h1


def _problems(path: Path) -> list[str]:
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert str(path) in str(e.value)
    return e.value.problems


def test_unknown_field_and_bad_base(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text("name: x\ndescription: d\nbase: {url: 'http://example.org/l.tar.xz', sha256: abc}\n"
                    "config: {fragments: []}\ncolour: blue\n")
    problems = _problems(path)
    assert any(p.startswith("colour:") for p in problems)
    assert any("base.TarballBase.url" in p for p in problems)
    assert any("base.TarballBase.sha256" in p for p in problems)


def test_missing_patch_and_fragment_named(tmp_path: Path) -> None:
    path = _copy_recipe(tmp_path)
    text = path.read_text().replace("config.fragment", "nope.fragment").replace("0002-", "9999-")
    path.write_text(text)
    problems = _problems(path)
    assert any(p.startswith("config.fragments.1: file 'nope.fragment' not found") for p in problems)
    assert any(p.startswith("patches.1: file 'patches/9999-") for p in problems)


def test_not_a_format_patch_and_bad_fragment_line(tmp_path: Path) -> None:
    path = _copy_recipe(tmp_path)
    first = sorted((path.parent / "patches").glob("0001-*.patch"))[0]
    first.write_text("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    (path.parent / "config.fragment").write_text("CONFIG_IRON=y\nIRON=y\n")
    problems = _problems(path)
    assert any(p.startswith("patches.0:") and "not a git format-patch" in p for p in problems)
    assert any(p.startswith("config.fragments.1: config.fragment:2: not a config line") for p in problems)


def test_seed_cannot_be_self(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text("name: x\ndescription: d\nbase: {debian_package: linux-source-6.1}\n"
                    "config: {fragments: []}\nseed: x\n")
    assert any("seed: a recipe cannot seed from itself" in p for p in _problems(path))


def test_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text("- a\n- b\n")
    assert _problems(path) == ["(top level): expected a mapping of recipe fields"]
