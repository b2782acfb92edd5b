"""Testbeds: where a spec runs. A ``Testbed`` hands out nodes by role and builds the Iron topology
(containers on the victim host, the traffic peer on the traffic generator) on them.

* ``LocalNodeTestbed``: this machine, exactly today's ``LocalTestbed`` (it delegates to it).
* ``SshTestbed``: the nodes of an ssh inventory (testbed/*.yaml), reached through fabric.

Drivers use: ``up(roles, core_rate_mbps, idle_poll) -> Topology``, ``wait_quiet()``,
``counters(cpu)``, ``qdisc_drops(topo)``, ``node(role)``, ``facts()``, ``down()``.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfvlab.testbeds import facts as node_facts
from nfvlab.testbeds.containers import NodeContainer, NodeContainers
from nfvlab.testbeds.inventory import Inventory, NodeSpec, load_inventory
from nfvlab.testbeds.model import Peer, Topology
from nfvlab.testbeds.node import LocalNode, Node, NodeError, SshNode, run_parallel


class TestbedError(RuntimeError):
    __test__ = False


class Testbed:
    """Nodes by role. Subclasses build topologies on them."""

    __test__ = False
    kind = "abstract"

    def __init__(self, name: str, nodes: list[Node]):
        self.name = name
        self.nodes = nodes
        self.topology: Topology | None = None

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def nodes_with(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.has_role(role)]

    def node(self, role: str) -> Node:
        found = self.nodes_with(role)
        if not found:
            raise TestbedError(f"testbed {self.name} has no node with role {role!r} "
                               f"(nodes: {', '.join(f'{n.name}={list(n.roles)}' for n in self.nodes)})")
        return found[0]

    def run_all(self, cmd: list[str] | str, timeout: float = 60.0) -> dict[str, Any]:
        return run_parallel(self.nodes, cmd, timeout)

    def facts(self) -> dict[str, Any]:
        """Provenance: per node, NIC model/driver/firmware, IRQ/RPS settings, governor, cmdline."""
        return {"name": self.name, "kind": self.kind,
                "nodes": {n.name: {"roles": list(n.roles), **node_facts.collect(n)} for n in self.nodes}}

    def up(self, roles: list[str], core_rate_mbps: float = math.inf, idle_poll: bool | None = None) -> Topology:
        raise NotImplementedError

    def wait_quiet(self, sample_s: float = 0.5) -> Any:
        return None

    def counters(self, cpu: int) -> Any:
        from nfvlab.workloads.hostcounters import HostCounters

        return HostCounters().snapshot(cpu)

    def qdisc_drops(self, topo: Topology) -> int:
        return 0

    def cpu_usage_s(self, c: Any) -> float:
        """CPU time a container's cgroup has used so far."""
        from nfvlab.testbeds import cgroups

        return cgroups.cpu_usage_s(c.cgroup)

    def down(self) -> None:
        for n in self.nodes:
            n.close()


class LocalNodeTestbed(Testbed):
    """This machine as every role: the containers and the peer are today's LocalTestbed's."""

    kind = "local"

    def __init__(self, config: Any = None, **local_kw: Any):
        """``local_kw`` go to LocalTestbed as they are (prefix, subnet, wait_s)."""
        from nfvlab.testbeds.local import LocalTestbed

        self.local = LocalTestbed(config, **local_kw)
        node = LocalNode("local", roles=("victim_host", "traffic_generator", "store", "nf_host"))
        super().__init__(self.local.config.name, [node])

    def up(self, roles: list[str], core_rate_mbps: float = math.inf, idle_poll: bool | None = None) -> Topology:
        self.topology = self.local.up(roles, core_rate_mbps, idle_poll=idle_poll)
        return self.topology

    def wait_quiet(self, sample_s: float = 0.5) -> Any:
        return self.local.wait_quiet(sample_s)

    def qdisc_drops(self, topo: Topology) -> int:
        from nfvlab.testbeds import network

        return network.qdisc_stats(topo.peer.host_ifname).get("qdisc_drops", 0)

    def down(self) -> None:
        self.local.down()
        self.topology = None


@dataclass(frozen=True)
class NodePeer(Peer):
    """The traffic peer on a real (or emulated) host: processes run on that node, pinned to its core."""

    node: Node | None = field(default=None, compare=False, repr=False)


def ssh_node(spec: NodeSpec, inv: Inventory) -> SshNode:
    d = inv.defaults
    key = spec.key or d.key
    return SshNode(spec.name, spec.address, user=spec.user or d.user, port=spec.port or d.port,
                   key=Path(key).expanduser() if key else None,
                   known_hosts=Path(d.known_hosts).expanduser() if d.known_hosts else None,
                   connect_timeout_s=d.connect_timeout_s, roles=tuple(spec.roles), cores=tuple(spec.cores),
                   experiment_nic=spec.experiment_nic.name, workdir=spec.workdir or d.workdir / spec.name,
                   name_prefix=d.name_prefix, extra={"spec": spec})


class SshTestbed(Testbed):
    """The nodes of an ssh inventory. The victim host builds the containers (macvlan on its experiment
    NIC, RPS steered to its first core); the traffic generator is the peer, on its first core."""

    kind = "ssh"

    def __init__(self, inventory: Inventory | Path | str):
        self.inventory = inventory if isinstance(inventory, Inventory) else load_inventory(inventory)
        super().__init__(self.inventory.name, [ssh_node(n, self.inventory) for n in self.inventory.nodes])
        self._containers: NodeContainers | None = None

    def check(self) -> None:
        """Every node answers (in parallel) and has what the experiment needs."""
        res = run_parallel(self.nodes, "command -v ip sysbench taskset setsid >/dev/null && uname -r", timeout=30,
                           check=False)
        bad = [f"{name}: {r.stderr.strip() or 'ip/sysbench/taskset/setsid missing (run nfvlab provision)'}"
               for name, r in res.items() if not r.ok]
        if bad:
            raise TestbedError(f"testbed {self.name}: nodes not ready: " + "; ".join(bad))

    def up(self, roles: list[str], core_rate_mbps: float = math.inf, idle_poll: bool | None = None) -> Topology:
        if math.isfinite(core_rate_mbps):
            raise TestbedError("the ssh testbed has no per-core HTB limiter yet (workload.core_rate_mbps must be inf)")
        victim, peer_node = self.node("victim_host"), self.node("traffic_generator")
        if victim is peer_node:
            raise TestbedError(f"testbed {self.name}: victim_host and traffic_generator must be different nodes")
        vspec: NodeSpec = victim.extra["spec"]
        pspec: NodeSpec = peer_node.extra["spec"]
        prefixlen = int(vspec.experiment_nic.address.split("/")[1])
        try:
            self._containers = NodeContainers(victim, vspec.container_subnet or "", vspec.experiment_nic.name)
            containers = self._containers.up(roles, vspec.cores[0], prefixlen)
            peer = NodePeer(netns="", host_ifname=pspec.experiment_nic.name, ns_ifname=pspec.experiment_nic.name,
                            ip=pspec.experiment_nic.address.split("/")[0], cpu=pspec.cores[0], node=peer_node)
            self.topology = Topology(containers, peer, bridge="", victim_cpu=vspec.cores[0],
                                     extra={"victim_node": victim.name, "peer_node": peer_node.name})
            return self.topology
        except BaseException:
            self.down()
            raise

    def counters(self, cpu: int) -> Any:
        """The victim host's /proc counters, copied into a local directory HostCounters reads."""
        from nfvlab.workloads.hostcounters import HostCounters

        return remote_counters(self.node("victim_host"), cpu, HostCounters)

    def qdisc_drops(self, topo: Topology) -> int:
        return 0  # no HTB on the ssh testbed (see up)

    def cpu_usage_s(self, c: Any) -> float:
        cg = c.cgroup
        node = c.node or self.node("victim_host")
        if cg.version == 1:
            return int(node.read_text(cg.cpuacct / "cpuacct.usage", timeout=15)) / 1e9
        for line in node.read_text(cg.cpu / "cpu.stat", timeout=15).splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        raise TestbedError(f"node {node.name}: no usage_usec in {cg.cpu / 'cpu.stat'}")

    def wait_quiet(self, sample_s: float = 0.5) -> Any:
        """The victim core's load over sample_s, read on the victim host (recorded, not waited for)."""
        from nfvlab.testbeds.local import CoreLoad

        node = self.node("victim_host")
        cpu = node.cores[0]

        def ticks() -> tuple[int, int, int]:
            for line in node.read_text("/proc/stat", timeout=15).splitlines():
                f = line.split()
                if f and f[0] == f"cpu{cpu}":
                    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in f[1:9])
                    total = user + nice + system + idle + iowait + irq + softirq + steal
                    return total - idle - iowait, irq + softirq, total
            raise TestbedError(f"node {node.name}: no cpu{cpu} in /proc/stat")

        b0, i0, t0 = ticks()
        time.sleep(sample_s)
        b1, i1, t1 = ticks()
        span = max(1, t1 - t0)
        return CoreLoad(100.0 * (b1 - b0) / span, 100.0 * (i1 - i0) / span)

    def down(self) -> None:
        if self._containers is not None:
            with contextlib.suppress(NodeError):
                self._containers.down()
            self._containers = None
        self.topology = None
        super().down()


def remote_counters(node: Node, cpu: int, counters_cls: Any) -> Any:
    sep = "----nfvlab----"
    script = (f"pid=$(pgrep -x ksoftirqd/{int(cpu)} | head -n1); echo $pid; echo {sep}; cat /proc/stat; "
              f"echo {sep}; cat /proc/softirqs; echo {sep}; cat /proc/$pid/stat")
    text = node.run(script, timeout=15).stdout
    pid, stat, softirqs, pstat = (part.strip("\n") for part in text.split(sep + "\n"))
    with tempfile.TemporaryDirectory(prefix="nfvlab-counters-") as d:
        root = Path(d)
        (root / "stat").write_text(stat + "\n")
        (root / "softirqs").write_text(softirqs + "\n")
        (root / pid.strip()).mkdir()
        (root / pid.strip() / "comm").write_text(f"ksoftirqd/{cpu}\n")
        (root / pid.strip() / "stat").write_text(pstat + "\n")
        return counters_cls(root).snapshot(cpu)


# --- processes on a testbed's containers and peer -----------------------------------------------

def remote_log_dir(node: Node, local_dir: Path) -> Path:
    """Where a node keeps the logs that belong in local_dir (under its workdir, unique per path)."""
    return node.workdir / "logs" / str(Path(local_dir).resolve()).lstrip("/")


SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/lib/", "/opt/")


def node_argv(node: Node | None, argv: list[str]) -> list[str]:
    """argv for the node: a program the harness built here (e.g. nfvflood under build/) is copied to
    the node's workdir/bin once and run from there; system programs are the node's own."""
    exe = argv[0] if argv else ""
    if node is None or not exe.startswith("/") or exe.startswith(SYSTEM_PREFIXES) or not Path(exe).is_file():
        return argv
    pushed: dict[str, str] = node.extra.setdefault("pushed", {})
    if exe not in pushed:
        dst = node.workdir / "bin" / Path(exe).name
        node.put(Path(exe), dst)
        node.run(["chmod", "0755", str(dst)], timeout=15)
        pushed[exe] = str(dst)
    return [pushed[exe], *argv[1:]]


def start_in_node_container(c: NodeContainer, name: str, argv: list[str], log_dir: Path) -> Any:
    from nfvlab.testbeds.processes import _in_cgroup_and_netns

    return _start_fetching(c.node, name, _in_cgroup_and_netns(c.cgroup, c.netns, node_argv(c.node, argv)), log_dir)


def start_on_node_peer(peer: NodePeer, name: str, argv: list[str], log_dir: Path) -> Any:
    return _start_fetching(peer.node, name, ["taskset", "-c", str(peer.cpu), *node_argv(peer.node, argv)], log_dir)


@dataclass
class FetchingProc:
    """A node's process whose logs are copied back into the local raw directory when it ends."""

    proc: Any
    local_dir: Path
    name: str
    _fetched: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.running()

    def wait(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout)
        self._fetch()
        return rc

    def wait_with_usage(self, timeout: float) -> tuple[int, float]:
        out = self.proc.wait_with_usage(timeout)
        self._fetch()
        return out

    def signal(self, sig: int) -> None:
        """Signal it on its node (never os.kill: the pid is the node's, not this machine's)."""
        self.proc.node.kill(self.proc.pid, sig)

    def stop(self, sig: int = 15, grace_s: float = 3.0) -> int:
        rc = self.proc.stop(sig, grace_s)
        self._fetch()
        return rc

    def stdout(self) -> str:
        self._fetch()
        return (self.local_dir / f"{self.name}.out").read_text(errors="replace")

    def stderr(self) -> str:
        self._fetch()
        return (self.local_dir / f"{self.name}.err").read_text(errors="replace")

    def _fetch(self) -> None:
        if self._fetched or self.proc.running():
            return
        node = self.proc.node
        for p in (self.proc.stdout_path, self.proc.stderr_path):
            node.get(p, self.local_dir / p.name)
        self._fetched = True


def _start_fetching(node: Node | None, name: str, argv: list[str], log_dir: Path) -> FetchingProc:
    if node is None:
        raise TestbedError(f"{name}: no node to start it on")
    local_dir = Path(log_dir)
    local_dir.mkdir(parents=True, exist_ok=True)
    proc = node.start(name, argv, remote_log_dir(node, local_dir))
    return FetchingProc(proc, local_dir, name)


def testbed_from_option(value: str | None) -> Testbed:
    """``--testbed``: ``local`` (default) or an inventory file."""
    if value in (None, "", "local"):
        return LocalNodeTestbed()
    return SshTestbed(Path(value))


def wait_for_ssh(nodes: list[Node], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(nodes)
    while pending:
        still = []
        for n in pending:
            try:
                n.run("true", timeout=5)
            except NodeError:
                if time.monotonic() > deadline:
                    raise
                still.append(n)
        pending = still
        if pending:
            time.sleep(0.3)


__all__ = ["LocalNodeTestbed", "SshTestbed", "Testbed", "TestbedError", "testbed_from_option"]
