"""The local testbed: n CPU-limited containers pinned to one core of this machine, each in its own
network namespace on a bridge, and the traffic peer on the other core.

    peer (nfvlab-peer, CPU 0) --veth-- [nfvlab-br0] --veth-- nfvlab-c0 (victim), nfvlab-c1, ...  (CPU 1)

Receive softirq work for a container's packets is steered to the container's core with RPS on its
veth (the testbed's stand-in for the paper's per-core NIC queues); bridge switching of the peer's
packets stays on the peer's core. The paper's per-core HTB limiter sits on the egress of the peer's
bridge port, with one class per container at 1/n of the core rate.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml
from pydantic import BaseModel, ConfigDict, Field

from nfvlab.testbeds import cgroups, cpuidle, network
from nfvlab.testbeds.model import Container, Peer, Topology

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO / "testbed" / "local.yaml"
RUN = "local"


class LocalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "local"
    victim_cpu: int = Field(1, ge=0)
    peer_cpu: int = Field(0, ge=0)
    subnet: str = "198.18.0.0/24"
    peer_host: int = 1
    first_container_host: int = 10
    bridge: str = "nfvlab-br0"
    cfs_period_us: int = Field(100_000, ge=1000, le=1_000_000)
    # Shared machines: before each measurement wait (up to quiet_wait_s) until interrupt work of
    # others (irq + softirq, which no CPU weight keeps away) takes less than quiet_irq_pct of the
    # containers' core; 0 s disables the wait. Others' processes are held off by the cgroup weights.
    quiet_irq_pct: float = Field(3.0, ge=0, le=100)
    quiet_wait_s: float = Field(60.0, ge=0)
    # Idle CPUs poll instead of halting while the testbed is up (see nfvlab.testbeds.cpuidle).
    idle_poll: bool = True

    def address(self, host: int) -> str:
        net = ipaddress.ip_network(self.subnet)
        if not ipaddress.ip_network("198.18.0.0/15").supernet_of(net):
            raise ValueError(f"testbed subnet {self.subnet} is outside the benchmarking range 198.18.0.0/15")
        return str(net.network_address + host)

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen


def load_config(path: Path = DEFAULT_CONFIG) -> LocalConfig:
    return LocalConfig.model_validate(yaml.safe_load(path.read_text()) or {})


OWNED_NETNS = re.compile(r"^nfvlab-(c\d+|peer)$")
OWNED_LINK = re.compile(r"^nfvlab-(c\d+|peer)-h$")


def owned_netns() -> list[str]:
    """The local testbed's namespaces (and no one else's, e.g. a test's nfvlab-t* fixtures)."""
    return [n for n in network.netns.listnetns() if OWNED_NETNS.match(n)]


def owned_links(config: LocalConfig) -> list[str]:
    return [n for n in network.list_links("nfvlab-") if OWNED_LINK.match(n) or n == config.bridge]


@dataclass(frozen=True)
class CoreLoad:
    busy_pct: float  # all non-idle time
    irq_pct: float  # hard + soft interrupt time


def core_load(cpu: int, sample_s: float) -> CoreLoad:
    """How busy a core is over sample_s, from /proc/stat."""

    def ticks() -> tuple[int, int, int]:
        for line in Path("/proc/stat").read_text().splitlines():
            fields = line.split()
            if fields[0] == f"cpu{cpu}":
                user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
                total = user + nice + system + idle + iowait + irq + softirq + steal
                return total - idle - iowait, irq + softirq, total
        raise RuntimeError(f"no cpu{cpu} line in /proc/stat")

    busy0, irq0, total0 = ticks()
    time.sleep(sample_s)
    busy1, irq1, total1 = ticks()
    span = max(1, total1 - total0)
    return CoreLoad(100.0 * (busy1 - busy0) / span, 100.0 * (irq1 - irq0) / span)


class TestbedBusy(RuntimeError):
    __test__ = False  # not a pytest test class, despite the name


# One local testbed per machine, whatever journal a process uses: a fixed lock file whose flock is held
# for the testbed's lifetime (the kernel drops it when the holder dies, even by SIGKILL).
LOCK_PATH = Path("/run/nfvlab-local-testbed.lock")


def hold_testbed_lock() -> IO | None:
    """Take the testbed lock (non-blocking): the open file that holds it, or None if another has it."""
    f = open(LOCK_PATH, "a+")  # noqa: SIM115 - held until released by the caller
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


def testbed_holder() -> str:
    try:
        return LOCK_PATH.read_text().strip() or "unknown pid"
    except OSError:
        return "unknown pid"


class LocalTestbed:
    """Build with `up(roles, ...)`, always `down()` (also a context manager)."""

    def __init__(self, config: LocalConfig | None = None):
        self.config = config or load_config()
        self.topology: Topology | None = None
        self._lock_file = None
        self._idle = cpuidle.PollIdle()

    def __enter__(self) -> LocalTestbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _lock(self) -> None:
        self._lock_file = hold_testbed_lock()
        if self._lock_file is None:
            raise TestbedBusy(f"the local testbed is in use by another nfvlab run ({testbed_holder()})")

    def up(self, roles: list[str], core_rate_mbps: float = math.inf, idle_poll: bool | None = None) -> Topology:
        """Create len(roles) containers at quota = period/n on the victim core; roles[0] is the victim.
        ``idle_poll`` overrides the config's choice of polling idle CPUs (nfvlab.testbeds.cpuidle)."""
        cfg = self.config
        self._lock()
        n = len(roles)
        period = cfg.cfs_period_us
        quota = period // n
        try:
            if cfg.idle_poll if idle_poll is None else idle_poll:
                self._idle.acquire()
            network.create_bridge(cfg.bridge)
            peer = Peer("nfvlab-peer", "nfvlab-peer-h", "eth0", cfg.address(cfg.peer_host), cfg.peer_cpu,
                        cgroups.create(RUN, "nfvlab-peer", cfg.peer_cpu, None, period))
            network.create_netns(peer.netns)
            network.plug(peer.netns, peer.host_ifname, peer.ns_ifname, cfg.bridge, peer.ip, cfg.prefixlen)
            network.set_rps(peer.netns, peer.ns_ifname, [peer.cpu])
            containers = []
            for i, role in enumerate(roles):
                name = f"nfvlab-c{i}"
                c = Container(
                    name=name, index=i, role=role, netns=name, host_ifname=f"{name}-h", ns_ifname="eth0",
                    ip=cfg.address(cfg.first_container_host + i), cpu=cfg.victim_cpu,
                    period_us=period, quota_us=quota,
                    cgroup=cgroups.create(RUN, name, cfg.victim_cpu, quota, period),
                )
                network.create_netns(c.netns)
                network.plug(c.netns, c.host_ifname, c.ns_ifname, cfg.bridge, c.ip, cfg.prefixlen)
                network.set_rps(c.netns, c.ns_ifname, [c.cpu])
                containers.append(c)
            if math.isfinite(core_rate_mbps):
                network.add_htb(peer.host_ifname, core_rate_mbps,
                                {c.ip: core_rate_mbps / n for c in containers})
            self.topology = Topology(containers, peer, cfg.bridge, cfg.victim_cpu)
            return self.topology
        except BaseException:
            self.down()
            raise

    def wait_quiet(self, sample_s: float = 0.5) -> CoreLoad:
        """Wait until others' interrupt work on the victim core is low (see LocalConfig); returns the
        load last sampled, for the results."""
        cfg = self.config
        deadline = time.monotonic() + cfg.quiet_wait_s
        told = False
        while True:
            load = core_load(cfg.victim_cpu, sample_s)
            if load.irq_pct <= cfg.quiet_irq_pct or time.monotonic() >= deadline:
                return load
            if not told:
                print(f"  waiting up to {cfg.quiet_wait_s:.0f} s for CPU {cfg.victim_cpu}: others' interrupt "
                      f"work takes {load.irq_pct:.0f} % of it (testbed/local.yaml: quiet_irq_pct)", file=sys.stderr)
                told = True
            time.sleep(1.0)

    def down(self) -> None:
        """Remove what up() created: links (and with them qdiscs), namespaces, cgroups. Only the
        holder of the testbed lock tears down: a refused up() must not touch another run's testbed."""
        if self._lock_file is None:
            return
        for name in owned_links(self.config):
            with contextlib.suppress(Exception):
                network.delete_link(name)
        for ns in owned_netns():
            with contextlib.suppress(Exception):
                network.delete_netns(ns)
        for root in cgroups.harness_roots():
            cgroups.remove_tree(root / RUN)
            with contextlib.suppress(OSError):
                root.rmdir()  # the shared nfvlab/ level, unless another user still has cgroups in it
        self.topology = None
        self._idle.release()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
