"""Provenance: where, when and with what a result was measured."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from nfvlab.testbeds.cgroups import cgroup_version

REPO = Path(__file__).resolve().parents[2]
TOOLS = {
    "sysbench": ["sysbench", "--version"],
    "gcc": ["gcc", "--version"],
    "clang": ["clang", "--version"],
    "iperf3": ["iperf3", "--version"],
    "bpftool": ["bpftool", "version"],
    "ip": ["ip", "-V"],
}
PACKAGES = ["nfvlab", "pandas", "seaborn", "pydantic", "pyroute2"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _first_line(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def git_commit() -> dict[str, str | bool | None]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
        except OSError:
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def cpu_model() -> str | None:
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return None
    return m.group(1).strip() if m else None


def collect(spec_path: Path, spec_hash: str, scale: str | None) -> dict:
    # Imported here: nfvlab.kernel.build imports this module (now_iso), a top-level import would cycle.
    from nfvlab.kernel.provenance import kernel_provenance

    pkgs = {}
    for p in PACKAGES:
        try:
            pkgs[p] = version(p)
        except PackageNotFoundError:
            pkgs[p] = None
    return {
        "spec": str(spec_path),
        "spec_hash": spec_hash,
        "scale": scale,
        "git": git_commit(),
        "host": platform.node(),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        # The nfvlab recipe (and its hash) behind the kernel, None fields on a stock kernel (docs/kernel.md).
        "kernel_recipe": kernel_provenance(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cgroup_version": cgroup_version(),
        "python": platform.python_version(),
        "tools": {name: _first_line(argv) for name, argv in TOOLS.items()},
        "packages": pkgs,
    }
