"""Experiment kinds: each kind is a typed parameter model plus a driver that runs one point.

Specs name a kind; the spec loader validates parameters, sweep axes and metrics against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from pydantic import BaseModel

# kind name -> "module:attribute" of its ExperimentKind, imported on first use.
_KINDS: dict[str, str] = {
    "iron-interference": "nfvlab.experiments.iron_interference:KIND",
    "iron-cpu-cap": "nfvlab.experiments.iron_cpu_cap:KIND",
    "iron-throughput": "nfvlab.experiments.iron_throughput:KIND",
    "iron-packet-cost": "nfvlab.experiments.iron_packet_cost:KIND",
    "iron-overhead": "nfvlab.experiments.iron_overhead:KIND",
    "iron-mapreduce": "nfvlab.experiments.iron_mapreduce:KIND",
    "statealyzr": "nfvlab.statealyzr.experiment:KIND",
    "chc-nf-perf": "nfvlab.chc.exp_nf_perf:KIND",
    "chc-store-throughput": "nfvlab.chc.exp_store:KIND",
    "chc-chain": "nfvlab.chc.exp_chain:KIND",
    "chc-ordering": "nfvlab.chc.exp_ordering:KIND",
    "chc-metadata": "nfvlab.chc.exp_metadata:KIND",
    "chc-availability": "nfvlab.chc.exp_availability:KIND",
    "chc-shared-state": "nfvlab.chc.exp_shared_state:KIND",
    "chc-nf-recovery": "nfvlab.chc.exp_recovery:KIND",
    "chc-straggler": "nfvlab.chc.exp_straggler:KIND",
    "chc-move": "nfvlab.chc.exp_move:KIND",
    "chc-correctness": "nfvlab.chc.exp_correctness:KIND",
    "statealyzr-transfer": "nfvlab.statealyzr.transfer_experiment:KIND",
}


@dataclass(frozen=True)
class ExperimentKind:
    name: str
    params_model: type[BaseModel]
    metrics: tuple[str, ...]
    # Builds the driver that sets up a testbed for a group of points and measures repetitions.
    driver_factory: Callable[..., Any]
    # Points with equal topology keys share one testbed setup (the runner orders them together).
    topology_key: Callable[[BaseModel], tuple]
    # Points for which this returns True use Iron's fitted calibration (nfvlab.iron.calibration): the
    # runner makes sure it is current before measuring them and stamps their rows with it.
    uses_calibration: Callable[[BaseModel], bool] | None = None

    def parameter_names(self) -> list[str]:
        """Dotted names of every leaf parameter, e.g. 'topology.containers_per_core'."""
        names = []
        for section, info in self.params_model.model_fields.items():
            sub = info.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                names += [f"{section}.{leaf}" for leaf in sub.model_fields]
            else:
                names.append(section)
        return names


def known_kinds() -> list[str]:
    return list(_KINDS)


def driver_module(name: str) -> str:
    """The module that defines a kind (its driver): the root of the kind's code_hash (nfvlab.stamps)."""
    return _KINDS[name].split(":")[0]


def get_kind(name: str) -> ExperimentKind:
    module, attr = _KINDS[name].split(":")
    return getattr(import_module(module), attr)
