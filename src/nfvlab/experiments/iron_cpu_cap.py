"""Iron's CPU cap accuracy (dissertation §2.3.2, Fig 2.14): three containers share one core at 30 %
each, and the total CPU they use (with their network processing) over a window is compared with the
90 % they were allocated, vanilla Linux vs Iron.

Cases (``topology.case``):

* ``senders`` (Fig 2.14a): one sysbench container and two UDP senders flooding the peer;
* ``receivers`` (Fig 2.14b): sysbench containers and ``network_containers`` UDP receivers (one by
  default) flooded by the peer.

What one repetition measures, over ``workload.window_s`` after ``warmup_s`` (see :class:`CoreMeter`):

* ``cpu_used_pct``: time the core was busy for the harness = core busy (``/proc/stat``, 100 − idle −
  iowait) minus the run time of *foreign* tasks on the core (root ``cpuacct.usage_percpu`` minus the
  containers' and ``ksoftirqd``'s). It covers the containers' own time, their network processing in
  any context (their own, another container's, ``ksoftirqd``, the idle task). The paper's machine ran
  nothing else; this machine is shared, so foreign tasks are taken out and reported as
  ``foreign_pct``.
* ``idle_pct``: the core's idle share straight from ``/proc/stat`` (foreign tasks lower it), and
  ``unused_pct`` = 100 − ``cpu_used_pct``: what the containers left (idle + foreign).
* the parts: ``containers_cpu_pct`` (cgroup usage), ``ksoftirqd_cpu_pct``, ``softirq_cpu_pct``.

This module also holds the helpers the other Iron microbenchmark kinds share (core meter, quota
writes, testbed with retry, an optional IronRuntime).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nfvlab.experiments import floods
from nfvlab.experiments.registry import ExperimentKind
from nfvlab.failures import check_flood
from nfvlab.testbeds import cgroups
from nfvlab.testbeds import processes as procs
from nfvlab.testbeds.local import LocalTestbed, TestbedBusy
from nfvlab.testbeds.model import CgroupPaths, Container, Topology
from nfvlab.workloads import hostcounters, sysbench, traffic

PORT = 5001
# TestbedBusy (another developer's run holds the local testbed): wait this long before giving up
TESTBED_WAIT_S = float(os.environ.get("NFVLAB_TESTBED_WAIT_S", "600"))
CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")


# ------------------------------------------------------------------------------------------ shared helpers
@contextlib.contextmanager
def local_testbed(roles: list[str], core_rate_mbps: float = math.inf,
                  wait_s: float | None = None, idle_poll: bool | None = None) -> Iterator[Topology]:
    """LocalTestbed.up(roles), retrying while another run holds the testbed; always torn down."""
    deadline = time.monotonic() + (TESTBED_WAIT_S if wait_s is None else wait_s)
    while True:
        tb = LocalTestbed()
        try:
            topo = tb.up(roles, core_rate_mbps, idle_poll=idle_poll)
        except TestbedBusy:
            # never tb.down() here: the namespaces and links it would remove are the lock holder's
            if time.monotonic() > deadline:
                raise
            time.sleep(2.0)
            continue
        try:
            yield topo
        finally:
            tb.down()
        return


def set_quota_pct(topo: Topology, pct: float | None, which: list[Container] | None = None) -> Topology:
    """Write every (or `which`) container's CFS quota as a share of its period (None: unlimited).

    Returns the topology with the containers' ``quota_us`` updated (IronRuntime reads the quota
    from the cgroup files; the model is kept in step for everyone else)."""
    which = topo.containers if which is None else which
    names = {c.name for c in which}
    out = []
    for c in topo.containers:
        if c.name in names:
            quota = -1 if pct is None else max(1000, int(round(c.period_us * pct / 100)))
            write_quota(c.cgroup, quota, c.period_us)
            c = replace(c, quota_us=quota)
        out.append(c)
    topo.containers[:] = out
    return topo


def write_quota(cg: CgroupPaths, quota_us: int, period_us: int) -> None:
    if quota_us < 0 and cg.version == 2:
        (cg.cpu / "cpu.max").write_text(f"max {period_us}")
    else:
        cgroups.set_quota(cg, quota_us, period_us)


@contextlib.contextmanager
def iron_runtime(topo: Topology, on: bool, **kw: Any) -> Iterator[Any]:
    """IronRuntime(topo, **kw) when `on`, else None; unloads everything on exit and on errors."""
    if not on:
        yield None
        return
    from nfvlab.iron import IronRuntime  # the eBPF machinery loads only when asked for

    with IronRuntime(topo, **kw) as rt:
        yield rt


def _ksoftirqd_pid(cpu: int) -> int:
    return hostcounters.HostCounters().find_ksoftirqd(cpu)


def _schedstat_ns(pid: int) -> int:
    """Run time of a task in ns (first field of /proc/<pid>/schedstat)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def _cgroup_usage_ns(cg: CgroupPaths, cpu: int) -> int:
    if cg.version == 1:
        per_cpu = (cg.cpuacct / "cpuacct.usage_percpu").read_text().split()
        if cpu < len(per_cpu):
            return int(per_cpu[cpu])
        return int((cg.cpuacct / "cpuacct.usage").read_text())
    return int(hostcounters.cgroup_cpu_usage_s(cg.cpu) * 1e9)


def _root_usage_ns(cpu: int) -> int | None:
    """All tasks' run time on `cpu` (cgroup v1 root cpuacct); None where there is no such counter."""
    try:
        return int((CPUACCT_ROOT / "cpuacct.usage_percpu").read_text().split()[cpu])
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class CoreSnapshot:
    t: float
    stat: dict[str, int]
    net_rx: int
    net_tx: int
    ksoftirqd_ns: int
    root_ns: int | None
    containers_ns: dict[str, int]


class CoreMeter:
    """CPU accounting of one core over a window: /proc/stat, cpuacct (root and containers), ksoftirqd."""

    def __init__(self, cpu: int, containers: list[Container]):
        self.cpu = cpu
        self.containers = list(containers)
        self.hc = hostcounters.HostCounters()
        self.ksoftirqd = _ksoftirqd_pid(cpu)

    def snapshot(self) -> CoreSnapshot:
        soft = self.hc.softirqs()
        return CoreSnapshot(
            t=time.monotonic(),
            stat=self.hc.stat_cpu_ticks(self.cpu),
            net_rx=soft["NET_RX"][self.cpu],
            net_tx=soft["NET_TX"][self.cpu],
            ksoftirqd_ns=_schedstat_ns(self.ksoftirqd),
            root_ns=_root_usage_ns(self.cpu),
            containers_ns={c.name: _cgroup_usage_ns(c.cgroup, self.cpu) for c in self.containers},
        )

    def delta(self, a: CoreSnapshot, b: CoreSnapshot) -> dict[str, Any]:
        """Shares of the window in percent of the core, plus per-container usage (``cpu_pct``)."""
        wall = b.t - a.t
        hz = float(self.hc.user_hz)

        def ticks_pct(*fields: str) -> float:
            return 100 * sum(b.stat.get(f, 0) - a.stat.get(f, 0) for f in fields) / hz / wall

        idle = min(100.0, ticks_pct("idle", "iowait"))
        per_ct = {n: 100 * (b.containers_ns[n] - a.containers_ns[n]) / 1e9 / wall for n in a.containers_ns}
        containers = sum(per_ct.values())
        ksoftirqd = 100 * (b.ksoftirqd_ns - a.ksoftirqd_ns) / 1e9 / wall
        if a.root_ns is not None and b.root_ns is not None:
            root = 100 * (b.root_ns - a.root_ns) / 1e9 / wall
            foreign = max(0.0, root - containers - ksoftirqd)
        else:  # cgroup v2: no per-CPU total, foreign tasks cannot be separated
            foreign = math.nan
        busy = 100.0 - idle
        used = busy - (0.0 if math.isnan(foreign) else foreign)
        return {
            "wall_s": wall,
            "cpu_used_pct": used,
            "idle_pct": idle,
            "unused_pct": 100.0 - used,
            "core_busy_pct": busy,
            "foreign_pct": foreign,
            "containers_cpu_pct": containers,
            "ksoftirqd_cpu_pct": ksoftirqd,
            "softirq_cpu_pct": ticks_pct("softirq"),
            "net_rx_softirqs": b.net_rx - a.net_rx,
            "net_tx_softirqs": b.net_tx - a.net_tx,
            "cpu_pct": per_ct,
        }


def iron_totals(stats: dict[str, float] | None, prefix: str = "") -> dict[str, float]:
    if not stats:
        return {f"{prefix}iron_charged_ms": math.nan, f"{prefix}iron_gained_ms": math.nan,
                f"{prefix}iron_drops": math.nan}
    return {f"{prefix}iron_charged_ms": stats.get("charged_ns_total", math.nan) / 1e6,
            f"{prefix}iron_gained_ms": stats.get("gained_ns_total", math.nan) / 1e6,
            f"{prefix}iron_drops": stats.get("drops_total", math.nan)}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IronParams(Strict):
    mode: Literal["off", "ebpf"] = "off"
    drop: Literal["xdp", "tc", "none"] = "xdp"
    pre_throttle_pct: float = Field(0.0, ge=0, le=100)
    attribution: Literal["iron", "naive"] = "iron"


# ------------------------------------------------------------------------------------------ the kind
class TopologyParams(Strict):
    containers_per_core: int = Field(3, ge=2, le=16)
    quota_pct: float = Field(30.0, gt=0, le=100, description="each container's share of the core")
    case: Literal["senders", "receivers"]
    network_containers: int | None = Field(
        None, ge=1, description="UDP senders/receivers among the containers (default: senders n-1, receivers 1)"
    )

    @model_validator(mode="after")
    def _fits(self) -> TopologyParams:
        n = self.network_count
        if n > self.containers_per_core - 1:
            raise ValueError(f"network_containers: {n} leaves no sysbench container among "
                             f"{self.containers_per_core}")
        if self.quota_pct * self.containers_per_core > 100:
            raise ValueError("quota_pct x containers_per_core exceeds the core")
        return self

    @property
    def network_count(self) -> int:
        if self.network_containers is not None:
            return self.network_containers
        return self.containers_per_core - 1 if self.case == "senders" else 1


class WorkloadParams(Strict):
    window_s: float = Field(ge=0.5, le=600, description="measurement window (paper: 30 s)")
    warmup_s: float = Field(1.0, ge=0)
    payload_bytes: int = Field(1400, ge=64, le=65000)
    flows: int = Field(1, ge=1, description="senders: flows per sender; receivers: flows from the peer")
    send_rate_mbps: float = Field(math.inf, gt=0, description="senders: each; receivers: the peer's total")
    sysbench_prime: int = Field(10000, ge=100)


class Params(Strict):
    topology: TopologyParams
    workload: WorkloadParams
    iron: IronParams = IronParams()


METRICS = (
    "cpu_used_pct",
    "idle_pct",
    "unused_pct",
    "allocated_pct",
    "cap_error_pp",
    "iron_counted_pct",
    "core_busy_pct",
    "foreign_pct",
    "containers_cpu_pct",
    "sysbench_cpu_pct",
    "network_cpu_pct",
    "ksoftirqd_cpu_pct",
    "softirq_cpu_pct",
    "net_rx_softirqs",
    "net_tx_softirqs",
    "offered_mbps",
    "achieved_mbps",
    "iron_charged_ms",
    "iron_gained_ms",
    "iron_drops",
)


def roles(p: Params) -> list[str]:
    t = p.topology
    net = t.network_count
    kind = "udp_sender" if t.case == "senders" else "udp_receiver"
    return ["sysbench", *[kind] * net, *["sysbench"] * (t.containers_per_core - 1 - net)]


def topology_key(p: Params) -> tuple:
    return (tuple(roles(p)), p.topology.quota_pct)


class Driver:
    def __init__(self, build_dir: Path):
        self.flood = traffic.build_nfvflood(build_dir)
        self.sysbench = sysbench.find_sysbench()

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[Topology]:
        with local_testbed(roles(p)) as topo:
            yield set_quota_pct(topo, p.topology.quota_pct)

    def measure(self, topo: Topology, p: Params, raw: Path) -> dict[str, Any]:
        w = p.workload
        set_quota_pct(topo, p.topology.quota_pct)  # as allocated, whatever ran before
        meter = CoreMeter(topo.victim_cpu, topo.containers)
        started: list[procs.Proc] = []
        flood = floods.Flood()
        iron_stats = None
        with iron_runtime(topo, p.iron.mode == "ebpf", drop=p.iron.drop, pre_throttle_pct=p.iron.pre_throttle_pct,
                          attribution=p.iron.attribution) as iron:
            try:
                flood = self._start(topo, p, raw, started)
                time.sleep(w.warmup_s)
                a = meter.snapshot()
                s0 = iron.stats() if iron is not None else None
                time.sleep(w.window_s)
                b = meter.snapshot()
                s1 = iron.stats() if iron is not None else None
            finally:
                procs.stop_all(started)
            if iron is not None:
                iron_stats = iron.stats()
        d = meter.delta(a, b)
        per_ct = d.pop("cpu_pct")
        sysb = sum(per_ct[c.name] for c in topo.containers if c.role == "sysbench")
        net = sum(per_ct[c.name] for c in topo.containers if c.role != "sysbench")
        totals = flood.totals()
        offered, achieved = totals["offered_mbps"], totals["achieved_mbps"]
        n_net = sum(1 for c in topo.containers if c.role != "sysbench")
        asked = p.workload.send_rate_mbps * (n_net if p.topology.case == "senders" else 1)  # senders: each
        check_flood(offered, asked, f"the {p.topology.case}' flood")  # no result without it
        allocated = p.topology.quota_pct * p.topology.containers_per_core
        counted = math.nan
        if s0 is not None and s1 is not None:  # what Iron counts: CFS run time + charged - credited
            def total(key: str) -> float:
                return sum(s1[f"{c.name}.{key}"] - s0[f"{c.name}.{key}"] for c in topo.containers)

            net_charge = total("charged_ns") - total("gained_ns")
            counted = d["containers_cpu_pct"] + 100 * net_charge / 1e9 / d["wall_s"]
        (raw / "cpu.json").write_text(json.dumps({**d, "per_container_pct": per_ct}, indent=1))
        return {
            **{k: v for k, v in d.items() if k in METRICS},
            "allocated_pct": allocated,
            "cap_error_pp": d["cpu_used_pct"] - allocated,
            "iron_counted_pct": counted,
            "sysbench_cpu_pct": sysb,
            "network_cpu_pct": net,
            "offered_mbps": offered,
            "achieved_mbps": achieved,
            **iron_totals(iron_stats),
        }

    def _start(self, topo: Topology, p: Params, raw: Path, started: list[procs.Proc]) -> floods.Flood:
        w = p.workload
        forever = sysbench.sysbench_forever_argv(w.window_s + w.warmup_s + 120, prime=w.sysbench_prime,
                                                 binary=self.sysbench)
        for c in topo.containers:
            if c.role == "sysbench":
                started.append(procs.start_in_container(c, f"{c.name}-sysbench", forever, raw))
        net = [c for c in topo.containers if c.role != "sysbench"]
        if p.topology.case == "senders":
            return floods.containers_send(self.flood, topo, net, "udp", w.flows, w.payload_bytes, w.send_rate_mbps,
                                          raw, started)
        return floods.peer_sends(self.flood, topo, net, "udp", w.flows, w.payload_bytes, w.send_rate_mbps, raw,
                                 started)


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="iron-cpu-cap",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
    uses_calibration=lambda p: p.iron.mode == "ebpf",  # Iron's fitted calibration is an input of these rows
)
