"""Experiment kind for the harness runner (``nfvlab run experiments/statealyzr-*.yaml``).

A point is one middlebox (a recipe or a ground-truth name); its measurement is one StateAlyzr run.
The run happens in a child process (``python -m nfvlab.statealyzr.experiment``) so that its peak
memory is its own and the runner does not keep gigabytes of analysis state. The three specs
(Table 4.13, Fig 4.14, Table 4.17) report different metrics of the same analysis, so the child
caches the metrics of a run under the work directory, keyed by the middlebox, the analysed IR, the
analysis parameters and the analysis code: the study analyses each middlebox once.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
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
    flowspace_budget_s: float = Field(1200.0, gt=0)


class Params(Strict):
    corpus: CorpusParams
    analysis: AnalysisParams = AnalysisParams()


METRICS = ("all", "persistent", "top_level", "updateable", "keyed", "pkt_output", "log_output",
           "persistent_pct_of_all", "top_level_reduction_pct", "updateable_reduction_pct",
           "pkt_output_share_pct", "log_output_share_pct", "missed_labels",
           "max_flowspace_fields", "min_flowspace_fields", "distinct_flowspaces", "flowspace_not_computed",
           "keyed_1_field", "keyed_2_fields", "keyed_3_fields", "keyed_4_fields", "keyed_5_fields",
           "keyed_6plus_fields", "ir_compile_s", "build_s", "analysis_s", "peak_rss_mb", "instructions",
           "functions", "instrumentation_inserted", "instrumentation_pruned", "cached",
           "flowspace_mismatches", "forbidden_flagged", "label_precision_min", "label_recall_min",
           *(f"{c}_{pr}" for c in ("persistent", "top_level", "updateable", "keyed", "pkt_output",
                                   "log_output", "output_impacting") for pr in ("precision", "recall")))


def label_metrics(cmp: dict) -> dict[str, Any]:
    """Ground truth only: soundness and precision/recall per class against the hand labels
    (corpus.compare). A class the program has no positive of, and flags none of, gives None."""
    m: dict[str, Any] = {"flowspace_mismatches": len(cmp["flowspace_mismatch"]),
                         "forbidden_flagged": len(cmp["forbidden_flagged"])}
    for c, pc in cmp["per_class"].items():
        m[f"{c}_precision"], m[f"{c}_recall"] = pc["precision"], pc["recall"]
    ps = [pc["precision"] for pc in cmp["per_class"].values() if pc["precision"] is not None]
    rs = [pc["recall"] for pc in cmp["per_class"].values() if pc["recall"] is not None]
    m["label_precision_min"] = min(ps, default=None)
    m["label_recall_min"] = min(rs, default=None)
    return m


def _pct(a: float | None, b: float | None) -> float | None:
    return round(100.0 * a / b, 1) if a is not None and b else None


def metrics_of(res_json: dict, missed: int | None = None) -> dict[str, Any]:
    """The spec metrics of one analysis result (its JSON form)."""
    c = res_json["counts"]
    keyed = [v for v in res_json["variables"] if "keyed" in v["classes"]]
    nf = [len(v["flowspace"]) for v in keyed]
    m: dict[str, Any] = {k: c[k] for k in ("all", "persistent", "top_level", "updateable", "keyed",
                                            "pkt_output", "log_output")}
    m["persistent_pct_of_all"] = _pct(c["persistent"], c["all"])
    m["top_level_reduction_pct"] = round(100 - _pct(c["top_level"], c["persistent"]), 1) if c["persistent"] else None
    m["updateable_reduction_pct"] = round(100 - _pct(c["updateable"], c["top_level"]), 1) if c["top_level"] else None
    m["pkt_output_share_pct"] = _pct(c["pkt_output"], c["updateable"])
    m["log_output_share_pct"] = _pct(c["log_output"], c["updateable"])
    m["missed_labels"] = missed
    m["max_flowspace_fields"] = max(nf, default=0)
    m["min_flowspace_fields"] = min(nf, default=0)
    m["distinct_flowspaces"] = len({tuple(sorted(v["flowspace"])) for v in keyed})
    m["flowspace_not_computed"] = len(res_json["stats"].get("flowspace_not_computed") or [])
    for k, name in ((1, "keyed_1_field"), (2, "keyed_2_fields"), (3, "keyed_3_fields"),
                    (4, "keyed_4_fields"), (5, "keyed_5_fields")):
        m[name] = sum(1 for n in nf if n == k)
    m["keyed_6plus_fields"] = sum(1 for n in nf if n >= 6)
    t, st, ins = res_json["timings_s"], res_json["stats"], res_json.get("instrumentation") or {}
    m.update(ir_compile_s=t.get("ir_compile_s", t.get("compile")), build_s=t.get("build_s"),
             analysis_s=t.get("total"), peak_rss_mb=round(st["peak_rss_mb"], 1) if st.get("peak_rss_mb") else None,
             instructions=st.get("instructions"), functions=st.get("functions"),
             instrumentation_inserted=ins.get("n_inserted"), instrumentation_pruned=ins.get("n_pruned"))
    return m


def _code_hash() -> str:
    h = hashlib.sha256()
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _file_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def compact(res_json: dict) -> dict:
    """The result without the per-site instrumentation lists (hundreds of MB for HAProxy);
    their counts stay."""
    ins = res_json.get("instrumentation")
    if ins:
        res_json = dict(res_json, instrumentation={k: v for k, v in ins.items() if k not in ("inserted", "pruned")})
    return res_json


def child_main(argv: list[str] | None = None) -> int:
    """Build (cached), analyse (cached) and write metrics.json + statealyzr.json into --out."""
    ap = argparse.ArgumentParser(prog="python -m nfvlab.statealyzr.experiment")
    ap.add_argument("middlebox")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--output-scope", default="program")
    ap.add_argument("--flowspace-budget-s", type=float, default=1200.0)
    a = ap.parse_args(argv)
    from . import analyze_ll, corpus
    from .analysis import Config
    workdir, out = Path(a.workdir).resolve(), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = Config(output_scope=a.output_scope, flowspace_budget_s=a.flowspace_budget_s)
    log = lambda m: print(m, flush=True)  # noqa: E731
    gt = corpus.load_ground_truth(a.middlebox) if a.middlebox in corpus.ground_truths() else None
    build_t: dict[str, Any] = {}
    if gt is None:
        r = corpus.load_recipe(a.middlebox)
        corpus.recipe_config(r, cfg)
        ll, build_t = corpus.build_ir(r, workdir, log)
        inputs = [ll]
    else:
        inputs = list(gt.sources) + [corpus.GT_DIR / f"{gt.name}.yaml"]
    key = "-".join([a.middlebox, _file_hash(inputs), _code_hash(),
                    hashlib.sha256(repr(sorted(vars(cfg).items())).encode()).hexdigest()[:8]])
    cache = workdir / "analysis-cache" / f"{key}.json"
    if cache.exists():
        log(f"statealyzr: {a.middlebox}: analysis cached ({cache.name})")
        entry = json.loads(cache.read_text())
        entry["metrics"]["cached"] = True
    else:
        log(f"statealyzr: analysing {a.middlebox}")
        if gt is None:
            res = analyze_ll(ll, r.name, cfg)
            res.timings.update({k: v for k, v in build_t.items() if k != "units"})
            res.stats["units"] = build_t.get("units")
            missed, labels = None, {}
        else:
            res = corpus.analyze_ground_truth(gt, cfg)
            cmp = corpus.compare(res, gt)
            missed, labels = len(cmp["missed"]), label_metrics(cmp)
        rj = compact(res.to_json())
        del res
        entry = {"metrics": {**metrics_of(rj, missed), **labels, "cached": False}, "result": rj}
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(entry, f)
        os.replace(tmp, cache)
    with (out / "statealyzr.json").open("w") as f:
        json.dump(entry["result"], f, indent=1)
    (out / "metrics.json").write_text(json.dumps(entry["metrics"], indent=1))
    return 0


class Driver:
    def __init__(self, build_dir: Path):
        self.workdir = Path(build_dir) / "statealyzr-work"

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[None]:
        yield None

    def measure(self, _topo: Any, p: Params, raw: Path) -> dict[str, Any]:
        raw.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "nfvlab.statealyzr.experiment", p.corpus.middlebox,
               "--workdir", str(self.workdir), "--out", str(raw),
               "--output-scope", p.analysis.output_scope,
               "--flowspace-budget-s", str(p.analysis.flowspace_budget_s)]
        with (raw / "analysis.log").open("w") as logf:
            rc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1")).returncode
        if rc != 0:
            tail = (raw / "analysis.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"statealyzr analysis of {p.corpus.middlebox} failed (exit {rc}):\n{tail}")
        m = json.loads((raw / "metrics.json").read_text())
        m["child_wall_s"] = round(time.perf_counter() - t0, 2)
        return m


def topology_key(p: Params) -> tuple:
    return ("none",)


KIND = ExperimentKind(name="statealyzr", params_model=Params, metrics=METRICS,
                      driver_factory=Driver, topology_key=topology_key)


if __name__ == "__main__":
    sys.exit(child_main())
