"""Experiment kind `chc-chain` (§3.6.1, the chain experiment): a logical chain (YAML DAG,
nfvlab.chc.dag) compiled and deployed on the local testbed, a generated trace replayed through it at
a set rate, every vertex in one state model; each repetition also runs the same chain with every
vertex traditional (T) right after, on the same deployment and trace.

Rows are tidy: `nf` is `chain` for the end-to-end time (root to sink, per delivered packet; root and
sink stamp each clock with the host's CLOCK_MONOTONIC) or a vertex's NF type for that vertex's
per-packet time measured inside the NF; `overhead_us` is the model's median minus T's median of the
same repetition (paper: 11.3 µs end to end for EO+C+NA)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from nfvlab.chc import dag, dagrun, traces
from nfvlab.chc.compile import compile_chain
from nfvlab.chc.driver import ChcDriver
from nfvlab.chc.exp_nf_perf import ModelName, Strict, TraceParams, quantile
from nfvlab.chc.trace_setup import TraceDeployment, trace_deployment
from nfvlab.experiments.registry import ExperimentKind

REPO = Path(__file__).resolve().parents[3]
NFOrChain = Literal["chain", "nat", "portscan", "trojan", "lb", "forward"]


class ChainParams(Strict):
    logical: str = Field(description="the logical chain's YAML, relative to the repository")
    model: ModelName
    nf: NFOrChain = "chain"
    rate_pps: int = Field(10000, ge=0, description="root replay rate; 0 = as fast as the tunnel takes it")

    @field_validator("logical")
    @classmethod
    def _loads(cls, v: str) -> str:
        try:
            dag.load_chain(REPO / v)
        except dag.ChainSpecError as e:  # the spec error then names params.chain.logical and the chain's field
            raise ValueError(str(e).replace("\n", " ")) from e
        return v

    @model_validator(mode="after")
    def _nf_in_chain(self) -> ChainParams:
        chain = self.load()
        if self.nf != "chain" and self.nf not in {v.nf for v in chain.vertices.values()}:
            raise ValueError(f"nf {self.nf!r} is no vertex type of {self.logical} (chain, or one of "
                             f"{sorted({v.nf for v in chain.vertices.values()})})")
        if self.model == "T":
            raise ValueError("model T is the baseline every repetition runs anyway: sweep EO, EO+C, EO+C+NA")
        return self

    def load(self) -> dag.LogicalChain:
        return dag.load_chain(REPO / self.logical)


class Params(Strict):
    trace: TraceParams
    chain: ChainParams


METRICS = ("p5_us", "p25_us", "median_us", "p75_us", "p95_us", "t_median_us", "overhead_us", "median_ratio_to_t",
           "in_nf_overhead_us", "delivered_frac", "trojan_alerts", "false_alerts", "packets", "store_ops_per_packet")


def topology_key(p: Params) -> tuple:
    return (*sorted(p.trace.model_dump().items()), p.chain.logical)


def _times(res: dagrun.ChainRunResult, nf: str) -> list[int]:
    if nf == "chain":
        return res.latency_ns
    return [s for v in res.dag.path + res.dag.off_path if res.dag.of_vertex(v)[0].nf == nf
            for s in res.vertex_samples(v)]


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[TraceDeployment]:
        work = self.work_dir("chain", topology_key(p))
        spec = traces.spec_from_params(p.trace)
        with trace_deployment(work, spec) as s:
            yield s

    def _run(self, s: TraceDeployment, p: Params, model: str) -> dagrun.ChainRunResult:
        s.flush_stores()
        phys = compile_chain(p.chain.load().with_model(model))
        return dagrun.run_chain(s.dep, self.bin_dir, phys, s.pcap, store_addresses=s.store_addresses,
                                rate_pps=p.chain.rate_pps, tag="chain", timeout_s=300)

    def measure(self, s: TraceDeployment, p: Params, raw: Path) -> dict[str, Any]:
        res, base = self._run(s, p, p.chain.model), self._run(s, p, "T")
        nf = p.chain.nf
        times, t_times = _times(res, nf), _times(base, nf)
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "times_ns.txt").write_text("\n".join(map(str, times)) + "\n")
        (raw / "t_times_ns.txt").write_text("\n".join(map(str, t_times)) + "\n")
        med, t_med = quantile(times, 0.5), quantile(t_times, 0.5)
        in_nf = sum(quantile(res.vertex_samples(v), 0.5) - quantile(base.vertex_samples(v), 0.5) for v in res.dag.path)
        alerts = {h for r in res.instances.values() if r.vertex in res.dag.off_path
                  for h in r.report.get("alerts", "-").split(",") if h != "-"}
        ops = sum(r.summary.get("store_ops", 0) for r in res.instances.values())
        return {
            "p5_us": quantile(times, 0.05),
            "p25_us": quantile(times, 0.25),
            "median_us": med,
            "p75_us": quantile(times, 0.75),
            "p95_us": quantile(times, 0.95),
            "t_median_us": t_med,
            "overhead_us": med - t_med,
            "median_ratio_to_t": med / t_med if t_med else float("nan"),
            "in_nf_overhead_us": in_nf,
            "delivered_frac": res.sink["packets"] / res.root["sent"],
            "trojan_alerts": len(alerts & set(s.info.trojan_hosts)),  # the off-path detector, through the tap
            "false_alerts": len(alerts - set(s.info.trojan_hosts)),
            "packets": res.root["sent"],
            "store_ops_per_packet": ops / max(1, res.root["sent"]),
        }


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="chc-chain",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
)
