"""CPU-limited, CPU-pinned cgroups on cgroup v1 (cpu, cpuset, cpuacct hierarchies) or v2 (unified).

Layout: <controller root>/nfvlab/<run>/<container>. Quota = period / n on one core.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
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


def _v1_freezer_root() -> Path | None:
    root = CGROUP_ROOT / "freezer"
    return root if (root / "tasks").exists() else None


V1_CONTROLLERS = ("cpu", "cpuset", "cpuacct")


def harness_roots() -> list[Path]:
    """Every directory under which the harness creates cgroups (for clean)."""
    if cgroup_version() == 2:
        return [CGROUP_ROOT / state.PREFIX]
    roots = []
    for c in V1_CONTROLLERS:
        with contextlib.suppress(CgroupError):
            if _v1_root(c) / state.PREFIX not in roots:
                roots.append(_v1_root(c) / state.PREFIX)
    freezer = _v1_freezer_root()
    if freezer is not None:
        roots.insert(0, freezer / state.PREFIX)  # first: clean freezes and kills there before the rest
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
        freezer_root = _v1_freezer_root()
        cg_frz = None
        if freezer_root is not None:
            for part in range(1, len(rel.parts) + 1):
                _mkdir(freezer_root / Path(*rel.parts[:part]))
            cg_frz = freezer_root / rel
        return CgroupPaths(1, cg_cpu, cg_set, cg_acct, cg_frz)
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


class CgroupJoinError(CgroupError):
    """A process is not (or no longer) in the cgroups it was put in."""


# A cgroup directory's hierarchy does not change while it exists; resolving it (realpath and stat on
# cgroupfs) took 4 ms a call and every process start polls it (about 1 s per Iron repetition).
_HIERARCHY: dict[str, tuple[str, str]] = {}


def _hierarchy(d: Path) -> tuple[str, str] | None:
    """(controller as /proc/PID/cgroup names it, path inside its hierarchy) of a cgroup directory;
    None when d is not inside a mounted cgroup hierarchy (a write there lands in a plain file).
    Only found hierarchies are remembered: a directory that is not a cgroup yet is looked at again."""
    key = str(d)
    if key not in _HIERARCHY:
        where = _resolve_hierarchy(d)
        if where is None:
            return None
        _HIERARCHY[key] = where
    return _HIERARCHY[key]


def _resolve_hierarchy(d: Path) -> tuple[str, str] | None:
    real = Path(os.path.realpath(d))
    root = Path(os.path.realpath(CGROUP_ROOT))
    if not real.is_relative_to(root) or not (real / "cgroup.procs").exists() or real.parent == real:
        return None
    if cgroup_version() == 1 and real == root:
        return None
    if cgroup_version() == 2:
        return "", "/" + str(real.relative_to(os.path.realpath(CGROUP_ROOT))).removeprefix(".")
    mount = real
    while mount.parent != Path(os.path.realpath(CGROUP_ROOT)) and mount != mount.parent:
        mount = mount.parent
    rel = "/" + str(real.relative_to(mount)).removeprefix(".")
    return mount.name, rel.rstrip("/") or "/"


def membership(pid: int | str) -> dict[str, str]:
    """/proc/PID/cgroup as {controller: path}; v1 lines like 4:cpu,cpuacct:/a count once per controller."""
    out: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def not_joined(paths: CgroupPaths, pid: int | str) -> list[str]:
    """The hierarchies of `paths` in which pid is not where it should be (empty: it is a member)."""
    have = membership(pid)
    problems = []
    for d in paths.dirs:
        where = _hierarchy(d)
        if where is None:
            problems.append(f"{d} is not a cgroup of a mounted hierarchy")
            continue
        mount, rel = where
        controllers = [""] if mount == "" else mount.split(",")
        got = {have.get(c) for c in controllers}
        if got != {rel}:
            problems.append(f"{'/'.join(controllers) or 'unified'}: in {', '.join(sorted(map(str, got)))}, not {rel}")
    return problems


def join(paths: CgroupPaths, pid: int = 0) -> None:
    """Move a process (0 = the caller) into the container's cgroups and read /proc/PID/cgroup back
    (Mininet's cgroupSet checks the same way): a write the kernel accepted but did not apply, or a
    pid that is gone, raises CgroupJoinError. Safe in a preexec_fn."""
    pid_text = str(pid or os.getpid())
    for d in paths.dirs:
        _write(d / "cgroup.procs", pid_text)
    try:
        problems = not_joined(paths, pid_text)
    except OSError as e:
        raise CgroupJoinError(f"process {pid_text} vanished while joining {paths.cpu}: {e.strerror}") from e
    if problems:
        raise CgroupJoinError(f"process {pid_text} did not join {paths.cpu}: " + "; ".join(problems))


def shell_join_and_verify(paths: CgroupPaths, exit_code: int) -> str:
    """Shell commands that move the shell ($$) into `paths`, then read /proc/self/cgroup back and exit
    with `exit_code` (and a message on stderr) unless it is in every hierarchy."""
    cmds = [f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in paths.dirs]
    for d in paths.dirs:
        where = _hierarchy(d)
        if where is None:
            message = f"nfvlab: cgroup join failed: {d} is not a cgroup of a mounted hierarchy"
            cmds.append(f"{{ echo {shlex.quote(message)} >&2; exit {exit_code}; }}")
            continue
        mount, rel = where
        for c in [""] if mount == "" else mount.split(","):
            pattern = f"^[0-9]+:{'' if c == '' else f'([^:]*,)?{c}(,[^:]*)?'}:{rel}$"
            message = f"nfvlab: cgroup join failed: not in {c or 'unified'}:{rel}"
            cmds.append(f"grep -Eq {shlex.quote(pattern)} /proc/self/cgroup || "
                        f"{{ echo {shlex.quote(message)} >&2; exit {exit_code}; }}")
    return "; ".join(cmds)


def tasks(top: Path) -> set[int]:
    """Every pid in a cgroup tree (all levels)."""
    pids: set[int] = set()
    if not top.exists():
        return pids
    for procs_file in [top / "cgroup.procs", *top.rglob("cgroup.procs")]:
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(x) for x in procs_file.read_text().split()}
    return pids


def _wait_state(path: Path, want: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == want:
                return True
        time.sleep(0.01)
    return False


def kill_tasks(top: Path, timeout_s: float = 5.0) -> set[int]:
    """SIGKILL every task in a cgroup tree and wait until it is empty; returns the pids killed.

    v2: ``cgroup.kill`` (the kernel kills the whole subtree, forks included). v1: freeze the tree
    (freezer hierarchy) so no task can fork away, SIGKILL every task, thaw so the kills are delivered,
    as benchexec does; in the other v1 hierarchies kill what is left until they are empty too."""
    killed: set[int] = set()
    if not top.exists():
        return killed
    if (top / "cgroup.kill").exists():
        killed = tasks(top)
        _write(top / "cgroup.kill", "1")
    elif (top / "freezer.state").exists():
        _write(top / "freezer.state", "FROZEN")
        _wait_state(top / "freezer.state", "FROZEN", timeout_s)
        try:
            for pid in tasks(top):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        finally:
            _write(top / "freezer.state", "THAWED")
    deadline = time.monotonic() + timeout_s
    while True:
        left = tasks(top)
        if not left:
            return killed
        if time.monotonic() > deadline:
            raise CgroupError(f"tasks {sorted(left)} of {top} survive SIGKILL")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.02)


def cpu_usage_s(paths: CgroupPaths) -> float:
    """CPU time consumed by the cgroup so far."""
    if paths.version == 1:
        return int((paths.cpuacct / "cpuacct.usage").read_text()) / 1e9
    for line in (paths.cpu / "cpu.stat").read_text().splitlines():
        key, value = line.split()
        if key == "usage_usec":
            return int(value) / 1e6
    raise CgroupError(f"no usage_usec in {paths.cpu / 'cpu.stat'}")


def remove_run(top: Path) -> list[str]:
    """remove_tree(top), then the shared harness level above it (nfvlab/) unless another run still
    has cgroups there: what a harness user created goes, nothing of anyone else's."""
    removed = remove_tree(top)
    with contextlib.suppress(OSError):
        top.parent.rmdir()
        removed.append(str(top.parent))
    return removed


def remove_tree(top: Path, timeout_s: float = 5.0) -> list[str]:
    """Kill every task in a cgroup tree (kill_tasks), then remove its directories bottom-up."""
    removed: list[str] = []
    if not top.exists():
        return removed
    kill_tasks(top, timeout_s)
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
