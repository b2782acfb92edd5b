"""Stamps: what a row was measured with, so a resumed run can tell a current row from a stale one.

Two kinds of stamps go on every row:

* **generation stamps**, compared on resume (a row is reused only when all of them match):
  ``code_hash`` (the code that produces the kind's rows, see below), ``testbed_hash`` (the parsed
  content of ``testbed/local.yaml``) and, for points that use Iron, the calibration they were
  measured with (``calibration_id``; the fitted values themselves are recorded beside it);
* **run stamps**, recorded but never compared: ``run_id``, ``git_commit``, ``git_dirty`` (a new
  commit that does not touch a kind's code must not invalidate its rows; ``code_hash`` decides).

The file set behind ``code_hash``, per kind: the kind's driver module and every ``nfvlab`` module it
imports, transitively (also imports inside functions, e.g. ``from nfvlab.iron import IronRuntime``;
a package's ``__init__`` counts when anything below it is imported; the harness's bookkeeping modules,
BOOKKEEPING, are left out: they store and stamp rows, they do not measure them), plus the C sources and data
files (``*.c``, ``*.h``, ``*.cc``, ``*.cpp``, ``*.yaml``, ``*.lua``) inside the directories of those packages
that are not Python packages themselves: Iron's BPF C (``iron/bpf/``) when the driver reaches
``nfvlab.iron``, the workload C sources (``workloads/c/``) when it reaches ``nfvlab.workloads``, the
StateAlyzr corpus when it reaches ``nfvlab.statealyzr``; and sources outside the package that a
package builds (``EXTERNAL_SOURCES``: CHC's C++ data plane ``chc/`` when it reaches ``nfvlab.chc``).
Testbed code (``nfvlab.testbeds``) comes in through the same closure. Files are hashed by content
and path, so a moved or edited file changes the hash; comments count (cheap to re-measure, never
wrong to).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import time
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent  # src/nfvlab
SOURCE_SUFFIXES = (".c", ".h", ".cc", ".cpp", ".yaml", ".lua")
REPO_DIR = PACKAGE_DIR.parents[1]
# Sources a package builds from outside src/ (relative to the repository), by the package that builds them.
EXTERNAL_SOURCES = {"nfvlab.chc": "chc"}
# The harness's bookkeeping: where rows are stored, stamped, planned and reported, not how they are
# measured. Neither hashed nor followed (an edit to the result store must not re-measure every row).
BOOKKEEPING = ("nfvlab", "nfvlab.stamps", "nfvlab.results", "nfvlab.provenance", "nfvlab.runner", "nfvlab.plan",
               "nfvlab.spec", "nfvlab.cli", "nfvlab.state", "nfvlab.failures", "nfvlab.analysis",
               "nfvlab.experiments.registry")
# The columns every row carries (besides the fitted values of the inputs a point uses).
GENERATION_STAMPS = ("code_hash", "testbed_hash")
RUN_STAMPS = ("run_id", "git_commit", "git_dirty")
CALIBRATION_COLUMNS = ("calibration_id", "calibration_irq_extra_ns", "calibration_timer_extra_ns",
                       "calibration_source", "calibration_measured_at")


def _module_file(name: str) -> Path | None:
    """The file of an nfvlab module or package, or None if it is not part of the package."""
    parts = name.split(".")
    if parts[0] != "nfvlab":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Names of the nfvlab modules a source file imports (absolute and relative, anywhere in it)."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in out if m.split(".")[0] == "nfvlab"}


def module_closure(root: str) -> dict[str, Path]:
    """Every nfvlab module ``root`` reaches through imports, with its parent packages."""
    seen: dict[str, Path] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            sub = ".".join(parts[:i])
            if sub in seen or sub in BOOKKEEPING or sub.startswith("nfvlab.analysis."):
                continue
            f = _module_file(sub)
            if f is None:
                continue
            seen[sub] = f
            todo.extend(_imports(f, sub))
    return seen


def code_files(driver_module: str) -> list[Path]:
    """The files whose content ``code_hash`` covers for a driver module (see the module doc)."""
    closure = module_closure(driver_module)
    files = set(closure.values())
    package_dirs = {f.parent for f in closure.values() if f.name == "__init__.py"}
    for pkg in package_dirs:
        for f in pkg.rglob("*"):
            if not f.is_file() or not f.name.endswith(SOURCE_SUFFIXES):
                continue
            # data belongs to the nearest Python package above it: count it only when that is `pkg`
            owner = next(d for d in f.parents if (d / "__init__.py").exists() or d == pkg)
            if owner == pkg:
                files.add(f)
    for package, rel in EXTERNAL_SOURCES.items():
        if any(m == package or m.startswith(package + ".") for m in closure):
            files.update(f for f in (REPO_DIR / rel).rglob("*") if f.is_file() and f.name.endswith(SOURCE_SUFFIXES))
    return sorted(files)


def hash_files(files: list[Path], root: Path = PACKAGE_DIR) -> str:
    h = hashlib.sha256()
    for f in files:
        name = f.relative_to(root) if f.is_relative_to(root) else Path("@repo") / f.relative_to(REPO_DIR)
        h.update(str(name).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@cache
def _code_hash_cached(driver_module: str, mtimes: tuple) -> str:
    return hash_files(code_files(driver_module))


def code_hash(kind_name: str) -> str:
    from nfvlab.experiments.registry import driver_module

    module = driver_module(kind_name)
    files = code_files(module)
    return _code_hash_cached(module, tuple((str(f), f.stat().st_mtime_ns) for f in files))


def testbed_hash(config_path: Path | None = None) -> str:
    """Hash of the testbed config's parsed content (comments and key order do not count)."""
    from nfvlab.testbeds.local import DEFAULT_CONFIG

    data = yaml.safe_load(Path(config_path or DEFAULT_CONFIG).read_text()) or {}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"


def run_stamps(run_id: str | None = None) -> dict[str, Any]:
    from nfvlab.provenance import git_commit

    git = git_commit()
    return {"run_id": run_id or new_run_id(), "git_commit": git["commit"], "git_dirty": git["dirty"]}


def current_stamps(spec: Any, run_id: str | None = None) -> dict[str, Any]:
    """The stamps a row of ``spec`` measured now would carry: generation + run stamps.

    The calibration columns are per point (only points that use Iron carry them): see
    :func:`calibration_stamps` and :func:`point_uses_calibration`.
    """
    return {"code_hash": code_hash(spec.kind), "testbed_hash": testbed_hash(), **run_stamps(run_id)}


def point_uses_calibration(spec: Any, params: Any) -> bool:
    from nfvlab.experiments.registry import get_kind

    uses = get_kind(spec.kind).uses_calibration
    return bool(uses and uses(params))


def calibration_stamps(cal: Any) -> dict[str, Any]:
    """Row columns of an Iron calibration (nfvlab.iron.calibration.Calibration)."""
    return {
        "calibration_id": cal.id,
        "calibration_irq_extra_ns": cal.irq_extra_ns,
        "calibration_timer_extra_ns": cal.timer_extra_ns,
        "calibration_source": cal.source,
        "calibration_measured_at": cal.measured_at,
    }


def stale_reasons(row: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why a stored row is not current: each generation stamp (and calibration_id, when the current
    stamps carry one) that differs, as 'name: old -> new'. Empty when the row is current."""
    keys = [*GENERATION_STAMPS, *(["calibration_id"] if "calibration_id" in current else [])]
    return [f"{k}: {row.get(k) or 'none'} -> {current[k]}" for k in keys if row.get(k) != current[k]]


def current_generation(spec: Any, params: Any) -> tuple[dict[str, Any], list[str]]:
    """The generation stamps a row of this point must carry to be current now, and problems that make
    every such row stale whatever it carries (e.g. the Iron calibration itself is not current).

    For readers of results (the report's "current rows only"): a row is current when
    ``stale_reasons(row, stamps) == []`` and there are no problems."""
    now: dict[str, Any] = {"code_hash": code_hash(spec.kind), "testbed_hash": testbed_hash()}
    problems: list[str] = []
    if point_uses_calibration(spec, params):
        from nfvlab.iron import calibration

        try:
            now |= calibration_stamps(calibration.current())
        except calibration.CalibrationStale as e:
            problems.append(f"calibration not current ({'; '.join(e.reasons)})")
    return now, problems
