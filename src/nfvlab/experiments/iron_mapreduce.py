"""Fig 2.13: real applications. A MapReduce job (Spark in local mode: pi, wordcount, grep) in the victim
container shares the core with containers that exchange trace-driven network traffic (TeraSort's
shuffle, the DCTCP web-search and the VL2 data-mining message sizes).

Paper (§2.3.1): 48 containers on 6 machines, two per core, split into a victim and an interferer
subcluster; the interferers keep long-lived TCP connections to every other container of their
subcluster and send messages one after another to a random destination. Here, on the local testbed:
the victim and ``containers_per_core - 1`` interferers on the victims' core; the peer (the other
core) stands for the rest of the interferer subcluster. Every interferer and the peer runs a sink and
a sender with one connection to each other endpoint (``nfvlab.workloads.msgtraffic``).

Penalty factor, per repetition: the job's time next to the traffic over its time next to CPU-bound
neighbours (sysbench at the same share), as in §2.1.3. One Spark JVM serves every job of a testbed
(``sparkjobs serve``): its start-up is not part of any measurement, the job's own time is.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nfvlab.experiments.registry import ExperimentKind
from nfvlab.testbeds import processes as procs
from nfvlab.testbeds.local import LocalTestbed
from nfvlab.testbeds.model import Topology
from nfvlab.workloads import sysbench

PORT = 6100
JOB_TIMEOUT_S = 900.0
SERVER_START_S = 600.0  # the JVM starts on a share of one (busy) core


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TopologyParams(Strict):
    containers_per_core: int = Field(2, ge=2, le=8, description="the victim plus n-1 interferers")


class WorkloadParams(Strict):
    job: Literal["pi", "wordcount", "grep"]
    traffic: Literal["terasort", "websearch", "datamining"]
    pi_samples: int = Field(1_000_000, ge=1000)
    corpus_mb: float = Field(5.0, gt=0, description="wordcount/grep input (generated, Zipf words)")
    slices: int = Field(4, ge=1)
    spark_memory: str = "512m"
    max_message_bytes: int | None = Field(None, ge=1, description="cap one message (data mining reaches 1 GB)")
    core_rate_mbps: float = Field(math.inf, gt=0, description="per-core HTB toward the peer; inf = none")
    warmup_s: float = Field(1.0, ge=0)
    sysbench_prime: int = Field(10000, ge=100)
    probe_events: int = Field(1000, ge=50, description="iron.hidden_cost=online: sysbench events of the probe")


class IronParams(Strict):
    mode: Literal["off", "ebpf"] = "off"
    drop: Literal["xdp", "tc", "none"] = "tc"  # TCP adapts to drops; the software drop suffices (§2.3.1)
    hidden_cost: Literal["none", "calibrated", "online"] = "online"


class Params(Strict):
    topology: TopologyParams = TopologyParams()
    workload: WorkloadParams
    iron: IronParams = IronParams()


METRICS = (
    "job_time_base_s",
    "job_time_net_s",
    "penalty_factor",
    "victim_cpu_base_s",
    "victim_cpu_net_s",
    "victim_cpu_ratio",
    "victim_share_base",
    "victim_share_net",
    "victim_kernel_base_ms",
    "victim_kernel_net_ms",
    "victim_gained_net_ms",
    "victim_unseen_extra_ms",
    "traffic_mbps",
    "messages",
    "iron_charged_ms",
    "iron_gained_ms",
    "iron_irq_cost_ns",
    "iron_timer_cost_ns",
    "core_busy_before_pct",
    "core_irq_before_pct",
)


def roles(p: Params) -> list[str]:
    return ["victim"] + ["msg"] * (p.topology.containers_per_core - 1)


def topology_key(p: Params) -> tuple:
    return (tuple(roles(p)), p.workload.core_rate_mbps, p.workload.corpus_mb, p.workload.spark_memory)


class Driver:
    def __init__(self, build_dir: Path):
        self.build_dir = Path(build_dir) / "mapreduce"
        self.sysbench = sysbench.find_sysbench()
        self.testbed: LocalTestbed | None = None
        self.server: procs.Proc | None = None
        self.ctl: Path | None = None
        self._hidden: dict[str, float] = {}  # online: the hidden cost measured per traffic kind so far
        self._req = 0

    # --- testbed + the Spark server --------------------------------------------------------------
    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[Topology]:
        _require_spark()
        corpus = self._corpus(p.workload.corpus_mb)
        from nfvlab.experiments.iron_interference import TESTBED_WAIT_S

        with LocalTestbed(wait_s=TESTBED_WAIT_S) as tb:  # shared machine: wait for another run's testbed
            self.testbed = tb
            topo = tb.up(roles(p), p.workload.core_rate_mbps)
            run_dir = self.build_dir / f"run-{int(time.time())}"
            self.ctl = run_dir / "ctl"
            self.ctl.mkdir(parents=True, exist_ok=True)
            (run_dir / "spark").mkdir(exist_ok=True)
            argv = [sys.executable, "-m", "nfvlab.workloads.sparkjobs", "serve", "--ctl", str(self.ctl),
                    "--input", str(corpus), "--memory", p.workload.spark_memory, "--local-dir", str(run_dir / "spark")]
            self.server = procs.start_in_container(topo.victim, "spark-server", argv, run_dir)
            try:
                self._wait_ready()
                yield topo
            finally:
                self._stop_server()
                shutil.rmtree(run_dir, ignore_errors=True)
                self.testbed = None

    def _corpus(self, mb: float) -> Path:
        from nfvlab.workloads.sparkjobs import write_corpus

        path = self.build_dir / f"corpus-{mb:g}mb.txt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_corpus(path, mb)
        return path

    def _wait_ready(self) -> None:
        assert self.ctl is not None and self.server is not None
        deadline = time.monotonic() + SERVER_START_S
        while not (self.ctl / "ready").exists():
            if not self.server.running():
                raise RuntimeError(f"the Spark server exited: {self.server.stderr()[-1500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Spark server did not start within {SERVER_START_S:.0f} s")
            time.sleep(0.2)

    def _stop_server(self) -> None:
        if self.server is None:
            return
        if self.ctl is not None and self.server.running():
            (self.ctl / "stop.req").write_text("{}")
            with contextlib.suppress(Exception):
                self.server.wait(30)
        procs.stop_all([self.server])
        self.server = None

    def _job(self, p: Params) -> float:
        """Run the point's job on the server; its own time (s)."""
        assert self.ctl is not None and self.server is not None
        w = p.workload
        self._req += 1
        rid = f"{self._req:06d}"
        req = {"job": w.job, "args": {"samples": w.pi_samples, "slices": w.slices}}
        tmp = self.ctl / f"{rid}.tmp-req"
        tmp.write_text(json.dumps(req))
        tmp.rename(self.ctl / f"{rid}.req")
        res_path = self.ctl / f"{rid}.res"
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not res_path.exists():
            if not self.server.running():
                raise RuntimeError(f"the Spark server died: {self.server.stderr()[-1500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{w.job} did not finish within {JOB_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        res = json.loads(res_path.read_text())
        res_path.unlink()
        if "error" in res:
            raise RuntimeError(f"{w.job} failed in Spark: {res['error']}")
        return float(res["job_time_s"])

    # --- one repetition ---------------------------------------------------------------------------
    def measure(self, topo: Topology, p: Params, raw: Path) -> dict[str, Any]:
        load = self.testbed.wait_quiet() if self.testbed is not None else None
        with self._iron(topo, p) as iron:
            if iron is not None and p.iron.hidden_cost == "online":
                self._online_hidden_cost(topo, p, raw, iron)
            base_s, base_cpu_s, base_k = self._with_neighbours(topo, p, raw / "baseline", iron)
            net_s, net_cpu_s, net_k, traffic = self._with_neighbours_traffic(topo, p, raw / "network", iron)
            st = iron.stats() if iron is not None else {}
        return {
            "job_time_base_s": base_s,
            "job_time_net_s": net_s,
            "penalty_factor": net_s / base_s,
            # where a penalty comes from: the victim got less CPU (its share fell) or needed more
            # CPU for the same job (its CPU time rose: caches and memory shared with the traffic,
            # or kernel work run on its behalf)
            "victim_cpu_base_s": base_cpu_s,
            "victim_cpu_net_s": net_cpu_s,
            "victim_cpu_ratio": net_cpu_s / base_cpu_s if base_cpu_s > 0 else math.nan,
            "victim_share_base": base_cpu_s / base_s if base_s > 0 else math.nan,
            "victim_share_net": net_cpu_s / net_s if net_s > 0 else math.nan,
            # of the victim's extra CPU beside the traffic, the part Iron saw (softirq and hard-IRQ time
            # in its context, the assumed hidden cost included) and what it credited for it; the rest
            # is the job itself needing more CPU (caches, memory bandwidth) or cost nobody saw
            "victim_kernel_base_ms": base_k[0],
            "victim_kernel_net_ms": net_k[0],
            "victim_gained_net_ms": net_k[1],
            "victim_unseen_extra_ms": 1000 * (net_cpu_s - base_cpu_s) - (net_k[0] - base_k[0]),
            **traffic,
            "iron_charged_ms": st.get("charged_ns_total", math.nan) / 1e6,
            "iron_gained_ms": st.get("gained_ns_total", math.nan) / 1e6,
            "iron_irq_cost_ns": iron.irq_extra_ns if iron is not None else math.nan,
            "iron_timer_cost_ns": iron.timer_extra_ns if iron is not None else math.nan,
            "core_busy_before_pct": load.busy_pct if load else math.nan,
            "core_irq_before_pct": load.irq_pct if load else math.nan,
        }

    @contextlib.contextmanager
    def _iron(self, topo: Topology, p: Params) -> Iterator[Any]:
        if p.iron.mode == "off":
            yield None
            return
        from nfvlab.iron import IronRuntime
        from nfvlab.iron.calibration import Calibration

        cal = None if p.iron.hidden_cost == "calibrated" else Calibration.explicit(0, 0, p.iron.hidden_cost)
        with IronRuntime(topo, drop=p.iron.drop, calibration=cal) as iron:
            yield iron

    def _neighbours_sysbench(self, topo: Topology, p: Params, raw: Path, started: list[procs.Proc]) -> None:
        for c in topo.interferers:
            argv = sysbench.sysbench_forever_argv(int(JOB_TIMEOUT_S) * 2, prime=p.workload.sysbench_prime,
                                                  binary=self.sysbench)
            started.append(procs.start_in_container(c, f"{c.name}-sysbench", argv, raw))

    def _job_with_cpu(self, topo: Topology, p: Params, iron: Any) -> tuple[float, float, tuple[float, float]]:
        """The job's own time, the victim container's CPU seconds over its request (the idle JVM's
        threads are in that container too: a few ms per job) and, with Iron loaded, (kernel work seen
        in the victim's context, Iron's credit to it) in ms over the same request (NaN without Iron)."""
        from nfvlab.iron import hidden

        assert self.testbed is not None
        a = hidden.sample(topo.victim, iron) if iron is not None else None
        cpu0 = self.testbed.cpu_usage_s(topo.victim)
        job_s = self._job(p)
        cpu_s = self.testbed.cpu_usage_s(topo.victim) - cpu0
        if a is None:
            return job_s, cpu_s, (math.nan, math.nan)
        b = hidden.sample(topo.victim, iron)
        kernel_ms = ((b.softirq_ns - a.softirq_ns) + (b.irq_ns - a.irq_ns)) / 1e6
        return job_s, cpu_s, (kernel_ms, (b.gained_ns - a.gained_ns) / 1e6)

    def _with_neighbours(self, topo: Topology, p: Params, raw: Path,
                         iron: Any) -> tuple[float, float, tuple[float, float]]:
        started: list[procs.Proc] = []
        try:
            self._neighbours_sysbench(topo, p, raw, started)
            time.sleep(p.workload.warmup_s)
            return self._job_with_cpu(topo, p, iron)
        finally:
            procs.stop_all(started)

    def _with_neighbours_traffic(self, topo: Topology, p: Params, raw: Path,
                                 iron: Any) -> tuple[float, float, tuple[float, float], dict[str, float]]:
        started: list[procs.Proc] = []
        sinks: list[procs.Proc] = []
        senders: list[procs.Proc] = []
        try:
            self._start_traffic(topo, p, raw, started, sinks, senders)
            time.sleep(p.workload.warmup_s)
            t0 = time.monotonic()
            job_s, cpu_s, kernel = self._job_with_cpu(topo, p, iron)
            dt = time.monotonic() - t0
        finally:
            procs.stop_all(started)
        rx = sum(_last_json(s).get("bytes", 0) for s in sinks)
        msgs = sum(_last_json(s).get("messages", 0) for s in senders)
        traffic = {"traffic_mbps": rx * 8 / 1e6 / max(dt + p.workload.warmup_s, 1e-9), "messages": msgs}
        return job_s, cpu_s, kernel, traffic

    def _start_traffic(self, topo: Topology, p: Params, raw: Path, started: list[procs.Proc],
                       sinks: list[procs.Proc], senders: list[procs.Proc]) -> None:
        """A sink on every interferer and on the peer; then every one of them sends to all the others."""
        w = p.workload
        py = [sys.executable, "-m", "nfvlab.workloads.msgtraffic"]
        endpoints = [(c.name, c.ip) for c in topo.interferers] + [("peer", topo.peer.ip)]
        for c in topo.interferers:
            sinks.append(procs.start_in_container(c, f"{c.name}-sink", [*py, "sink", "--port", str(PORT)], raw))
        sinks.append(procs.start_on_peer(topo.peer, "peer-sink", [*py, "sink", "--port", str(PORT)], raw))
        started.extend(sinks)
        time.sleep(0.5)
        for i, (name, _ip) in enumerate(endpoints):
            dests = ",".join(dip for dname, dip in endpoints if dname != name)
            argv = [*py, "send", "--dist", w.traffic, "--to", dests, "--port", str(PORT), "--seed", str(i + 1)]
            if w.max_message_bytes:
                argv += ["--max-bytes", str(w.max_message_bytes)]
            if name == "peer":
                s = procs.start_on_peer(topo.peer, "peer-send", argv, raw)
            else:
                c = next(c for c in topo.interferers if c.name == name)
                s = procs.start_in_container(c, f"{name}-send", argv, raw)
            senders.append(s)
            started.append(s)

    def _online_hidden_cost(self, topo: Topology, p: Params, raw: Path, iron: Any) -> None:
        """A sysbench job in the victim container, beside sysbench neighbours and then beside this
        point's traffic, measures the hidden per-IRQ cost at this traffic's density (nfvlab.iron.hidden);
        once per traffic kind and testbed (the Spark job's own CPU is not repeatable enough to do it on
        the job itself)."""
        key = p.workload.traffic
        if key not in self._hidden:
            self._pause_server(True)  # the idle JVM's own threads would count as the probe's CPU
            try:
                self._hidden[key] = self._probe_hidden_cost(topo, p, raw, iron)
            finally:
                self._pause_server(False)
        iron.set_hidden_cost(self._hidden[key], self._hidden[key])

    def _pause_server(self, pause: bool) -> None:
        """Stop (SIGSTOP) or continue the Spark server's process group: nothing of it runs in the victim
        container while the probe measures the victim's CPU."""
        if self.server is not None and self.server.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGSTOP if pause else signal.SIGCONT)

    def _probe_hidden_cost(self, topo: Topology, p: Params, raw: Path, iron: Any) -> float:
        from nfvlab.iron import hidden

        runs: list[Any] = []
        for network in (False, True):
            started: list[procs.Proc] = []
            try:
                if network:
                    self._start_traffic(topo, p, raw / "probe", started, [], [])
                else:
                    self._neighbours_sysbench(topo, p, raw / "probe-base", started)
                time.sleep(p.workload.warmup_s)
                a = hidden.sample(topo.victim, iron)
                v = procs.start_in_container(topo.victim, "probe", sysbench.sysbench_cpu_argv(
                    p.workload.probe_events, prime=p.workload.sysbench_prime, binary=self.sysbench), raw)
                if v.wait(JOB_TIMEOUT_S) != 0:
                    raise RuntimeError(f"probe sysbench failed: {v.stderr()[-500:]}")
                runs.append(hidden.run_cost(a, hidden.sample(topo.victim, iron)))
            finally:
                procs.stop_all(started)
        h = hidden.hidden_per_irq(runs[0], runs[1])
        return 0.0 if math.isnan(h) else h


def _last_json(proc: procs.Proc) -> dict[str, Any]:
    for line in reversed(proc.stdout().splitlines()):
        with contextlib.suppress(ValueError):
            return json.loads(line)
    return {}


def _require_spark() -> None:
    """Fail before any setup, naming what is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError as e:
        raise RuntimeError("iron-mapreduce needs pyspark (pip install pyspark; pyproject's [mapreduce] extra)") from e
    if shutil.which("java") is None:
        raise RuntimeError("iron-mapreduce needs a Java 17 runtime (apt: openjdk-17-jre-headless)")


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="iron-mapreduce",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
    uses_calibration=lambda p: p.iron.mode != "off" and p.iron.hidden_cost == "calibrated",
)
