"""Experiment kind `statealyzr-transfer` (``nfvlab run experiments/statealyzr-transfer.yaml``): a
point is one middlebox; its measurement is one primary/hot-standby state-transfer study
(transfer.py), whose per-packet rows and figures go to the point's raw folder."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nfvlab.experiments.registry import ExperimentKind

METRICS = ("model_i_bytes_mean", "model_ii_bytes_mean", "model_iii_bytes_mean", "i_vs_ii_reduction_x",
           "ii_vs_iii_reduction_x", "marked_whole_bytes_mean",
           "logs_equal_fraction", "control_differs_fraction", "switch_points", "instr_per_packet_us",
           "plain_per_packet_us", "transferred_variables")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransferParams(Strict):
    middlebox: str = Field(description="ground-truth middlebox (transfer.TRANSFER_GT) or corpus recipe with a "
                                       "dynamic: section (transfer.TRANSFER_CORPUS)")
    packets: int = Field(300, ge=20, description="trace length")
    cost_packets: int = Field(100000, ge=1000, description="trace length for the instrumentation cost")


class Params(Strict):
    transfer: TransferParams


class Driver:
    def __init__(self, build_dir: Path):
        self.workdir = Path(build_dir) / "statealyzr-transfer-work"
        self.recipe_workdir = Path(build_dir) / "statealyzr-work"      # shared with the table specs

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[None]:
        yield None

    def measure(self, _topo: Any, p: Params, raw: Path) -> dict[str, Any]:
        from .transfer import run_transfer, summarize, write_study
        raw.mkdir(parents=True, exist_ok=True)
        r = run_transfer(p.transfer.middlebox, self.workdir, p.transfer.packets,
                         cost_packets=p.transfer.cost_packets, recipe_workdir=self.recipe_workdir)
        write_study([r], raw)
        (raw / "transfer.json").write_text(json.dumps({k: v for k, v in r.items() if k != "rows"}, indent=1))
        return summarize(r)


def topology_key(p: Params) -> tuple:
    return ("none",)


KIND = ExperimentKind(name="statealyzr-transfer", params_model=Params, metrics=METRICS,
                      driver_factory=Driver, topology_key=topology_key)
