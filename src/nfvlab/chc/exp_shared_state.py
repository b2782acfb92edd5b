"""Experiment kind `chc-shared-state` (§3.6.3 R3, Fig 3.16): strongly consistent updates of shared
state across NAT instances. The NAT's cross-flow objects (its available-port list and its packet
counters) are updated by every packet at every instance.
  chc      CHC: the objects live in a real redis-server; the instances' offloaded ops (non-blocking
           counter increments, blocking pops) are serialized by the store (EO+C+NA).
  opennf   the OpenNF-style baseline: each instance keeps a copy (model T); every packet's updates
           go to a controller that applies them at every instance in one global order and releases
           the packet only after all instances acknowledged (nfvlab.chc.opennf, chc/replica.h).
Chain experiments/chains/nat-x2.yaml (root -> `instances` NAT instances -> sink; the root splits flows
between them). Per-packet time is measured inside each NAT around its processing, waits included.
Each repetition runs the point's framework and CHC right after (for `chc` that one run) on the same
deployment and trace. The offered rate is fixed and low enough for the serialized controller (the
paper's 50 % of a 10 G link would overload it here), so both frameworks see the same load.
Consistency is checked, not assumed: after the run every OpenNF copy of the total-packet counter,
and CHC's one counter in the store, must equal the packets the instances received.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from nfvlab.chc import dag, dagrun, opennf, traces
from nfvlab.chc.compile import PhysicalDAG, compile_chain
from nfvlab.chc.driver import ChcDriver
from nfvlab.chc.exp_availability import TraceParams
from nfvlab.chc.exp_nf_perf import Strict, quantile
from nfvlab.chc.trace_setup import TraceDeployment, trace_deployment
from nfvlab.experiments.registry import ExperimentKind

REPO = Path(__file__).resolve().parents[3]
CHAIN = REPO / "experiments" / "chains" / "nat-x2.yaml"
Framework = Literal["chc", "opennf"]


class SharedParams(Strict):
    framework: Framework
    instances: int = Field(2, ge=2, le=4, description="NAT instances sharing the objects")
    rate_pps: int = Field(2000, ge=100, description="the root's replay rate, the same for both frameworks")


class Params(Strict):
    trace: TraceParams = TraceParams(connections=300)
    shared: SharedParams


METRICS = ("p5_us", "p25_us", "median_us", "p75_us", "p95_us", "chc_median_us", "median_ratio_to_chc",
           "controller_hold_median_us", "consistent", "counter_copies_equal", "delivered_frac", "packets",
           "events_per_packet")


def topology_key(p: Params) -> tuple:
    return (*sorted(p.trace.model_dump().items()), p.shared.instances)


def nat_chain(instances: int) -> PhysicalDAG:
    """experiments/chains/nat-x2.yaml with `instances` NAT instances, compiled."""
    logical = dag.load_chain(CHAIN)
    nat = logical.vertices["nat"].model_copy(update={"parallelism": instances})
    return compile_chain(logical.model_copy(update={"vertices": {"nat": nat}}))


def opennf_dag(chain: PhysicalDAG) -> PhysicalDAG:
    """The same instances with their state local (model T): the copies the controller keeps consistent."""
    return dataclasses.replace(chain, instances=tuple(dataclasses.replace(i, model="T") for i in chain.instances))


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[TraceDeployment]:
        work = self.work_dir("shared", topology_key(p))
        spec = traces.spec_from_params(p.trace)
        with trace_deployment(work, spec) as s:
            yield s

    def _run(self, s: TraceDeployment, p: Params, framework: str) -> tuple[dagrun.ChainRunResult, dict]:
        s.flush_stores()
        chain = nat_chain(p.shared.instances)
        kw: dict[str, Any] = {"store_addresses": s.store_addresses, "rate_pps": p.shared.rate_pps, "tag": "shared",
                              "timeout_s": 300}
        if framework == "chc":
            return dagrun.run_chain(s.dep, self.bin_dir, chain, s.pcap, **kw), {}
        with opennf.controller(s.dep, self.bin_dir, p.shared.instances, "shared") as ctl:
            res = dagrun.run_chain(s.dep, self.bin_dir, opennf_dag(chain), s.pcap,
                                   nf_args={"nat": ("--opennf", ctl.address)}, **kw)
        return res, ctl.summary

    def _store_total(self, s: TraceDeployment) -> int:
        """The NAT's total-packet counter in the store (vertex 1's shared key, docs/chc.md "Keys")."""
        import redis

        host, port = s.store_addresses[0].rsplit(":", 1)
        return int(redis.Redis(host=host, port=int(port)).get("chc:{v1:nat:total_packets}") or 0)

    def measure(self, s: TraceDeployment, p: Params, raw: Path) -> dict[str, Any]:
        run, ctl = self._run(s, p, p.shared.framework)
        totals = [int(r.report.get("total_packets", -1)) for r in run.instances.values()]
        received = sum(int(r.summary["received"]) for r in run.instances.values())
        if p.shared.framework == "chc":
            store_total = self._store_total(s)  # before the reference run flushes the store
            consistent = store_total == received
            ref = run
        else:
            consistent = all(t == received for t in totals)
            ref, _ = self._run(s, p, "chc")
        times = [x for r in run.instances.values() for x in r.samples_ns]
        chc_times = [x for r in ref.instances.values() for x in r.samples_ns]
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "samples_ns.txt").write_text("\n".join(map(str, times)) + "\n")
        (raw / "chc_samples_ns.txt").write_text("\n".join(map(str, chc_times)) + "\n")
        med, c_med = quantile(times, .5), quantile(chc_times, .5)
        events = sum(int(r.summary.get("replica_events", 0)) for r in run.instances.values())
        sent = int(run.root["sent"])
        return {
            "p5_us": quantile(times, .05), "p25_us": quantile(times, .25), "median_us": med,
            "p75_us": quantile(times, .75), "p95_us": quantile(times, .95),
            "chc_median_us": c_med, "median_ratio_to_chc": med / c_med if c_med else float("nan"),
            "controller_hold_median_us": float(ctl.get("hold_median_us", 0.0)),
            "consistent": int(consistent), "counter_copies_equal": int(len(set(totals)) == 1),
            "delivered_frac": run.sink["packets"] / max(1, sent), "packets": sent,
            "events_per_packet": events / max(1, received),
        }


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="chc-shared-state",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
)
