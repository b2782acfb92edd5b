"""CPU-limited, CPU-pinned cgroups on cgroup v1 (cpu, cpuset, cpuacct hierarchies) or v2 (unified).

Layout: <controller root>/nfvlab/<run>/<container>. Quota = period / n on one core.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from nfvlab import state
from nfvlab.testbeds.model import CgroupPaths

CGROUP_ROOT = Path("/sys/fs/cgroup")


class CgroupError(RuntimeError):
    pass


def cgroup_version() -> int:
    """2 when /sys/fs/cgroup is the unified hierarchy, else 1."""
    return 2 if (CGROUP_ROOT / "cgroup.controllers").exists() else 1


def _v1_root(controller: str) -> Path:
    for cand in (CGROUP_ROOT / controller, CGROUP_ROOT / "cpu,cpuacct", CGROUP_ROOT / "cpuacct,cpu"):
        if (cand / "tasks").exists() and (controller != "cpu" or (cand / "cpu.cfs_quota_us").exists()):
            if controller == "cpuacct" and not (cand / "cpuacct.usage").exists():
                continue
            return cand
    raise CgroupError(f"cgroup v1 controller {controller!r} is not mounted under {CGROUP_ROOT}")


def harness_roots() -> list[Path]:
    """Every directory under which the harness creates cgroups (for clean)."""
    if cgroup_version() == 2:
        return [CGROUP_ROOT / state.PREFIX]
    roots = []
    for c in ("cpu", "cpuset", "cpuacct"):
        with contextlib.suppress(CgroupError):
            roots.append(_v1_root(c) / state.PREFIX)
    return roots


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        raise CgroupError(f"cannot write {value!r} to {path}: {e.strerror}") from e


def _mkdir(path: Path) -> None:
    if not path.exists():
        state.record("cgroup", path=str(path))
        path.mkdir()


def _v1_cpuset_chain(root: Path, rel: Path, cpus: str) -> Path:
    """cpuset v1 children start empty: every level needs cpus and mems before tasks can join."""
    mems = (root / "cpuset.mems").read_text().strip()
    path = root
    for part in rel.parts:
        path = path / part
        _mkdir(path)
        _write(path / "cpuset.mems", mems)
        if path == root / rel:
            _write(path / "cpuset.cpus", cpus)
        else:
            _write(path / "cpuset.cpus", (root / "cpuset.cpus").read_text().strip())
    return path


def _v2_enable(path: Path, controllers: str) -> None:
    _write(path / "cgroup.subtree_control", " ".join(f"+{c}" for c in controllers.split()))


# The run's parent cgroup gets the largest CPU weight, so that unrelated processes which happen to run
# on the testbed's cores take as little as possible from the containers (they still take some).
V1_MAX_SHARES = 262144
V2_MAX_WEIGHT = 10000


def create(run: str, name: str, cpu: int, quota_us: int | None, period_us: int) -> CgroupPaths:
    """A container cgroup pinned to `cpu`, limited to quota_us per period_us (None: unlimited)."""
    rel = Path(state.PREFIX) / run / name
    if cgroup_version() == 1:
        cpu_dir = _v1_root("cpu")
        for part in range(1, len(rel.parts) + 1):
            _mkdir(cpu_dir / Path(*rel.parts[:part]))
        for level in (rel.parent.parent, rel.parent):  # nfvlab/ and nfvlab/<run>/
            _write(cpu_dir / level / "cpu.shares", str(V1_MAX_SHARES))
        cg_cpu = cpu_dir / rel
        _write(cg_cpu / "cpu.cfs_period_us", str(period_us))
        _write(cg_cpu / "cpu.cfs_quota_us", str(-1 if quota_us is None else quota_us))
        cg_set = _v1_cpuset_chain(_v1_root("cpuset"), rel, str(cpu))
        acct_root = _v1_root("cpuacct")
        if acct_root == cpu_dir:
            cg_acct = cg_cpu
        else:
            for part in range(1, len(rel.parts) + 1):
                _mkdir(acct_root / Path(*rel.parts[:part]))
            cg_acct = acct_root / rel
        return CgroupPaths(1, cg_cpu, cg_set, cg_acct)
    path = CGROUP_ROOT
    _v2_enable(path, "cpu cpuset")
    for part in rel.parts:
        path = path / part
        _mkdir(path)
        if path != CGROUP_ROOT / rel:
            _v2_enable(path, "cpu cpuset")
    for level in (path.parent.parent, path.parent):  # nfvlab/ and nfvlab/<run>/
        _write(level / "cpu.weight", str(V2_MAX_WEIGHT))
    _write(path / "cpuset.cpus", str(cpu))
    _write(path / "cpu.max", f"{'max' if quota_us is None else quota_us} {period_us}")
    return CgroupPaths(2, path, path, path)


def set_quota(paths: CgroupPaths, quota_us: int, period_us: int) -> None:
    if paths.version == 1:
        _write(paths.cpu / "cpu.cfs_quota_us", str(quota_us))
    else:
        _write(paths.cpu / "cpu.max", f"{quota_us} {period_us}")


def join(paths: CgroupPaths, pid: int = 0) -> None:
    """Move a process (0 = the caller) into the container's cgroups. Safe in a preexec_fn."""
    pid_text = str(pid or os.getpid())
    for d in {paths.cpu, paths.cpuset, paths.cpuacct}:
        _write(d / "cgroup.procs", pid_text)


def cpu_usage_s(paths: CgroupPaths) -> float:
    """CPU time consumed by the cgroup so far."""
    if paths.version == 1:
        return int((paths.cpuacct / "cpuacct.usage").read_text()) / 1e9
    for line in (paths.cpu / "cpu.stat").read_text().splitlines():
        key, value = line.split()
        if key == "usage_usec":
            return int(value) / 1e6
    raise CgroupError(f"no usage_usec in {paths.cpu / 'cpu.stat'}")


def remove_tree(top: Path, timeout_s: float = 5.0) -> list[str]:
    """Remove a cgroup directory tree bottom-up; its processes must already have exited."""
    removed: list[str] = []
    if not top.exists():
        return removed
    dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for d in [*dirs, top]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                d.rmdir()
                removed.append(str(d))
                break
            except FileNotFoundError:
                break
            except OSError as e:  # EBUSY while exiting tasks are still being reaped
                if time.monotonic() > deadline:
                    raise CgroupError(f"cannot remove cgroup {d}: {e.strerror}") from e
                time.sleep(0.05)
    return removed
