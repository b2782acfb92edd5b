"""Experiment kinds for the harness runner (``nfvlab run experiments/statealyzr-*.yaml``).

A point is one middlebox (a recipe or a ground-truth name); its "measurement" is one StateAlyzr run
(build cached). The kinds still have to be listed in ``nfvlab/experiments/registry.py``:

    "statealyzr": "nfvlab.statealyzr.experiment:KIND",

its specs are experiments/statealyzr-*.yaml.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nfvlab.experiments.registry import ExperimentKind


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CorpusParams(Strict):
    middlebox: str = Field(description="recipe name (haproxy, openvpn, p0f, tcpdump) or ground-truth name")


class AnalysisParams(Strict):
    output_scope: Literal["program", "pkt_procs"] = "program"
    flowspace_budget_s: float = Field(600.0, gt=0)


class Params(Strict):
    corpus: CorpusParams
    analysis: AnalysisParams = AnalysisParams()


METRICS = ("all", "persistent", "top_level", "updateable", "keyed", "pkt_output", "log_output",
           "top_level_reduction_pct", "updateable_reduction_pct", "max_flowspace_fields",
           "keyed_1_field", "keyed_2_fields", "keyed_3_fields", "keyed_4_fields", "keyed_5_fields",
           "keyed_6plus_fields", "ir_compile_s", "build_s", "analysis_s", "peak_rss_mb", "instructions",
           "functions", "instrumentation_inserted", "instrumentation_pruned")


class Driver:
    def __init__(self, build_dir: Path):
        self.workdir = Path(build_dir) / "statealyzr-work"

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[None]:
        yield None

    def measure(self, _topo: Any, p: Params, raw: Path) -> dict[str, Any]:
        from .analysis import Config
        from .cli import resolve_and_analyze
        raw.mkdir(parents=True, exist_ok=True)
        cfg = Config(output_scope=p.analysis.output_scope, flowspace_budget_s=p.analysis.flowspace_budget_s)
        res = resolve_and_analyze(p.corpus.middlebox, self.workdir, cfg, log=lambda *_: None)
        j = res.to_json()
        (raw / "statealyzr.json").write_text(json.dumps(j, indent=1))
        c = res.counts
        nf = [len(v.flowspace) for v in res.variables if "keyed" in v.classes]
        m = {k: c[k] for k in ("all", "persistent", "top_level", "updateable", "keyed", "pkt_output",
                               "log_output")}
        m["top_level_reduction_pct"] = 100 * (1 - c["top_level"] / c["persistent"]) if c["persistent"] else None
        m["updateable_reduction_pct"] = 100 * (1 - c["updateable"] / c["top_level"]) if c["top_level"] else None
        m["max_flowspace_fields"] = max(nf, default=0)
        for k, name in ((1, "keyed_1_field"), (2, "keyed_2_fields"), (3, "keyed_3_fields"),
                        (4, "keyed_4_fields"), (5, "keyed_5_fields")):
            m[name] = sum(1 for n in nf if n == k)
        m["keyed_6plus_fields"] = sum(1 for n in nf if n >= 6)
        t = res.timings
        m.update(ir_compile_s=t.get("ir_compile_s", t.get("compile")), build_s=t.get("build_s"),
                 analysis_s=t.get("total"), peak_rss_mb=res.stats.get("peak_rss_mb"),
                 instructions=res.stats.get("instructions"), functions=res.stats.get("functions"),
                 instrumentation_inserted=(res.instrumentation or {}).get("n_inserted"),
                 instrumentation_pruned=(res.instrumentation or {}).get("n_pruned"))
        return m


def topology_key(p: Params) -> tuple:
    return ("none",)


KIND = ExperimentKind(name="statealyzr", params_model=Params, metrics=METRICS,
                      driver_factory=Driver, topology_key=topology_key)
