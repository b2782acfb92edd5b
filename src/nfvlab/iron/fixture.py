"""A small local topology with the local testbed's shape, for Iron's own tests and prototype bench.

Containers ``<prefix>-<tag>N`` (netns + veth ``<prefix>-<tag>N-h``/``eth0`` on bridge
``<prefix>-<tag>br``, IP ``<net>.(10+N)``, RPS of eth0 steered to the container CPU, cgroups under
``/sys/fs/cgroup/{cpu,cpuset}/<prefix>-<tag>/<name>``) and a peer namespace ``<prefix>-<tag>p`` on
another CPU. The prefix ``nfvlab-ti`` and network 198.18.100.0/24 keep it apart from the real testbed
(``nfvlab-c*``, 198.18.0.0/24); the tag keeps the tests (``t``) apart from the bench (``c``). Each
fixture has its own bridge, so two fixtures may reuse addresses. cgroup v1 only (this machine);
:meth:`IronFixture.teardown` removes everything it made and is idempotent.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from pathlib import Path

from nfvlab.testbeds.cpuidle import PollIdle
from nfvlab.testbeds.model import CgroupPaths, Container, Peer, Topology

CG = Path("/sys/fs/cgroup")


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True)


class IronFixture:
    def __init__(self, n: int = 2, *, prefix: str = "nfvlab-ti", tag: str = "c", net: str = "198.18.100",
                 cpu: int = 1, peer_cpu: int = 0, quota_pct: float = 50.0, period_us: int = 100_000,
                 rps: bool = True) -> None:
        if len(f"{prefix}-{tag}{n - 1}-h") > 15:
            raise ValueError("interface names would exceed 15 characters")
        self.n, self.net, self.cpu, self.peer_cpu = n, net, cpu, peer_cpu
        self.prefix = f"{prefix}-{tag}"
        self.quota_us = int(period_us * quota_pct / 100)
        self.period_us = period_us
        self.rps = rps
        self.bridge = f"{self.prefix}br"
        self.procs: list[subprocess.Popen] = []
        self.topology: Topology | None = None
        self.idle = PollIdle()  # as on the testbed: idle CPUs poll (nfvlab.testbeds.cpuidle)

    # ---------------------------------------------------------------------------------------------
    def setup(self) -> Topology:
        self.teardown()
        self.idle.acquire()
        p = self.prefix
        sh(f"ip link add {self.bridge} type bridge && ip link set {self.bridge} up")
        containers = []
        for i in range(self.n):
            name = f"{p}{i}"
            host_if = f"{name}-h"
            ip = f"{self.net}.{10 + i}"
            self._ns_veth(name, host_if, ip)
            if self.rps:
                mask = format(1 << self.cpu, "x")
                sh(f"ip netns exec {name} sh -c 'echo {mask} > /sys/class/net/eth0/queues/rx-0/rps_cpus'")
            cgp = self._cgroup(name)
            containers.append(Container(
                name=name, index=i, role="victim" if i == 0 else "interferer", netns=name,
                host_ifname=host_if, ns_ifname="eth0", ip=ip, cpu=self.cpu, period_us=self.period_us,
                quota_us=self.quota_us, cgroup=cgp))
        peer_ns = f"{p}p"
        self._ns_veth(peer_ns, f"{peer_ns}-h", f"{self.net}.1")
        peer = Peer(netns=peer_ns, host_ifname=f"{peer_ns}-h", ns_ifname="eth0", ip=f"{self.net}.1",
                    cpu=self.peer_cpu)
        self.topology = Topology(containers=containers, peer=peer, bridge=self.bridge, victim_cpu=self.cpu)
        return self.topology

    def _ns_veth(self, ns: str, host_if: str, ip: str) -> None:
        sh(f"ip netns add {ns}")
        sh(f"ip link add {host_if} type veth peer name eth0 netns {ns}")
        sh(f"ip link set {host_if} master {self.bridge} up")
        sh(f"ip -n {ns} addr add {ip}/24 dev eth0 && ip -n {ns} link set eth0 up && ip -n {ns} link set lo up")

    def _cgroup(self, name: str) -> CgroupPaths:
        cpu = CG / "cpu" / self.prefix / name
        cpuset_parent = CG / "cpuset" / self.prefix
        cpuset = cpuset_parent / name
        cpu.mkdir(parents=True, exist_ok=True)
        (cpu / "cpu.cfs_period_us").write_text(str(self.period_us))
        (cpu / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        for d in (cpuset_parent, cpuset):
            d.mkdir(exist_ok=True)
            (d / "cpuset.cpus").write_text(str(self.cpu))
            (d / "cpuset.mems").write_text("0")
        cpuacct = CG / "cpuacct" / self.prefix / name
        cpuacct.mkdir(parents=True, exist_ok=True)
        return CgroupPaths(version=1, cpu=cpu, cpuset=cpuset, cpuacct=cpuacct)

    # ---------------------------------------------------------------------------------------------
    def run_in(self, c: Container, argv: list[str], **kw) -> subprocess.Popen:
        """Start argv inside container c: its cgroups, its netns, pinned to its CPU."""
        cmd = (f"echo $$ > {c.cgroup.cpu}/tasks && echo $$ > {c.cgroup.cpuset}/tasks && "
               f"echo $$ > {c.cgroup.cpuacct}/tasks && "
               f"exec ip netns exec {c.netns} taskset -c {c.cpu} {shlex.join(argv)}")
        proc = subprocess.Popen(["sh", "-c", cmd], **kw)
        self.procs.append(proc)
        return proc

    def run_peer(self, argv: list[str], **kw) -> subprocess.Popen:
        assert self.topology is not None
        pe = self.topology.peer
        proc = subprocess.Popen(["ip", "netns", "exec", pe.netns, "taskset", "-c", str(pe.cpu), *argv], **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 3.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)

    def teardown(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):  # best effort
                self.stop(proc)
        self.procs = []
        self.idle.release()
        p = self.prefix
        names = [f"{p}{i}" for i in range(max(self.n, 8))] + [f"{p}p"]
        for ns in names:
            if os.path.exists(f"/run/netns/{ns}"):
                sh(f"ip netns del {ns}", check=False)
            sh(f"ip link del {ns}-h 2>/dev/null", check=False)
        sh(f"ip link del {self.bridge} 2>/dev/null", check=False)
        for ctrl in ("cpu", "cpuset", "cpuacct"):
            root = CG / ctrl / p
            if not root.exists():
                continue
            for d in sorted(root.iterdir(), reverse=True):
                if d.is_dir():
                    self._rmcg(d)
            self._rmcg(root)
        self.topology = None

    @staticmethod
    def _rmcg(d: Path) -> None:
        for _ in range(50):
            try:
                d.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                # tasks still exiting: move leftovers to the parent's root and retry
                time.sleep(0.05)

    def __enter__(self) -> Topology:
        return self.setup()

    def __exit__(self, *exc: object) -> None:
        self.teardown()
