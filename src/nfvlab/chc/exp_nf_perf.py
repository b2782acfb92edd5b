"""Experiment kind `chc-nf-perf`: one NF instance per point, its state in one of the four models,
fed a generated trace by the root, with the sink measuring what comes out (Fig 3.13, Fig 3.15).

Each repetition runs the point's model and, right after it on the same deployment and trace, the
traditional NF (T), so the ratios compare like with like on a busy machine. Per-packet time is
measured inside the NF around its processing (including its waits for the store), in µs.
The forward (null) NF measures the tunnel path itself. Throughput is the sink's rate with the root
replaying as fast as the tunnel takes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nfvlab.chc import chain, traces
from nfvlab.chc.driver import ChcDriver
from nfvlab.chc.trace_setup import TraceDeployment, trace_deployment
from nfvlab.experiments.registry import ExperimentKind

# "forward" is the null NF (it only forwards): the tunnel path's own limit. (Not "null": YAML and
# pandas read that as a missing value.)
NF = Literal["nat", "portscan", "trojan", "lb", "forward"]
ModelName = Literal["T", "EO", "EO+C", "EO+C+NA"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TraceParams(Strict):
    connections: int = Field(100, ge=1)
    packets_per_connection: int = Field(20, ge=4)
    median_size: int = Field(368, ge=64, le=1514)
    scanners: int = Field(1, ge=0)
    trojans: int = Field(1, ge=0)
    seed: int = 1


class ChainParams(Strict):
    nf: NF
    model: ModelName


class Params(Strict):
    trace: TraceParams
    chain: ChainParams


METRICS = ("p5_us", "p25_us", "median_us", "p75_us", "p95_us", "median_ratio_to_t", "t_median_us",
           "throughput_kpps", "throughput_mbps", "throughput_ratio_to_t", "t_throughput_kpps", "delivered_frac",
           "packets", "store_ops_per_packet")

CONFIG: dict[str, dict[str, str]] = {
    "nat": {"external": "198.18.40.100", "internal": "198.18.32.0/22", "ports": "10000-60000"},
    "lb": {"servers": "198.18.44.1|198.18.44.2|198.18.44.3"},
}


def topology_key(p: Params) -> tuple:
    return tuple(sorted(p.trace.model_dump().items()))


def quantile(values: list[int], q: float) -> float:
    """Nearest-rank quantile of ns samples, in µs."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))] / 1000.0


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[TraceDeployment]:
        work = self.work_dir("trace", topology_key(p))
        spec = traces.spec_from_params(p.trace)
        with trace_deployment(work, spec) as s:
            yield s

    def _one(self, s: TraceDeployment, nf: str, model: str, tag: str) -> chain.NFRunResult:
        s.flush_stores()
        return chain.run_nf(s.dep, self.bin_dir, s.pcap, nf, model, store_addresses=s.store_addresses,
                            config=CONFIG.get(nf), tag=tag, timeout_s=300)

    def measure(self, s: TraceDeployment, p: Params, raw: Path) -> dict[str, Any]:
        c = p.chain
        res = self._one(s, c.nf, c.model, "perf")
        base = res if c.model == "T" else self._one(s, c.nf, "T", "perf")
        samples, t_samples = res.samples_ns[0], base.samples_ns[0]
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "samples_ns.txt").write_text("\n".join(map(str, samples)) + "\n")
        med, t_med = quantile(samples, 0.5), quantile(t_samples, 0.5)
        kpps, t_kpps = res.sink["pps"] / 1e3, base.sink["pps"] / 1e3
        return {
            "p5_us": quantile(samples, 0.05),
            "p25_us": quantile(samples, 0.25),
            "median_us": med,
            "p75_us": quantile(samples, 0.75),
            "p95_us": quantile(samples, 0.95),
            "median_ratio_to_t": med / t_med if t_med else float("nan"),
            "t_median_us": t_med,
            "throughput_kpps": kpps,
            "throughput_mbps": res.sink["mbps"],
            "throughput_ratio_to_t": kpps / t_kpps if t_kpps else float("nan"),
            "t_throughput_kpps": t_kpps,
            "delivered_frac": res.sink["packets"] / res.root["sent"],
            "packets": res.root["sent"],
            "store_ops_per_packet": res.instances[0]["store_ops"] / max(1, res.instances[0]["received"]),
        }


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="chc-nf-perf",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
)
