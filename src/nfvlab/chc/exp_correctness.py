"""Experiment kind `chc-correctness`: randomized fault injection on a CHC chain, each case checked
for chain output equivalence against the ideal single-instance run (nfvlab.chc.coe).

A point is a block of seeds (listed in the spec, so every case is named) under one protocol variant:
`on` (everything of issue 12 that is built), or a negative control with one duplicate suppression
switched off (`store-dedup-off`: the store's clock log; `sink-dedup-off`: the sink's by-clock
suppression; `root-clock-off`: the root's persisted clock, so a failover root starts its clock
again at 1), which must make the checker fail. The dedup controls draw their faults from
`fault.negative_kinds` (faults that certainly cause duplicates), the clock control only root kills;
each runs only the block's first `fault.negative_cases` seeds. `root-clock-off` also deletes logged
packets on the delete request alone: with the XOR check on, the reused clocks' updates are suppressed,
no commit signal comes, and the chain stalls instead of finishing wrong -- the checker is to judge it.
`root-failover` runs the block's first `fault.negative_cases` seeds as root kills with everything on
(they must pass) and measures what the failover root spends on recovering: its clock read from the
store (§3.6.3: "< 41.2 µs") and the whole recovery (connect, read, durable restart point). The per-case outcomes (fault,
verdict, numbers, what the injector did when) are in the repetition's raw directory.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nfvlab.chc.driver import ChcDriver
from nfvlab.chc.fault_kinds import FAULT_KINDS, SUITE_KINDS
from nfvlab.experiments.registry import ExperimentKind


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChainParams(Strict):
    nf: Literal["nat"] = "nat"
    model: Literal["EO", "EO+C", "EO+C+NA"] = "EO+C+NA"
    instances: int = Field(1, ge=1, le=1)  # the checker is exact for one instance of the NAT (docs/chc.md)


class TraceParams(Strict):
    connections: int = Field(40, ge=1)
    packets_per_connection: int = Field(12, ge=4)
    seed: int = 7
    rate_pps: int = Field(2000, ge=100)


def _kinds(text: str) -> str:
    bad = [k for k in text.split(",") if k not in FAULT_KINDS or k == "none"]
    if bad:
        raise ValueError(f"unknown fault kinds {bad}; known: {FAULT_KINDS[1:]}")
    return text


class FaultParams(Strict):
    seeds: str  # "1-10", "11-20,31"
    kinds: str = ",".join(SUITE_KINDS)
    negative_kinds: str = "kill-nf-slow-store"
    negative_cases: int = Field(3, ge=1)  # negative controls run the first this many seeds of the block

    _check_kinds = field_validator("kinds", "negative_kinds")(_kinds)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: str) -> str:
        from nfvlab.chc.coe_run import parse_seeds

        try:
            if not parse_seeds(v):
                raise ValueError
        except ValueError as e:
            raise ValueError(f"seeds must be a list of numbers and ranges like 1-10,31, got {v!r}") from e
        return v


class ProtocolParams(Strict):
    variant: Literal["on", "store-dedup-off", "sink-dedup-off", "root-clock-off", "root-failover"] = "on"
    log: Literal["local", "store"] = "local"


class Params(Strict):
    chain: ChainParams = ChainParams()
    trace: TraceParams = TraceParams()
    fault: FaultParams
    protocol: ProtocolParams = ProtocolParams()


METRICS = ("cases", "passed", "pass_fraction", "duplicates", "state_diffs", "missing", "missing_explained",
           "store_repeats", "sink_suppressed", "replayed", "root_kills", "root_clock_read_us", "root_recovery_us")


def topology_key(p: Params) -> tuple:
    return (p.chain.model_dump_json(), p.trace.model_dump_json())


@dataclass
class Setup:
    session: Any  # coe_run.Session


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[Setup]:
        from nfvlab.chc import coe_run
        from nfvlab.chc.deploy import LocalDeployment

        if os.geteuid() != 0:
            raise RuntimeError("chc-correctness needs root (namespaces, cgroups)")
        work = self.work_dir("correctness")
        case = coe_run.Case(nf=p.chain.nf, model=p.chain.model, instances=p.chain.instances,
                            connections=p.trace.connections, packets_per_connection=p.trace.packets_per_connection,
                            trace_seed=p.trace.seed, rate_pps=p.trace.rate_pps)
        with LocalDeployment(work / "deployment") as dep:
            yield Setup(coe_run.Session(dep, self.bin_dir, case, work))

    def measure(self, s: Setup, p: Params, raw: Path) -> dict[str, Any]:
        from nfvlab.chc import coe_run, faults

        v = p.protocol.variant
        clock_off = v == "root-clock-off"
        options = faults.Options(store_dedup=v != "store-dedup-off", sink_dedup=v != "sink-dedup-off",
                                 log_mode=p.protocol.log, persist_clock=0 if clock_off else 10, xor_check=not clock_off)
        if v in ("root-clock-off", "root-failover"):
            kinds: tuple[str, ...] = ("kill-root",)
        else:
            kinds = tuple((p.fault.kinds if v == "on" else p.fault.negative_kinds).split(","))
        seeds = coe_run.parse_seeds(p.fault.seeds)
        if v != "on":
            seeds = seeds[:p.fault.negative_cases]
        outcomes = [s.session.seed(seed, options, kinds) for seed in seeds]
        raw.mkdir(parents=True, exist_ok=True)
        coe_run.write_outcomes(raw / "outcomes.jsonl", outcomes)
        (raw / "summary.txt").write_text("\n".join(o.line() for o in outcomes) + "\n")
        total = {k: sum(o.verdict.numbers.get(k, 0) for o in outcomes)
                 for k in ("duplicates", "state_diff", "missing", "missing_explained", "store_repeats",
                           "sink_suppressed", "replayed")}
        passed = sum(o.verdict.ok for o in outcomes)
        recovery = {k: [o.verdict.numbers[k] for o in outcomes if k in o.verdict.numbers]
                    for k in ("root_clock_read_us", "root_recovery_us")}
        return {"root_kills": sum(o.fault.kind == "kill-root" for o in outcomes),
                **{k: statistics.median(vs) if vs else math.nan for k, vs in recovery.items()},
                "cases": len(outcomes), "passed": passed, "pass_fraction": passed / len(outcomes),
                "duplicates": total["duplicates"], "state_diffs": total["state_diff"], "missing": total["missing"],
                "missing_explained": total["missing_explained"], "store_repeats": total["store_repeats"],
                "sink_suppressed": total["sink_suppressed"], "replayed": total["replayed"]}


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="chc-correctness",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
)
