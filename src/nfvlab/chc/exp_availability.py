"""Experiment kind `chc-availability` (§3.6.3 R1, Fig 3.17): the NAT's per-packet latency when its
state is available because CHC externalizes it (EO+C+NA, a real redis-server) against FTMB-style
checkpointing, emulated as the paper did: a traditional NAT (state local) that stops taking packets
for `pause_us` every `pause_every_ms` (the paper: 5000 µs every 200 ms, from FTMB's Figure 6), so
packets queue meanwhile.

Chain experiments/chains/nat.yaml (root -> NAT -> sink). The load level is a fraction of the rate the
chain carries on this machine, measured once per topology with the root replaying as fast as it can,
for both frameworks (without pauses); the slower one sets the maximum (CHC here: its NAT pays for
the store ops), so both see the same offered load, `load` x that maximum, as in the paper. Latency is end to end
(root to sink, per delivered packet, CLOCK_MONOTONIC), so it includes the queueing a pause causes.
Each repetition runs the point's framework and CHC right after (for `chc` that one run), on the same
deployment and trace, so `*_ratio_to_chc` compares like with like on a busy host.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from nfvlab.chc import dag, dagrun, traces
from nfvlab.chc.compile import compile_chain
from nfvlab.chc.driver import ChcDriver
from nfvlab.chc.exp_nf_perf import Strict, quantile
from nfvlab.chc.trace_setup import TraceDeployment, trace_deployment
from nfvlab.experiments.registry import ExperimentKind

REPO = Path(__file__).resolve().parents[3]
CHAIN = REPO / "experiments" / "chains" / "nat.yaml"
Framework = Literal["chc", "ftmb"]


class TraceParams(Strict):
    connections: int = Field(2000, ge=1)
    packets_per_connection: int = Field(20, ge=4)
    median_size: int = Field(368, ge=64, le=1514)
    seed: int = 1


class AvailabilityParams(Strict):
    framework: Framework
    load: float = Field(0.5, gt=0, le=1, description="offered rate / the traditional NAT chain's maximum here")
    pause_us: int = Field(5000, ge=0, description="FTMB: how long each checkpoint stops the NF")
    pause_every_ms: int = Field(200, ge=1, description="FTMB: checkpoint period")


class Params(Strict):
    trace: TraceParams = TraceParams()
    availability: AvailabilityParams


METRICS = ("p5_us", "p25_us", "median_us", "p75_us", "p95_us", "p99_us", "max_us", "chc_median_us", "chc_p75_us",
           "median_ratio_to_chc", "p75_ratio_to_chc", "p99_ratio_to_chc", "rate_pps", "max_kpps", "t_max_kpps",
           "chc_max_kpps", "pauses",
           "expected_pauses", "delivered_frac", "packets", "duration_s")


def topology_key(p: Params) -> tuple:
    return tuple(sorted(p.trace.model_dump().items()))


@dataclasses.dataclass
class Setup:
    trace: TraceDeployment
    t_max_pps: float  # the traditional NAT chain, flat out
    chc_max_pps: float

    @property
    def max_pps(self) -> float:
        return min(self.t_max_pps, self.chc_max_pps)


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[Setup]:
        work = self.work_dir("availability", topology_key(p))
        spec = traces.spec_from_params(p.trace)
        with trace_deployment(work, spec) as s:
            t_max, chc_max = (self._run(s, f, 0, pause_us=0, pause_every_ms=1) for f in ("ftmb", "chc"))
            yield Setup(s, float(t_max.sink["pps"]), float(chc_max.sink["pps"]))

    def _run(self, s: TraceDeployment, framework: str, rate_pps: int, *, pause_us: int,
             pause_every_ms: int) -> dagrun.ChainRunResult:
        s.flush_stores()
        model = "EO+C+NA" if framework == "chc" else "T"
        nf_args = {"nat": ("--pause-us", str(pause_us), "--pause-every-ms", str(pause_every_ms))} \
            if framework == "ftmb" and pause_us else None
        return dagrun.run_chain(s.dep, self.bin_dir, compile_chain(dag.load_chain(CHAIN).with_model(model)), s.pcap,
                                store_addresses=s.store_addresses, rate_pps=rate_pps, tag="avail", timeout_s=300,
                                nf_args=nf_args)

    def measure(self, setup: Setup, p: Params, raw: Path) -> dict[str, Any]:
        a = p.availability
        rate = max(100, int(a.load * setup.max_pps))
        run = self._run(setup.trace, a.framework, rate, pause_us=a.pause_us, pause_every_ms=a.pause_every_ms)
        ref = run if a.framework == "chc" else self._run(setup.trace, "chc", rate, pause_us=0, pause_every_ms=1)
        times, chc_times = run.latency_ns, ref.latency_ns
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "latency_ns.txt").write_text("\n".join(map(str, times)) + "\n")
        (raw / "chc_latency_ns.txt").write_text("\n".join(map(str, chc_times)) + "\n")
        q = {k: quantile(times, f) for k, f in (("p5", .05), ("p25", .25), ("median", .5), ("p75", .75),
                                                 ("p95", .95), ("p99", .99), ("max", 1.0))}
        c_med, c_p75, c_p99 = quantile(chc_times, .5), quantile(chc_times, .75), quantile(chc_times, .99)
        sent = int(run.root["sent"])
        duration = sent / rate
        nat = next(iter(run.instances.values())).summary
        return {
            **{f"{k}_us": v for k, v in q.items()},
            "chc_median_us": c_med, "chc_p75_us": c_p75,
            "median_ratio_to_chc": q["median"] / c_med if c_med else float("nan"),
            "p75_ratio_to_chc": q["p75"] / c_p75 if c_p75 else float("nan"),
            "p99_ratio_to_chc": q["p99"] / c_p99 if c_p99 else float("nan"),
            "rate_pps": rate, "max_kpps": setup.max_pps / 1e3, "t_max_kpps": setup.t_max_pps / 1e3,
            "chc_max_kpps": setup.chc_max_pps / 1e3,
            "pauses": int(nat.get("pauses", 0)),
            "expected_pauses": int(duration * 1000 // a.pause_every_ms) if a.framework == "ftmb" and a.pause_us else 0,
            "delivered_frac": run.sink["packets"] / max(1, sent), "packets": sent, "duration_s": duration,
        }


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="chc-availability",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
)
