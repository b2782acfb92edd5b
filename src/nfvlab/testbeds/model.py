"""The testbed object model shared by every testbed: containers and the traffic peer.

A container is a CPU-limited cgroup plus its own network namespace joined to the root namespace by
a veth pair (Mininet's CPULimitedHost, without Mininet). Testbeds build these; workloads and Iron
only read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class CgroupPaths:
    """Where one container's cgroup lives in each controller hierarchy.

    On cgroup v1 ``cpu`` and ``cpuset`` are different directories (``cpuacct`` may be a third);
    on cgroup v2 all are the same unified directory.
    """

    version: int  # 1 or 2
    cpu: Path
    cpuset: Path
    cpuacct: Path
    # v1 only, where the freezer hierarchy is mounted: lets cleanup freeze the container before killing
    # its tasks (nothing forks away meanwhile); v2 has cgroup.kill / cgroup.freeze in the unified dir
    freezer: Path | None = None

    @property
    def dirs(self) -> list[Path]:
        """Every distinct directory a member process must be in."""
        out: list[Path] = []
        for d in (self.cpu, self.cpuset, self.cpuacct, self.freezer):
            if d is not None and d not in out:
                out.append(d)
        return out


@dataclass(frozen=True)
class Container:
    name: str  # e.g. "nfvlab-c3"; also the netns name
    index: int  # position on the core, 0 is the victim
    role: str  # "victim" or the interferer kind ("sysbench", "udp_sender", "udp_receiver", ...)
    netns: str
    host_ifname: str  # veth end in the root namespace (attached to the testbed bridge)
    ns_ifname: str  # veth end inside the container namespace
    ip: str  # address inside 198.18.0.0/15
    cpu: int  # the core the container is pinned to
    period_us: int
    quota_us: int
    cgroup: CgroupPaths


@dataclass(frozen=True)
class Peer:
    """The "other machine": the traffic source/sink, on its own core in its own namespace."""

    netns: str
    host_ifname: str
    ns_ifname: str
    ip: str
    cpu: int
    cgroup: CgroupPaths | None = None  # unlimited, pinned to its core, heavily weighted


@dataclass
class Topology:
    containers: list[Container]
    peer: Peer
    bridge: str
    victim_cpu: int
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def victim(self) -> Container:
        return self.containers[0]

    @property
    def interferers(self) -> list[Container]:
        return self.containers[1:]
