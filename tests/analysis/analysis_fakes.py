"""Fake results for the analysis tests, written through ResultStore.write_row.

The numbers are synthetic: these tests check the analysis code, not the system.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from nfvlab.plan import expand
from nfvlab.results import ResultStore
from nfvlab.spec import Spec, load_spec

REPO = Path(__file__).resolve().parents[2]
# Frozen copies of four specs, so these tests do not change whenever a shipped spec does.
EXPERIMENTS = Path(__file__).resolve().parent / "specs"
SHIPPED = REPO / "experiments"


def spec_named(name: str) -> Spec:
    return load_spec(EXPERIMENTS / f"{name}.yaml")


def write_spec_rows(root: Path, spec: Spec, metric_fn, scale: str = "quick", repetitions: int | None = None,
                    provenance: bool = True, extra: dict | None = None) -> ResultStore:
    """One row per (point, repetition) of the spec's plan; metric_fn(params, rep) -> metrics dict."""
    from nfvlab.plan import flat_params

    plan = expand(spec, scale, repetitions)
    store = ResultStore(root, spec.name)
    for point in plan.points:
        flat = flat_params(point.params)
        for rep in range(plan.repetitions):
            metrics = metric_fn(flat, rep)
            row = {"spec": spec.name, "scale": scale, "point_index": point.index, **flat,
                   **{m: metrics.get(m, math.nan) for m in spec.metrics},
                   "seconds": 1.0, "finished_at": "2026-01-01T00:00:00+00:00", **(extra or {})}
            write_row_fast(store, point.point_id, rep, row)
    store.rebuild_csv()
    if provenance:
        latest = {"run_id": "1-1", "start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T00:05:00+00:00",
                  "status": "complete", "spec_hash": "abc123", "scale": scale,
                  "git": {"commit": "deadbeef" * 5, "dirty": False}, "kernel": "6.18.0-test",
                  "cpu_model": "Fake CPU @ 3.2GHz", "cores": 2, "cgroup_version": 1,
                  "tools": {"sysbench": "sysbench 1.0.20", "iperf3": None},
                  "packages": {"pandas": "2.x"}}
        (store.dir / "provenance.json").write_text(json.dumps({"spec": spec.name, "latest": latest,
                                                               "runs": [latest]}))
    return store


def write_row_fast(store: ResultStore, point_id: str, rep: int, row: dict) -> None:
    """ResultStore.write_row without rebuilding results.csv after every row (the caller does, once)."""
    record = {"point_id": point_id, "repetition": rep, **row}
    text = json.dumps({k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in record.items()})
    path = store.rows_dir / f"{store.row_key(point_id, rep)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def udp_senders_metrics(p: dict, rep: int) -> dict:
    """Penalty grows with containers per core under a limiter; 1.0 with no limiter."""
    n, rate = p["containers_per_core"], p["core_rate_mbps"]
    penalty = 1.0 if math.isinf(rate) else 1.0 + 0.01 * n + 0.001 * rep
    return {"penalty_factor": penalty, "ksoftirqd_cpu_pct": 10.0 * (penalty - 1) * 10 + rep,
            "achieved_mbps": min(rate, 1500.0), "victim_time_base_s": 1.0, "victim_time_net_s": penalty}


def udp_receivers_metrics(p: dict, rep: int) -> dict:
    rate = p["send_rate_mbps"]
    achieved = 1500.0 if math.isinf(rate) else rate * 0.95 + 3 * rep
    return {"penalty_factor": 1.0 + achieved / 1000 * p["receivers"] / 3, "achieved_mbps": achieved,
            "drops": 10 * rep}

