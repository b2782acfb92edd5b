"""Experiment kind `chc-metadata` (§3.6.2): what CHC's correctness metadata costs the root per packet.

Chain experiments/chains/nat.yaml (root -> one NAT, EO+C+NA -> sink, one redis-server). The root
replays the trace at `rate_pps`, with one piece of metadata on (`variant`):
  clock-N     the clock persisted every N packets (a lease: packet c waits until a write >= c - N
              is acknowledged; docs/chc.md "R6 root failover"). Paper: 29 / 3.5 / 0.4 µs for 1/10/100.
  log-local   every packet logged in the root's memory until the NAT's delete request (paper 1 µs)
  log-store   ... logged in the store instead (HSET on admit, HDEL on delete; paper 34.2 µs)
  xor         the local log plus the XOR check against the store's commit signals (paper, with a
              synchronous delete request: 7.9 µs; ours is not acknowledged)
Each repetition runs the same trace with no metadata right before (`none`), on the same deployment.
The root's time per packet is its CPU time (getrusage) plus the time its input waited for a clock
write's acknowledgement, over the packets sent; overhead_us is the variant's minus the base's. (A
wall-clock measure at the highest rate was tried first: on two cores the saturated root, NAT and
sink starve the redis-server, and acknowledgements took milliseconds -- contention, not metadata.)
The log is larger than the trace (`--log-max`), so no variant waits for deletes while sending.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from nfvlab.chc import dag, dagrun, traces
from nfvlab.chc.compile import compile_chain
from nfvlab.chc.driver import ChcDriver
from nfvlab.chc.exp_nf_perf import Strict
from nfvlab.chc.trace_setup import TraceDeployment, trace_deployment
from nfvlab.experiments.registry import ExperimentKind

REPO = Path(__file__).resolve().parents[3]
CHAIN = REPO / "experiments" / "chains" / "nat.yaml"
Variant = Literal["none", "clock-1", "clock-10", "clock-100", "log-local", "log-store", "xor"]


def root_args(variant: str, log_max: int) -> tuple[str, ...]:
    """chc-root options for a variant (dagrun adds --store)."""
    if variant == "none":
        return ()
    if variant.startswith("clock-"):
        return ("--persist-clock", variant.split("-")[1])
    log = "store" if variant == "log-store" else "local"
    return ("--deletes", "--log", log, "--log-max", str(log_max), *(("--xor-check",) if variant == "xor" else ()))


class TraceParams(Strict):
    connections: int = Field(400, ge=1)
    packets_per_connection: int = Field(20, ge=4)
    median_size: int = Field(368, ge=64, le=1514)
    seed: int = 1


class MetadataParams(Strict):
    variant: Variant
    rate_pps: int = Field(10000, ge=100, description="the root's replay rate (below what the chain carries)")


class Params(Strict):
    trace: TraceParams = TraceParams()
    metadata: MetadataParams


METRICS = ("overhead_us", "per_packet_us", "base_per_packet_us", "packets", "delivered_frac", "clock_waits",
           "base_delivered_frac", "lease_wait_us")


def topology_key(p: Params) -> tuple:
    return tuple(sorted(p.trace.model_dump().items()))


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[TraceDeployment]:
        work = self.work_dir("metadata", topology_key(p))
        spec = traces.spec_from_params(p.trace)
        with trace_deployment(work, spec) as s:
            yield s

    def _run(self, s: TraceDeployment, variant: str, rate_pps: int) -> dagrun.ChainRunResult:
        s.flush_stores()
        return dagrun.run_chain(s.dep, self.bin_dir, compile_chain(dag.load_chain(CHAIN)), s.pcap,
                                store_addresses=s.store_addresses, rate_pps=rate_pps, tag="meta", timeout_s=300,
                                root_args=root_args(variant, 2 * s.packets))

    def measure(self, s: TraceDeployment, p: Params, raw: Path) -> dict[str, Any]:
        rate = p.metadata.rate_pps
        base, run = self._run(s, "none", rate), self._run(s, p.metadata.variant, rate)

        def per_packet(r: dagrun.ChainRunResult) -> float:
            busy = float(r.root["cpu_seconds"]) + float(r.root["lease_wait_seconds"])
            return busy * 1e6 / max(1, int(r.root["sent"]))

        raw.mkdir(parents=True, exist_ok=True)
        (raw / "root.json").write_text(f'{{"base": {base.root}, "run": {run.root}}}\n'.replace("'", '"'))
        return {"overhead_us": per_packet(run) - per_packet(base), "per_packet_us": per_packet(run),
                "base_per_packet_us": per_packet(base), "packets": run.root["sent"],
                "delivered_frac": run.sink["packets"] / max(1, run.root["sent"]),
                "base_delivered_frac": base.sink["packets"] / max(1, base.root["sent"]),
                "clock_waits": run.root.get("clock_waits", 0),
                "lease_wait_us": float(run.root["lease_wait_seconds"]) * 1e6 / max(1, int(run.root["sent"]))}


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="chc-metadata",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
)
