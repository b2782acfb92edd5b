"""Experiment kind `chc-ordering` (R4, §3.4.2 and §3.6.3): chain-wide ordering by logical clock.

The chain experiments/chains/scrub-trojan.yaml -- three scrubbers, one per service (the root splits
SSH, FTP and IRC over them), then the Trojan detector -- replays a trace with `trojans` Trojan
sequences whose five step packets (SSH SYN, RETR of an HTML, a ZIP and an EXE file, IRC SYN) are
back to back at the input, plus `reordered` hosts doing the same steps in another order (no Trojan).
Workloads (the paper's W1-W3): on 1, 2 or 3 scrubber paths every packet costs a random 50-100 µs;
W0: three paths, none slow (what scheduling alone reorders); `serial`: one scrubber for all three
services, so nothing can reorder (the control: the arrival-order detector must find every Trojan).
The detector judges each host's steps either by logical clock (CHC,
`order: clock`) or by the order packets reach it (`order: arrival`, the baseline without
chain-wide clocks: the paper's OpenNF). Rows: detected / missed Trojans, false alerts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from nfvlab.chc import dag, dagrun, traces
from nfvlab.chc.compile import compile_chain
from nfvlab.chc.driver import ChcDriver
from nfvlab.chc.exp_nf_perf import ModelName, Strict
from nfvlab.chc.trace_setup import TraceDeployment, trace_deployment
from nfvlab.experiments.registry import ExperimentKind

REPO = Path(__file__).resolve().parents[3]
CHAIN = REPO / "experiments" / "chains" / "scrub-trojan.yaml"
# Which scrubber instances are slow (instance 1 carries SSH, 2 FTP, 3 IRC: the `service` scope).
WORKLOADS = {"serial": "", "W0": "", "W1": "1", "W2": "1|2", "W3": "1|2|3"}


class TraceParams(Strict):
    trojans: int = Field(11, ge=1, description="Trojan sequences (the paper: 11 points in the trace)")
    reordered: int = Field(3, ge=0, description="hosts with the same steps in another order")
    connections: int = Field(60, ge=0, description="background TCP connections (ports 80/443/8080)")
    packets_per_connection: int = Field(8, ge=4)
    seed: int = 1


class ChainParams(Strict):
    workload: Literal["serial", "W0", "W1", "W2", "W3"]
    order: Literal["clock", "arrival"]
    delay_us: str = Field("50-100", pattern=r"^\d+-\d+$")
    model: ModelName = "EO+C+NA"
    rate_pps: int = Field(20000, ge=0, description="root replay rate; 0 = as fast as the tunnel takes it")


class Params(Strict):
    trace: TraceParams = TraceParams()
    chain: ChainParams


METRICS = ("detected", "missed", "false_alerts", "trojans", "delayed_packets", "delivered_frac", "packets")


def topology_key(p: Params) -> tuple:
    return tuple(sorted(p.trace.model_dump().items()))


def logical_chain(p: ChainParams) -> dag.LogicalChain:
    """The R4 chain with this point's slow scrubbers, delay and detector order."""
    chain = dag.load_chain(CHAIN)
    v = {k: x.model_copy(deep=True) for k, x in chain.vertices.items()}
    v["scrub"].config.update({"delay_us": p.delay_us, "delayed": WORKLOADS[p.workload] or "0"})
    if p.workload == "serial":
        v["scrub"].parallelism = 1
    v["trojan"].config["order"] = p.order
    return chain.model_copy(update={"vertices": v}).with_model(p.model)


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[TraceDeployment]:
        work = self.work_dir("ordering", topology_key(p))
        spec = traces.spec_from_params(p.trace, reordered_trojans=p.trace.reordered, trojan_burst=True)
        with trace_deployment(work, spec) as s:
            yield s

    def measure(self, s: TraceDeployment, p: Params, raw: Path) -> dict[str, Any]:
        s.flush_stores()
        chain = logical_chain(p.chain)
        res = dagrun.run_chain(s.dep, self.bin_dir, compile_chain(chain), s.info.path,
                               store_addresses=s.store_addresses, rate_pps=p.chain.rate_pps, tag="order",
                               timeout_s=300)
        alerts = {h for r in res.reports("trojan") for h in r.get("alerts", "-").split(",") if h != "-"}
        trojans = set(s.info.trojan_hosts)
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "chain.yaml").write_text(yaml.safe_dump(chain.model_dump(by_alias=True), sort_keys=False))
        (raw / "alerts.txt").write_text("\n".join(sorted(alerts)) + "\n")
        delayed = sum(int(r.get("delayed_packets", 0)) for r in res.reports("scrub"))
        return {"detected": len(alerts & trojans), "missed": len(trojans - alerts),
                "false_alerts": len(alerts - trojans), "trojans": len(trojans), "delayed_packets": delayed,
                "delivered_frac": res.sink["packets"] / max(1, res.root["sent"]), "packets": res.root["sent"]}


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="chc-ordering",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
)
