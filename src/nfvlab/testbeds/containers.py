"""Containers built on any node through its shell: a CPU-limited, CPU-pinned cgroup (v1 or v2) plus a
network namespace whose interface is a macvlan on the node's experiment NIC (Mininet's
CPULimitedHost, on a remote host). The local testbed keeps its own netlink/veth builder
(nfvlab.testbeds.local); this one needs nothing on the node but iproute2 and a shell.

Names: namespaces ``<prefix><node>-c<i>``, cgroups ``<controller root>/<prefix><node>/c<i>``.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from nfvlab.testbeds.model import CgroupPaths, Container
from nfvlab.testbeds.node import Node, NodeError

CGROUP_ROOT = Path("/sys/fs/cgroup")
RPS0 = Path("/sys/class/net/eth0/queues/rx-0/rps_cpus")


@dataclass(frozen=True)
class NodeContainer(Container):
    """A container that lives on a node: processes in it are started by that node."""

    node: Node | None = field(default=None, compare=False, repr=False)


def cgroup_mounts(node: Node) -> tuple[int, dict[str, Path]]:
    """(version, {controller: mount point}) on the node."""
    text = node.read_text("/proc/self/mounts")
    v1: dict[str, Path] = {}
    unified: Path | None = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        _dev, mnt, fstype, opts = parts[:4]
        if fstype == "cgroup":
            for c in opts.split(","):
                if c in ("cpu", "cpuset", "cpuacct"):
                    v1[c] = Path(mnt)
        elif fstype == "cgroup2" and mnt == str(CGROUP_ROOT):
            unified = Path(mnt)
    if {"cpu", "cpuset", "cpuacct"} <= v1.keys():
        return 1, v1
    if unified is not None:
        return 2, {"cpu": unified, "cpuset": unified, "cpuacct": unified}
    raise NodeError(node.name, "cat /proc/self/mounts", "shows neither cgroup v1 cpu/cpuset/cpuacct nor a "
                    "unified cgroup v2 at /sys/fs/cgroup")


def _w(value: str, path: Path) -> str:
    return f"echo {shlex.quote(value)} > {shlex.quote(str(path))}"


def mac_for(ip: str) -> str:
    """A locally administered MAC derived from the container's address: a container rebuilt with the
    same address keeps its MAC, so the peer's ARP entry from an earlier topology stays right."""
    return "02:6e:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


class NodeContainers:
    """Builds and removes containers on one node. ``up`` returns them; always call ``down``."""

    def __init__(self, node: Node, subnet: str, nic: str, period_us: int = 100_000):
        self.node = node
        self.nic = nic
        self.period_us = period_us
        self.net = ipaddress.ip_network(subnet, strict=False)
        if not ipaddress.ip_network("198.18.0.0/15").supernet_of(self.net):
            raise ValueError(f"node {node.name}: container_subnet {subnet} is outside 198.18.0.0/15")
        self.group = f"{node.name_prefix}{node.name}"
        self.netns: list[str] = []
        self.version = 0
        self.roots: dict[str, Path] = {}
        self._rps_before: dict[str, str] = {}

    def address(self, i: int) -> str:
        hosts = list(self.net.hosts())
        if i >= len(hosts):
            raise ValueError(f"node {self.node.name}: container_subnet {self.net} has no address for container {i}")
        return str(hosts[i])

    def up(self, roles: list[str], cpu: int, prefixlen: int) -> list[NodeContainer]:
        n = len(roles)
        quota = self.period_us // n
        self.version, self.roots = cgroup_mounts(self.node)
        self._steer_nic(cpu)
        out = []
        for i, role in enumerate(roles):
            name = f"{self.group}-c{i}"
            if len(name) > 15:
                raise ValueError(f"container name {name} is longer than an interface name may be (15)")
            cg = self._cgroup(f"c{i}", cpu, quota)
            self.netns.append(name)
            ip = self.address(i)
            tmp = f"nfm{i}-{abs(hash(name)) % 10**6}"
            ns = f"ip netns exec {name}"
            self.node.run(" && ".join([
                f"ip netns add {name}",
                f"ip link add {tmp} link {shlex.quote(self.nic)} address {mac_for(ip)} type macvlan mode bridge",
                f"ip link set {tmp} netns {name}",
                f"{ns} ip link set {tmp} name eth0",
                f"{ns} ip addr add {ip}/{prefixlen} dev eth0",
                f"{ns} ip link set eth0 up",
                f"{ns} ip link set lo up",
                f"{ns} sh -c {shlex.quote(_w(format(1 << cpu, 'x'), RPS0))}",
            ]), timeout=30)
            out.append(NodeContainer(name=name, index=i, role=role, netns=name, host_ifname=self.nic,
                                     ns_ifname="eth0", ip=ip, cpu=cpu, period_us=self.period_us, quota_us=quota,
                                     cgroup=cg, node=self.node))
        return out

    def _steer_nic(self, cpu: int) -> None:
        """RPS on every receive queue of the experiment NIC to the containers' core (the paper's
        per-core NIC queues); the old masks are restored by down()."""
        nic = shlex.quote(self.nic)
        res = self.node.run(f"for q in /sys/class/net/{nic}/queues/rx-*; do echo $q $(cat $q/rps_cpus); done",
                            check=False, timeout=15)
        for line in res.stdout.splitlines():
            q, _, mask = line.partition(" ")
            if mask:
                self._rps_before[q] = mask.strip()
        mask = format(1 << cpu, "x")
        self.node.run(" && ".join(_w(mask, Path(q) / "rps_cpus") for q in self._rps_before) or "true", timeout=15)

    def _cgroup(self, leaf: str, cpu: int, quota: int) -> CgroupPaths:
        cmds = []
        if self.version == 1:
            cpu_root, set_root, acct_root = self.roots["cpu"], self.roots["cpuset"], self.roots["cpuacct"]
            top_set = set_root / self.group
            cmds += [f"mkdir -p {set_root / self.group / leaf} {cpu_root / self.group / leaf} "
                     f"{acct_root / self.group / leaf}",
                     f"cat {set_root}/cpuset.mems > {top_set}/cpuset.mems",
                     f"cat {set_root}/cpuset.cpus > {top_set}/cpuset.cpus",
                     f"cat {set_root}/cpuset.mems > {top_set / leaf}/cpuset.mems",
                     _w(str(cpu), top_set / leaf / "cpuset.cpus"),
                     _w("262144", cpu_root / self.group / "cpu.shares"),
                     _w(str(self.period_us), cpu_root / self.group / leaf / "cpu.cfs_period_us"),
                     _w(str(quota), cpu_root / self.group / leaf / "cpu.cfs_quota_us")]
            paths = CgroupPaths(1, cpu_root / self.group / leaf, top_set / leaf, acct_root / self.group / leaf)
        else:
            root = self.roots["cpu"]
            cmds += [_w("+cpu +cpuset", root / "cgroup.subtree_control"),
                     f"mkdir -p {root / self.group / leaf}",
                     _w("+cpu +cpuset", root / self.group / "cgroup.subtree_control"),
                     _w("10000", root / self.group / "cpu.weight"),
                     _w(str(cpu), root / self.group / leaf / "cpuset.cpus"),
                     _w(f"{quota} {self.period_us}", root / self.group / leaf / "cpu.max")]
            paths = CgroupPaths(2, root / self.group / leaf, root / self.group / leaf, root / self.group / leaf)
        self.node.run(" && ".join(cmds), timeout=30)
        return paths

    def down(self) -> None:
        """Processes still in the containers are killed by pid, then namespaces and cgroups go."""
        for ns in self.netns:
            self.node.run(f"for p in $(ip netns pids {ns}); do kill -9 $p; done; ip netns del {ns}", check=False,
                          timeout=30)
        self.netns.clear()
        if self.roots:
            dirs = sorted({str(r / self.group) for r in self.roots.values()})
            # leaves first; rmdir (not rm -r) is how cgroups are removed; retried while tasks exit
            script = "; ".join(
                f"for i in 1 2 3 4 5 6 7 8 9 10; do find {d} -depth -type d -exec rmdir {{}} + 2>/dev/null; "
                f"[ -d {d} ] || break; sleep 0.2; done" for d in dirs)
            self.node.run(script, check=False, timeout=30)
        if self._rps_before:
            self.node.run("; ".join(_w(m, Path(q) / "rps_cpus") for q, m in self._rps_before.items()), check=False,
                          timeout=15)
            self._rps_before.clear()
