"""The local testbed: n CPU-limited containers pinned to one core of this machine, each in its own
network namespace on a bridge, and the traffic peer on the other core.

    peer (nfvlab-peer, CPU 0) --veth-- [nfvlab-br0] --veth-- nfvlab-c0 (victim), nfvlab-c1, ...  (CPU 1)

Receive softirq work for a container's packets is steered to the container's core with RPS on its
veth (the testbed's stand-in for the paper's per-core NIC queues); bridge switching of the peer's
packets stays on the peer's core. The paper's per-core HTB limiter sits on the egress of the peer's
bridge port, with one class per container at 1/n of the core rate.
"""

from __future__ import annotations

import fcntl
import ipaddress
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml
from pydantic import BaseModel, ConfigDict, Field

from nfvlab.testbeds import cgroups, cpuidle, network, processes
from nfvlab.testbeds.model import Container, Peer, Topology

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO / "testbed" / "local.yaml"
RUN = "local"
DEFAULT_PREFIX = "nfvlab"
IFNAMSIZ = 15  # the kernel's limit on interface names


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
    # Names: <prefix>-c<i> (containers), <prefix>-peer (or <prefix>-p where <prefix>-peer-h would not
    # fit an interface name), bridge `bridge` for the default prefix, else <prefix>-br0; cgroups under
    # nfvlab/local/ for the default prefix, else nfvlab/<prefix>/. Tests and fixtures pass their own
    # prefix (LocalTestbed(prefix=...)) so that they never touch the testbed's names; the machine-wide
    # lock is the same for every prefix (one measurement at a time on the shared cores).
    prefix: str = Field(DEFAULT_PREFIX, pattern=r"^nfvlab(-[a-z0-9]+)?$", max_length=10)

    @property
    def default_names(self) -> bool:
        return self.prefix == DEFAULT_PREFIX

    def container_name(self, i: int) -> str:
        return f"{self.prefix}-c{i}"

    @property
    def peer_name(self) -> str:
        long = f"{self.prefix}-peer"
        return long if len(f"{long}-h") <= IFNAMSIZ else f"{self.prefix}-p"

    @property
    def bridge_name(self) -> str:
        return self.bridge if self.default_names else f"{self.prefix}-br0"

    @property
    def cgroup_run(self) -> str:
        """The cgroup level under nfvlab/ that holds this testbed's containers."""
        return RUN if self.default_names else self.prefix

    def address(self, host: int) -> str:
        net = ipaddress.ip_network(self.subnet)
        if not ipaddress.ip_network("198.18.0.0/15").supernet_of(net):
            raise ValueError(f"testbed subnet {self.subnet} is outside the benchmarking range 198.18.0.0/15")
        return str(net.network_address + host)

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen


# Tests (and a second checkout) may give the testbed other names and addresses; the lock stays one per machine
# and testbed_hash (nfvlab.stamps) covers only the file, since names do not change a measurement.
ENV_PREFIX, ENV_SUBNET = "NFVLAB_TESTBED_PREFIX", "NFVLAB_TESTBED_SUBNET"


def load_config(path: Path = DEFAULT_CONFIG) -> LocalConfig:
    data = yaml.safe_load(path.read_text()) or {}
    for key, env in (("prefix", ENV_PREFIX), ("subnet", ENV_SUBNET)):
        if os.environ.get(env):
            data[key] = os.environ[env]
    return LocalConfig.model_validate(data)


def _owned(config: LocalConfig | None) -> re.Pattern:
    cfg = config or LocalConfig()
    return re.compile(rf"^{re.escape(cfg.prefix)}-(c\d+|{re.escape(cfg.peer_name.rsplit('-', 1)[1])})$")


def owned_netns(config: LocalConfig | None = None) -> list[str]:
    """The namespaces of the testbed with config's prefix (default: the local testbed's), and no one
    else's (another prefix's fixtures)."""
    pattern = _owned(config)
    return [n for n in network.netns.listnetns() if pattern.match(n)]


def owned_links(config: LocalConfig | None = None) -> list[str]:
    """The testbed's veth host ends and its bridge (for config's prefix; default the local testbed)."""
    cfg = config or LocalConfig()
    pattern = _owned(cfg)
    links = network.list_links(cfg.prefix + "-")
    if not cfg.bridge_name.startswith(cfg.prefix + "-"):
        links += network.list_links(cfg.bridge_name)
    return sorted({n for n in links if n == cfg.bridge_name or (n.endswith("-h") and pattern.match(n[:-2]))})


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


class TeardownError(RuntimeError):
    """Some teardown steps failed (the lock and the PM QoS request were released all the same)."""


class LocalTestbed:
    """Build with `up(roles, ...)`, always `down()` (also a context manager).

    ``prefix`` (and ``subnet``) override the config, so that a test or a fixture gets its own names
    and addresses; whatever the prefix, ``up`` takes the machine-wide testbed lock (waiting up to
    ``wait_s`` for it, else TestbedBusy)."""

    def __init__(self, config: LocalConfig | None = None, *, prefix: str | None = None, subnet: str | None = None,
                 wait_s: float = 0.0):
        cfg = config or load_config()
        changes = {k: v for k, v in (("prefix", prefix), ("subnet", subnet)) if v is not None}
        self.config = LocalConfig.model_validate({**cfg.model_dump(), **changes}) if changes else cfg
        self.wait_s = wait_s
        self.topology: Topology | None = None
        self._lock_file: IO | None = None
        self._idle = cpuidle.PollIdle()
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> LocalTestbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _lock(self) -> None:
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            self._lock_file = hold_testbed_lock()
            if self._lock_file is not None:
                return
            if time.monotonic() >= deadline:
                raise TestbedBusy(f"the local testbed is in use by another nfvlab run ({testbed_holder()})")
            if not told:
                print(f"  waiting up to {self.wait_s:.0f} s for the local testbed ({testbed_holder()} holds it)",
                      file=sys.stderr, flush=True)
                told = True
            time.sleep(1.0)

    def up(self, roles: list[str], core_rate_mbps: float = math.inf, idle_poll: bool | None = None) -> Topology:
        """Create len(roles) containers at quota = period/n on the victim core; roles[0] is the victim.
        ``idle_poll`` overrides the config's choice of polling idle CPUs (nfvlab.testbeds.cpuidle)."""
        cfg = self.config
        n = len(roles)
        longest = f"{cfg.container_name(n - 1)}-h"
        if len(longest) > IFNAMSIZ:
            raise ValueError(f"interface name {longest!r} would exceed {IFNAMSIZ} characters: shorten the prefix")
        self._lock()
        period = cfg.cfs_period_us
        quota = period // n
        run = cfg.cgroup_run
        try:
            leftovers: list[str] = []
            self._remove_all(leftovers)  # we hold the lock: anything of this prefix is a dead holder's
            if leftovers:
                raise TeardownError("cannot remove what a previous run left: " + "; ".join(leftovers))
            if cfg.idle_poll if idle_poll is None else idle_poll:
                self._idle.acquire()
            network.create_bridge(cfg.bridge_name)
            pname = cfg.peer_name
            peer = Peer(pname, f"{pname}-h", "eth0", cfg.address(cfg.peer_host), cfg.peer_cpu,
                        cgroups.create(run, pname, cfg.peer_cpu, None, period))
            network.create_netns(peer.netns)
            network.plug(peer.netns, peer.host_ifname, peer.ns_ifname, cfg.bridge_name, peer.ip, cfg.prefixlen)
            network.set_rps(peer.netns, peer.ns_ifname, [peer.cpu])
            containers = []
            for i, role in enumerate(roles):
                name = cfg.container_name(i)
                c = Container(
                    name=name, index=i, role=role, netns=name, host_ifname=f"{name}-h", ns_ifname="eth0",
                    ip=cfg.address(cfg.first_container_host + i), cpu=cfg.victim_cpu,
                    period_us=period, quota_us=quota,
                    cgroup=cgroups.create(run, name, cfg.victim_cpu, quota, period),
                )
                network.create_netns(c.netns)
                network.plug(c.netns, c.host_ifname, c.ns_ifname, cfg.bridge_name, c.ip, cfg.prefixlen)
                network.set_rps(c.netns, c.ns_ifname, [c.cpu])
                containers.append(c)
            if math.isfinite(core_rate_mbps):
                network.add_htb(peer.host_ifname, core_rate_mbps,
                                {c.ip: core_rate_mbps / n for c in containers})
            self.topology = Topology(containers, peer, cfg.bridge_name, cfg.victim_cpu)
            return self.topology
        except BaseException as e:
            try:
                self.down()
            except TeardownError as td:  # the failure of up() is the news; the teardown's goes beside it
                e.add_note(str(td))
            raise

    # --- processes for tools and tests that want Popen's pipes (drivers use nfvlab.testbeds.processes) ---
    def run_in(self, c: Container, argv: list[str], **popen_kw: object) -> subprocess.Popen:
        """Start argv inside container c (its cgroups, read back, and its netns); stopped by down()."""
        p = processes.popen_in(c.cgroup, c.netns, argv, name=f"{c.name}-tool", **popen_kw)
        self._procs.append(p)
        return p

    def run_peer(self, argv: list[str], **popen_kw: object) -> subprocess.Popen:
        assert self.topology is not None and self.topology.peer.cgroup is not None
        pe = self.topology.peer
        p = processes.popen_in(pe.cgroup, pe.netns, argv, name=f"{pe.netns}-tool", **popen_kw)
        self._procs.append(p)
        return p

    @staticmethod
    def stop(proc: subprocess.Popen, timeout_s: float = 3.0) -> None:
        processes.stop_popen(proc, timeout_s)

    @staticmethod
    def cpu_usage_s(c: Container) -> float:
        """CPU time a container's cgroup has used so far (as the remote testbeds answer it)."""
        return cgroups.cpu_usage_s(c.cgroup)

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
        """Remove what up() created, each step on its own so one failure does not stop the rest: kill
        every task in the testbed's cgroups (cgroups.kill_tasks: cgroup.kill on v2, freeze-kill-thaw on
        v1), then links (and with them qdiscs), namespaces, cgroups; finally, whatever failed, release
        the PM QoS request and the testbed lock. Raises TeardownError naming the failed steps. Only the
        holder of the testbed lock tears down: a refused up() must not touch another run's testbed."""
        if self._lock_file is None:
            return
        failed: list[str] = []
        try:
            self._remove_all(failed)
        except Exception as e:  # noqa: BLE001 - e.g. listing links failed
            failed.append(f"teardown: {e}")
        finally:
            self.topology = None
            try:
                self._idle.release()
            finally:
                if self._lock_file is not None:
                    self._lock_file.close()
                    self._lock_file = None
        if failed:
            raise TeardownError("local testbed teardown: " + "; ".join(failed))

    def _remove_all(self, failed: list[str]) -> None:
        """Every object of this prefix's testbed, each step on its own (failures appended). Also run by
        up() before it builds: what a killed holder left behind (tasks included) goes first."""
        cfg = self.config

        def step(what: str, fn: Callable[..., object], *args: object) -> None:
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - every step runs; failures are reported together
                failed.append(f"{what}: {e}")

        while self._procs:
            step("stop a tool process", processes.stop_popen, self._procs.pop())
        tops = [root / cfg.cgroup_run for root in cgroups.harness_roots()]
        for top in tops:  # no task may outlive the testbed (e.g. a 1200 s sysbench of a crashed driver)
            step(f"kill tasks in {top}", cgroups.kill_tasks, top)
        for name in owned_links(cfg):
            step(f"delete link {name}", network.delete_link, name)
        for ns in owned_netns(cfg):
            step(f"delete netns {ns}", network.delete_netns, ns)
        for top in tops:
            step(f"remove cgroup {top}", cgroups.remove_run, top)
