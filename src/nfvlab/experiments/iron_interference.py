"""The Iron interference experiments (dissertation §2.1.3, §2.3): one sysbench victim shares a core
with n-1 interferers; the victim's completion time with network interferers over its time with
sysbench interferers, measured back to back in the same repetition, is the penalty factor.

Senders (Fig 2.1-2.3, 2.9-2.10): interferers flood UDP/TCP to the peer, through the per-core HTB.
Receivers (Fig 2.4-2.5, 2.11-2.12, 2.16): i interferers receive from the peer, the rest run sysbench.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nfvlab.experiments import floods
from nfvlab.experiments.registry import ExperimentKind
from nfvlab.failures import PointFailed, check_flood
from nfvlab.testbeds import cgroups, network
from nfvlab.testbeds import processes as procs
from nfvlab.testbeds.model import Container, Topology
from nfvlab.testbeds.testbed import LocalNodeTestbed, Testbed, TestbedError
from nfvlab.workloads import coreshare, hostcounters, sysbench, traffic

VICTIM_TIMEOUT_S = 600.0
TESTBED_WAIT_S = float(os.environ.get("NFVLAB_TESTBED_WAIT_S", "600"))
# iron.hidden_cost=online: probe while a point has fewer after-the-fact checks than this; then use the
# median of its checks (docs/iron.md, "The hidden cost, online")
ONLINE_PROBES = 1
# victim_cpu_ms: events of the one run that measures this machine's sysbench rate (in CPU time, so the
# container's quota and other load change its wall time, not the rate)
RATE_PROBE_EVENTS = 400

Interferer = Literal["udp_sender", "tcp_sender", "udp_receiver", "tcp_receiver"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TopologyParams(Strict):
    containers_per_core: int = Field(ge=2, le=32, description="n: the victim plus n-1 interferers")
    interferer: Interferer
    receivers: int | None = Field(
        None, ge=1, description="receiver experiments: how many interferers receive (rest run sysbench)"
    )


class WorkloadParams(Strict):
    # The victim's job: a fixed number of sysbench events, or (machine-independent) a fixed CPU time that
    # the driver turns into events with this machine's own sysbench rate, measured on the victim's core at
    # the start of the run (docs/iron.md, "Victim job length"). Exactly one of the two.
    victim_events: int | None = Field(None, ge=50, description="sysbench cpu events the victim runs")
    victim_cpu_ms: float | None = Field(None, gt=0, description="CPU time of the victim's job, sized per machine")
    sysbench_prime: int = Field(10000, ge=100)
    payload_bytes: int = Field(1400, ge=64, le=65000)
    flows: int = Field(1, ge=1, description="senders: flows per core; receivers: flows from the peer")
    core_rate_mbps: float = Field(math.inf, gt=0, description="per-core HTB rate (senders); inf = none")
    send_rate_mbps: float = Field(math.inf, gt=0, description="peer's sending rate (receivers); inf = max")
    warmup_s: float = Field(0.5, ge=0)
    # A baseline is only a baseline if the victim got its allocation: beside n-1 CPU-bound neighbours it
    # gets exactly quota/period of the core, unless tasks outside the testbed took the core (a shared
    # machine). Such a baseline would make any network run look fast (penalty < 1; docs/iron.md,
    # "Over-credit"), so it is measured again, up to baseline_attempts times.
    baseline_min_share: float = Field(0.93, ge=0, le=1.5, description="victim CPU / its allocation, baseline run")
    baseline_attempts: int = Field(3, ge=1, le=10)
    # Which of a repetition's two victim runs comes first. On this host the second of two identical
    # runs tends to be a little faster (the A/A floor, docs/iron.md); "alternate" puts the network run
    # first in every other repetition of a point, so such an order effect cancels in the median
    # instead of biasing every penalty the same way. Recorded per row (network_first).
    run_order: Literal["alternate", "baseline_first"] = "alternate"

    @model_validator(mode="after")
    def _one_job_size(self) -> WorkloadParams:
        if (self.victim_events is None) == (self.victim_cpu_ms is None):
            raise ValueError("workload.victim_events / workload.victim_cpu_ms: set exactly one of the two")
        return self


class IronParams(Strict):
    mode: Literal["off", "ebpf"] = "off"
    drop: Literal["xdp", "tc", "none"] = "xdp"
    pre_throttle_pct: float = Field(0.0, ge=0, le=100)
    attribution: Literal["iron", "naive"] = "iron"
    # The per-IRQ cost no tracepoint sees (nfvlab.iron.hidden): "none" (0), "calibrated" (the machine's
    # fitted constant, nfvlab.iron.calibration) or "online" (derived in each repetition from the
    # victim's own lost time in a probe run at this point's interrupt density; no constant).
    hidden_cost: Literal["none", "calibrated", "online"] = "calibrated"
    probe_fraction: float = Field(0.5, gt=0, le=1, description="online: the probe's job, as a fraction of the victim's")


class Params(Strict):
    topology: TopologyParams
    workload: WorkloadParams
    iron: IronParams = IronParams()

    @model_validator(mode="after")
    def _receivers_fit(self) -> Params:
        t = self.topology
        if t.interferer.endswith("_receiver"):
            if t.receivers is None:
                raise ValueError("topology.receivers: required for receiver interferers")
            if t.receivers > t.containers_per_core - 1:
                raise ValueError(
                    f"topology.receivers: {t.receivers} receivers do not fit beside the victim in "
                    f"{t.containers_per_core} containers"
                )
        elif t.receivers is not None:
            raise ValueError("topology.receivers: only for receiver interferers")
        return self


METRICS = (
    "victim_time_base_s",
    "victim_time_net_s",
    "penalty_factor",
    "offered_mbps",
    "achieved_mbps",
    "sent_packets",
    "received_packets",
    "drops",
    "drop_pct",
    "ksoftirqd_cpu_pct",
    "softirq_cpu_pct",
    "net_rx_softirqs",
    "net_tx_softirqs",
    "qdisc_drops",
    "iron_charged_ms",
    "iron_gained_ms",
    "core_busy_before_pct",
    "core_irq_before_pct",
    "iron_irq_cost_ns",
    "iron_timer_cost_ns",
    "iron_hidden_check_ns",
    "iron_victim_over_credit_ms",
    "iron_probe_time_s",
    "victim_share_base",
    "victim_share_net",
    "foreign_base_pct",
    "foreign_net_pct",
    "baseline_runs",
    "network_first",
    "victim_events_run",
    "sysbench_events_per_cpu_s",
)


def roles(p: Params) -> list[str]:
    t = p.topology
    n_int = t.containers_per_core - 1
    if t.receivers is None:
        return ["victim"] + [t.interferer] * n_int
    return ["victim"] + [t.interferer] * t.receivers + ["sysbench"] * (n_int - t.receivers)


def topology_key(p: Params) -> tuple:
    return (tuple(roles(p)), p.workload.core_rate_mbps)


class Driver:
    """Runs points on a testbed (nfvlab.testbeds.testbed: the local one unless the runner passes
    another). One `setup` per topology; `measure` per repetition."""

    def __init__(self, build_dir: Path, testbed: Callable[[], Testbed] | None = None):
        self.flood = traffic.build_nfvflood(build_dir)
        self.sysbench = sysbench.find_sysbench()
        # shared machine: the local testbed waits for another run's to come free
        self.make_testbed = testbed or (lambda: LocalNodeTestbed(wait_s=TESTBED_WAIT_S))
        self.testbed: Testbed | None = None
        # Diagnostics (nfvlab.iron.ledger): called with ("start" | "end", network) around each victim run.
        self.observer: Callable[[str, bool], None] | None = None
        self.iron: Any = None  # the IronRuntime of the repetition in flight (None: vanilla)
        self.last_iron: Any = None  # ... and of the last finished one, with its victim's quota history
        self.last_history: list[tuple] = []
        self._hidden_obs: dict[str, dict[str, list[float]]] = {}  # online: hidden-cost measurements per point so far
        self._rate: dict[tuple, float] = {}  # sysbench events per CPU second, by (victim core, prime)
        self._measured: dict[str, int] = {}  # repetitions measured per point so far (run_order)

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[Topology]:
        with self.make_testbed() as tb:
            if tb.kind != "local" and p.iron.mode != "off":
                raise TestbedError(f"Iron's eBPF runtime runs on this machine only: iron.mode must be off on "
                                   f"the {tb.kind} testbed {tb.name} (docs/remote.md)")
            self.testbed = tb
            try:
                yield tb.up(roles(p), p.workload.core_rate_mbps)
            finally:
                self.testbed = None

    def measure(self, topo: Topology, p: Params, raw: Path) -> dict[str, Any]:
        # Unrelated work on the core (other users of a shared machine) would skew both runs differently.
        load = self.testbed.wait_quiet() if self.testbed is not None else None
        from nfvlab.iron import hidden  # pure arithmetic, but the package loads the eBPF machinery

        p = self.sized(topo, p, raw)
        probe_s = math.nan
        with self._iron(topo, p) as iron:
            # (network first never while the point still needs its probe: that needs this baseline)
            network_first = self._network_first(p, iron)
            if not network_first:
                base, base_split, share_base, attempt, s0, s1 = self._baseline_run(topo, p, raw, iron)
            if iron is not None and p.iron.hidden_cost == "online":
                base_cost = None if network_first else hidden.run_cost(s0, s1)
                probe_s = self._online_hidden_cost(topo, p, raw, iron, base_cost)
            net, net_split, share_net, s2, s3 = self._network_run(topo, p, raw, iron)
            if network_first:
                base, base_split, share_base, attempt, s0, s1 = self._baseline_run(topo, p, raw, iron)
            iron_stats = iron.stats() if iron is not None else {}
        row = {
            "victim_time_base_s": base["victim_time_s"],
            "victim_time_net_s": net["victim_time_s"],
            "penalty_factor": net["victim_time_s"] / base["victim_time_s"],
            **{k: v for k, v in net.items() if k != "victim_time_s"},
            "iron_charged_ms": iron_stats.get("charged_ns_total", math.nan) / 1e6,
            "iron_gained_ms": iron_stats.get("gained_ns_total", math.nan) / 1e6,
            "core_busy_before_pct": load.busy_pct if load else math.nan,
            "core_irq_before_pct": load.irq_pct if load else math.nan,
            "iron_irq_cost_ns": iron.irq_extra_ns if iron is not None else math.nan,
            "iron_timer_cost_ns": iron.timer_extra_ns if iron is not None else math.nan,
            "iron_probe_time_s": probe_s,
            "victim_share_base": share_base,
            "victim_share_net": share_net,
            "foreign_base_pct": base_split.pct(base_split.foreign_ns) if base_split else math.nan,
            "foreign_net_pct": net_split.pct(net_split.foreign_ns) if net_split else math.nan,
            "baseline_runs": attempt,
            "network_first": int(network_first),
            "victim_events_run": p.workload.victim_events,  # the job this row ran (victim_cpu_ms: sized here)
            "sysbench_events_per_cpu_s": self._rate.get((topo.victim_cpu, p.workload.sysbench_prime), math.nan),
        }
        if iron is not None:
            # after the fact, from this network run itself: the hidden cost it really had, and how much
            # more the victim was credited than it lost (the ledger's over-credit; docs/iron.md)
            b, n = hidden.run_cost(s0, s1), hidden.run_cost(s2, s3)
            row["iron_hidden_check_ns"] = hidden.hidden_per_irq(b, n)
            self._record_check(p, row["iron_hidden_check_ns"])
            row["iron_victim_over_credit_ms"] = ((s3.gained_ns - s2.gained_ns) - (n.cpu_ns - b.job_ns)) / 1e6
        else:
            row["iron_hidden_check_ns"] = row["iron_victim_over_credit_ms"] = math.nan
        return row

    def _network_first(self, p: Params, iron: Any) -> bool:
        """Whether this repetition runs the network run before the baseline: every other repetition
        of the point under run_order=alternate, except while the online hidden cost still needs its
        probe (the probe's arithmetic uses this repetition's baseline, so that one comes first)."""
        key = p.model_dump_json()
        k = self._measured.get(key, 0)
        self._measured[key] = k + 1
        if p.workload.run_order != "alternate" or k % 2 == 0:
            return False
        probing = (iron is not None and p.iron.hidden_cost == "online"
                   and len(self._hidden_obs.get(key, {}).get("check", [])) < ONLINE_PROBES)
        return not probing

    def _baseline_run(self, topo: Topology, p: Params, raw: Path, iron: Any) -> tuple:
        """The victim beside CPU-bound neighbours only, measured again (up to baseline_attempts) while
        it got less than baseline_min_share of its allocation. Returns (result, split, share,
        attempts, hidden-cost samples before and after)."""
        from nfvlab.iron import hidden

        for attempt in range(1, p.workload.baseline_attempts + 1):
            s0 = hidden.sample(topo.victim, iron) if iron is not None else None
            base = self._victim_run(topo, p, raw / f"baseline{'' if attempt == 1 else attempt}", network=False)
            split, share = base.pop("_split"), base.pop("_share")
            s1 = hidden.sample(topo.victim, iron) if iron is not None else None
            if not share < p.workload.baseline_min_share:  # (NaN: cannot tell, e.g. cgroup v2)
                break
        return base, split, share, attempt, s0, s1

    def _network_run(self, topo: Topology, p: Params, raw: Path, iron: Any) -> tuple:
        """The victim beside the point's traffic. Returns (result, split, share, samples before/after)."""
        from nfvlab.iron import hidden

        s2 = hidden.sample(topo.victim, iron) if iron is not None else None
        net = self._victim_run(topo, p, raw / "network", network=True)
        split, share = net.pop("_split"), net.pop("_share")
        s3 = hidden.sample(topo.victim, iron) if iron is not None else None
        return net, split, share, s2, s3

    def sized(self, topo: Topology, p: Params, raw: Path) -> Params:
        """p with the victim's job in events: as given, or victim_cpu_ms at this machine's sysbench rate
        (measured once per run and victim core: a job of the same CPU time, i.e. the same number of CFS
        periods at its share, on a fast or a slow machine)."""
        w = p.workload
        if w.victim_cpu_ms is None:
            return p
        key = (topo.victim_cpu, w.sysbench_prime)
        if key not in self._rate:
            self._rate[key] = self._sysbench_rate(topo, p, raw / "sysbench-rate")
        events = max(50, round(self._rate[key] * w.victim_cpu_ms / 1000))
        return p.model_copy(update={"workload": w.model_copy(update={"victim_events": events})})

    def _sysbench_rate(self, topo: Topology, p: Params, raw: Path) -> float:
        argv = sysbench.sysbench_cpu_argv(RATE_PROBE_EVENTS, prime=p.workload.sysbench_prime, binary=self.sysbench)
        proc = procs.start_in_container(topo.victim, "sysbench-rate", argv, raw)
        try:
            rc, cpu_s = proc.wait_with_usage(VICTIM_TIMEOUT_S)
        finally:
            procs.stop_all([proc])
        if rc != 0 or not cpu_s > 0:
            raise sysbench.SysbenchError(f"the sysbench rate probe exited {rc} after {cpu_s:.3f} s CPU (logs: {raw})")
        return RATE_PROBE_EVENTS / cpu_s

    def _online_hidden_cost(self, topo: Topology, p: Params, raw: Path, iron: Any, base: Any | None) -> float:
        """The hidden per-IRQ cost for this repetition's network run, measured at this point's density.

        Once the point has after-the-fact checks (earlier repetitions' network runs measured it at
        exactly this density and job length, ``iron_hidden_check_ns``), their median is used. Before that
        a probe run (a shorter job beside the same traffic, Iron enforcing) measures it on the victim.
        ``base`` is this repetition's baseline cost (hidden.run_cost), needed only for a probe.
        Returns the probe's time (NaN without a probe)."""
        from nfvlab.iron import hidden

        obs = self._hidden_obs.setdefault(p.model_dump_json(), {"probe": [], "check": []})
        probe_s = math.nan
        if len(obs["check"]) < ONLINE_PROBES and base is not None:
            events = max(50, int(p.workload.victim_events * p.iron.probe_fraction))
            probe_p = p.model_copy(update={"workload": p.workload.model_copy(update={"victim_events": events})})
            a = hidden.sample(topo.victim, iron)
            probe_s = self._victim_run(topo, probe_p, raw / "probe", network=True)["victim_time_s"]
            b = hidden.sample(topo.victim, iron)
            h = hidden.hidden_per_irq(base, hidden.run_cost(a, b), job_scale=events / p.workload.victim_events)
            if not math.isnan(h):
                obs["probe"].append(h)
        vals = obs["check"] or obs["probe"]
        est = statistics.median(vals) if vals else 0.0
        iron.set_hidden_cost(est, est)
        return probe_s

    def _record_check(self, p: Params, check_ns: float) -> None:
        if p.iron.hidden_cost == "online" and not math.isnan(check_ns):
            self._hidden_obs.setdefault(p.model_dump_json(), {"probe": [], "check": []})["check"].append(check_ns)

    @contextlib.contextmanager
    def _iron(self, topo: Topology, p: Params) -> Iterator[Any]:
        if p.iron.mode == "off":
            yield None
            return
        from nfvlab.iron import IronRuntime  # the eBPF machinery loads only when asked for
        from nfvlab.iron.calibration import Calibration

        cal = None if p.iron.hidden_cost == "calibrated" else Calibration.explicit(0, 0, p.iron.hidden_cost)
        with IronRuntime(topo, drop=p.iron.drop, pre_throttle_pct=p.iron.pre_throttle_pct,
                         attribution=p.iron.attribution, calibration=cal) as iron:
            self.iron = iron
            try:
                yield iron
            finally:
                self.iron, self.last_iron = None, iron
                self.last_history = list(iron.victim_history())

    # --- one victim run with its interferers -------------------------------------------------
    def _victim_run(self, topo: Topology, p: Params, raw: Path, network: bool) -> dict[str, Any]:
        w = p.workload
        started: list[procs.Proc] = []
        flood: floods.Flood | None = None
        try:
            argv = sysbench.sysbench_forever_argv(int(VICTIM_TIMEOUT_S) * 2, prime=w.sysbench_prime,
                                                  binary=self.sysbench)
            started += procs.start_all_in_containers(
                [(c, f"{c.name}-sysbench", argv) for c in topo.interferers if c.role == "sysbench" or not network],
                raw)
            if network:
                flood = self._start_traffic(topo, p, raw, started)
            time.sleep(w.warmup_s)
            before = self._counters(topo.victim_cpu)
            qd_before = self._qdisc_drops(topo)
            usage_before = self._cpu_usage_s(topo.victim)
            core0 = self._core_sample(topo)
            if self.observer is not None:
                self.observer("start", network)
            victim = procs.start_in_container(
                topo.victim, "victim",
                sysbench.sysbench_cpu_argv(w.victim_events, prime=w.sysbench_prime, binary=self.sysbench), raw,
            )
            started.append(victim)
            try:
                rc, victim_cpu_s = victim.wait_with_usage(VICTIM_TIMEOUT_S)
            except subprocess.TimeoutExpired as e:
                raise RuntimeError(f"victim did not finish within {VICTIM_TIMEOUT_S:.0f} s (logs: {raw})") from e
            core1 = self._core_sample(topo)
            if self.observer is not None:
                self.observer("end", network)
            after = self._counters(topo.victim_cpu)
            if rc != 0:
                raise sysbench.SysbenchError(f"victim sysbench exited {rc}: {victim.stderr()[-500:]}")
            result = sysbench.parse_sysbench_cpu(victim.stdout())
            check_victim_inside(victim_cpu_s, self._cpu_usage_s(topo.victim) - usage_before)
        finally:
            procs.stop_all(started)
        counters = hostcounters.delta(before, after)
        wall = counters["wall_s"]  # the window the counters cover: the victim's whole run
        row: dict[str, Any] = {
            "victim_time_s": result.total_time_s,
            "ksoftirqd_cpu_pct": 100 * counters["ksoftirqd_cpu_s"] / wall,
            "softirq_cpu_pct": 100 * counters["stat_softirq_s"] / wall,
            "net_rx_softirqs": counters["net_rx_softirqs"],
            "net_tx_softirqs": counters["net_tx_softirqs"],
            "qdisc_drops": self._qdisc_drops(topo) - qd_before,
            # who had the core while the victim ran (not a column; None where this machine's counters
            # do not describe the victim host, i.e. on a remote testbed)
            "_split": coreshare.split(core0, core1) if core0 and core1 else None,
            "_share": _victim_share(topo.victim, victim_cpu_s, result.total_time_s),  # (not a column)
        }
        if flood is not None:
            row |= flood.totals()
            t = p.topology
            requested = w.send_rate_mbps if t.interferer.endswith("_receiver") else math.inf
            check_flood(row["offered_mbps"], requested, f"the {t.interferer.replace('_', ' ')} flood")
            if not row["received_packets"]:
                raise PointFailed("flood_too_small", f"the {t.interferer.replace('_', ' ')} flood delivered no "
                                                     f"packet (offered {row['offered_mbps']:.3g} Mbit/s)")
        return row

    # the victim host's counters: this machine's, or read over ssh on a remote testbed
    def _core_sample(self, topo: Topology) -> coreshare.Sample | None:
        """This machine's per-core split counters: meaningful only when the victim host is this machine."""
        local = self.testbed is None or self.testbed.kind == "local"
        return coreshare.sample(topo) if local else None

    def _counters(self, cpu: int) -> hostcounters.CounterSnapshot:
        return self.testbed.counters(cpu) if self.testbed is not None else hostcounters.HostCounters().snapshot(cpu)

    def _qdisc_drops(self, topo: Topology) -> int:
        return self.testbed.qdisc_drops(topo) if self.testbed is not None else _qdisc_drops(topo)

    def _cpu_usage_s(self, c: Container) -> float:
        return self.testbed.cpu_usage_s(c) if self.testbed is not None else cgroups.cpu_usage_s(c.cgroup)

    def _start_traffic(self, topo: Topology, p: Params, raw: Path, started: list[procs.Proc]) -> floods.Flood:
        w, t = p.workload, p.topology
        proto = t.interferer.split("_")[0]
        active = [c for c in topo.interferers if c.role == t.interferer]
        if t.interferer.endswith("_sender"):  # the core's flows divided among its senders
            return floods.containers_send(self.flood, topo, active, proto, max(1, w.flows // len(active)),
                                          w.payload_bytes, math.inf, raw, started)
        return floods.peer_sends(self.flood, topo, active, proto, w.flows, w.payload_bytes, w.send_rate_mbps,
                                 raw, started)


# The victim's own CPU time (wait4) must show up in its container's cgroup: the container accounts at
# least this share of it (the launcher's few shell builtins before the join are the only gap).
INSIDE_SHARE = 0.9


def check_victim_inside(victim_cpu_s: float, container_cpu_s: float) -> None:
    """Raise PointFailed when the victim's CPU time did not go to its container (it ran outside)."""
    if victim_cpu_s > 0.01 and container_cpu_s < INSIDE_SHARE * victim_cpu_s:
        raise PointFailed("victim_outside_container",
                          f"the victim used {victim_cpu_s:.3f} s of CPU but its container accounted only "
                          f"{container_cpu_s:.3f} s: it ran (partly) outside its cgroup")


def _victim_share(victim: Container, cpu_s: float, time_s: float) -> float:
    """The victim's CPU over its timed run as a fraction of its allocation (quota/period of that time)."""
    share = victim.quota_us / victim.period_us if victim.quota_us > 0 else 1.0
    return cpu_s / (time_s * share) if time_s > 0 and cpu_s > 0 else math.nan


def _qdisc_drops(topo: Topology) -> int:
    return network.qdisc_stats(topo.peer.host_ifname).get("qdisc_drops", 0)


def _driver_factory(build_dir: Path, testbed: Callable[[], Testbed] | None = None) -> Driver:
    return Driver(build_dir, testbed)


KIND = ExperimentKind(
    name="iron-interference",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
    # Iron's fitted calibration is an input of these rows only when they use it (not none/online)
    uses_calibration=lambda p: p.iron.mode != "off" and p.iron.hidden_cost == "calibrated",
)

__all__ = ["KIND", "Params", "Container"]
