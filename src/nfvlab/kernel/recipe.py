"""Kernel build recipes: ``kernels/<name>/recipe.yaml`` validated before anything is unpacked.

A recipe names the base source (Debian's ``linux-source-6.1`` package or a kernel.org tarball with
its sha256), the config (a starting target such as ``defconfig`` plus fragments) and a patch
series. Its hash covers everything that changes the result (base identity, fragment and patch
bytes, the build steps' version), so ``build/kernel/<hash>/`` is a cache key: same hash, same kernel.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REPO = Path(__file__).resolve().parents[3]
KERNELS = REPO / "kernels"
# Bump when the build steps change what a recipe produces (it invalidates every cached build).
BUILD_STEPS_VERSION = 1
NAME = r"^[a-z0-9][a-z0-9-]*$"


class RecipeError(Exception):
    """A recipe is invalid. The message names the file and the field."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}: invalid kernel recipe\n" + "\n".join(f"  - {p}" for p in problems))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DebianBase(Strict):
    """The source Debian ships as /usr/src/<package>.tar.xz (Debian's patches already applied)."""

    debian_package: Annotated[str, Field(pattern=r"^linux-source-[0-9.]+$")]


class TarballBase(Strict):
    """A kernel.org tarball, checked against its sha256 before it is unpacked."""

    url: Annotated[str, Field(pattern=r"^https://")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Config(Strict):
    start: Literal["defconfig", "tinyconfig"] = "defconfig"
    fragments: list[str] = Field(description="config fragments merged in order, paths relative to the recipe")


class Recipe(Strict):
    name: Annotated[str, Field(pattern=NAME)]
    description: str
    base: DebianBase | TarballBase
    config: Config
    patches: list[str] = Field(default_factory=list, description="git format-patch files, applied in order")
    seed: Annotated[str, Field(pattern=NAME)] | None = Field(
        None, description="start from a copy of this recipe's finished build tree (objects included), "
        "so only what the patches touch recompiles; kbuild's dependency tracking makes it equal to a clean build",
    )
    paper: dict[str, str] = Field(default_factory=dict, description="notes: which kernel the paper used")

    # Set by load_recipe: the directory the relative paths start from.
    directory: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _no_self_seed(self) -> Recipe:
        if self.seed == self.name:
            raise ValueError(f"seed: a recipe cannot seed from itself ({self.seed!r})")
        return self

    @property
    def localversion(self) -> str:
        """Goes into the kernel release (uname -r), so a guest can tell which recipe it runs."""
        return f"-nfvlab-{self.name}-{self.hash[:8]}"

    def path(self, rel: str) -> Path:
        return (self.directory / rel).resolve()

    @cached_property
    def hash(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"steps": BUILD_STEPS_VERSION, "base": base_identity(self.base),
                             "start": self.config.start, "name": self.name}, sort_keys=True).encode())
        for rel in [*self.config.fragments, *self.patches]:
            h.update(rel.encode() + b"\0" + self.path(rel).read_bytes() + b"\0")
        return h.hexdigest()[:16]


def base_identity(base: DebianBase | TarballBase) -> str:
    if isinstance(base, TarballBase):
        return f"tarball:{base.sha256}"
    return f"debian:{base.debian_package}={debian_package_version(base.debian_package) or 'not-installed'}"


def debian_package_version(package: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", package],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"install ok installed (\S+)", out.stdout)
    return m.group(1) if m else None


def _format(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        problems.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}{got_text}")
    return problems


def resolve(name_or_path: str | Path) -> Path:
    """`iron`, `kernels/iron`, or `kernels/iron/recipe.yaml` -> the recipe file."""
    p = Path(name_or_path)
    if p.is_dir():
        return p / "recipe.yaml"
    if p.suffix in (".yaml", ".yml"):
        return p
    return KERNELS / str(name_or_path) / "recipe.yaml"


def load_recipe(name_or_path: str | Path, check_base: bool = True) -> Recipe:
    """Read and validate a recipe; every referenced file must exist. Raises RecipeError.
    check_base=False skips "the Debian base package is installed": only building needs it (a spec
    naming the recipe is also loaded inside the guest, which has no linux-source)."""
    path = resolve(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise RecipeError(path, [f"cannot read: {e.strerror}"]) from e
    except yaml.YAMLError as e:
        raise RecipeError(path, [f"not valid YAML: {e}"]) from e
    if not isinstance(data, dict):
        raise RecipeError(path, ["(top level): expected a mapping of recipe fields"])
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(path, _format(e)) from e
    recipe.directory = path.parent.resolve()
    problems = []
    for i, rel in enumerate(recipe.config.fragments):
        if not recipe.path(rel).is_file():
            problems.append(f"config.fragments.{i}: file {rel!r} not found next to the recipe")
        else:
            problems += [f"config.fragments.{i}: {p}" for p in fragment_problems(recipe.path(rel))]
    for i, rel in enumerate(recipe.patches):
        f = recipe.path(rel)
        if not f.is_file():
            problems.append(f"patches.{i}: file {rel!r} not found next to the recipe")
        elif not is_format_patch(f.read_text(errors="replace")):
            problems.append(f"patches.{i}: {rel!r} is not a git format-patch file (needs Subject:, a message, a diff)")
    if check_base and isinstance(recipe.base, DebianBase) and not debian_package_version(recipe.base.debian_package):
        problems.append(f"base.debian_package: {recipe.base.debian_package!r} is not installed "
                        f"(apt-get install {recipe.base.debian_package})")
    if problems:
        raise RecipeError(path, problems)
    return recipe


CONFIG_LINE = re.compile(r"^(CONFIG_[A-Z0-9_]+=(y|m|n|-?[0-9]+|0x[0-9a-fA-F]+|\".*\")|# CONFIG_[A-Z0-9_]+ is not set)$")


def fragment_problems(path: Path) -> list[str]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if s and not (CONFIG_LINE.match(s) or (s.startswith("#") and not s.startswith("# CONFIG_"))):
            out.append(f"{path.name}:{n}: not a config line: {s!r}")
    return out


def fragment_settings(path: Path) -> dict[str, str]:
    """CONFIG_X -> wanted value ('n' for '# ... is not set')."""
    wanted = {}
    for line in path.read_text().splitlines():
        s = line.strip()
        if m := re.match(r"^# (CONFIG_[A-Z0-9_]+) is not set$", s):
            wanted[m.group(1)] = "n"
        elif m := re.match(r"^(CONFIG_[A-Z0-9_]+)=(.*)$", s):
            wanted[m.group(1)] = m.group(2)
    return wanted


def is_format_patch(text: str) -> bool:
    return bool(re.search(r"^Subject: ", text, re.M) and re.search(r"^diff --git ", text, re.M)
                and re.search(r"^---$", text, re.M))
