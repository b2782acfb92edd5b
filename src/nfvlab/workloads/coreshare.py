"""Who got a core's time between two moments: our containers, ksoftirqd, other tasks, idle.

``sample(topo)`` reads the root cpuacct's per-CPU usage (every task's run time on the core; with
IRQ_TIME_ACCOUNTING off it includes the interrupts each task absorbed), each container's per-CPU
usage and ``ksoftirqd/<cpu>``'s run time; ``split(a, b, topo)`` turns two samples into shares of the
core's wall time. ``foreign`` = root - containers - ksoftirqd: tasks that are not ours (other users of
a shared machine) - they take time from the containers only when nothing of ours leaves the core idle.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from nfvlab.testbeds.model import Topology

CG_CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def percpu_ns(path: Path, cpu: int) -> int:
    """A cgroup v1 cpuacct directory's usage on one CPU (0 when unreadable, e.g. cgroup v2)."""
    try:
        return int((path / "cpuacct.usage_percpu").read_text().split()[cpu])
    except (OSError, IndexError, ValueError):
        return 0


def ksoftirqd_ns(cpu: int) -> int:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == f"ksoftirqd/{cpu}":
                return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return 0


@dataclass(frozen=True)
class Sample:
    t_ns: int
    root_ns: int
    ksoftirqd_ns: int
    containers_ns: dict[str, int]


def sample(topo: Topology) -> Sample:
    cpu = topo.victim_cpu
    return Sample(time.monotonic_ns(), percpu_ns(CG_CPUACCT, cpu), ksoftirqd_ns(cpu),
                  {c.name: percpu_ns(Path(c.cgroup.cpuacct), cpu) for c in topo.containers})


@dataclass(frozen=True)
class Split:
    wall_ns: int
    containers_ns: dict[str, int]
    ksoftirqd_ns: int
    foreign_ns: int
    idle_ns: int

    def pct(self, ns: float) -> float:
        return 100.0 * ns / self.wall_ns if self.wall_ns else float("nan")


def split(a: Sample, b: Sample) -> Split:
    per = {n: b.containers_ns[n] - a.containers_ns.get(n, 0) for n in b.containers_ns}
    root = b.root_ns - a.root_ns
    ks = b.ksoftirqd_ns - a.ksoftirqd_ns
    wall = b.t_ns - a.t_ns
    return Split(wall, per, ks, root - sum(per.values()) - ks, wall - root)
