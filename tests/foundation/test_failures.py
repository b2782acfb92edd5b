"""Failures are errors, not rows: a repetition whose Iron controller died, whose driver lost a metric,
or whose flood moved (almost) nothing writes no row; the run goes on with the other points, records
the failure (provenance, failures.json) and fails at the end. Real runs on nfvlab-tr-* names."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from nfvlab.experiments import iron_interference
from nfvlab.failures import FLOOR_MBPS, PointFailed, check_flood, missing_metrics
from nfvlab.iron.controller import Controller
from nfvlab.runner import RunFailed, run

from .conftest import needs_root, run_when_free, tiny_spec

pytestmark = [needs_root]


def _iron_spec(name: str) -> dict:
    spec = tiny_spec(name=name, sweep={"iron.mode": ["off", "ebpf"]})
    spec["params"]["workload"] |= {"victim_events": 600, "warmup_s": 0.2}
    spec["params"]["iron"] = {"drop": "xdp"}
    return spec


def _go(path, tmp_path):
    return run_when_free(run, path, scale=None, results_root=tmp_path / "results", build_dir=tmp_path / "build")


def test_a_dead_controller_fails_the_point_and_the_run_goes_on(tr_names, write_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("NFVLAB_IRON_IRQ_EXTRA_NS", "0")  # an explicit calibration: this checks failures only

    def crash(self, ct, now):
        raise RuntimeError("injected controller crash")

    monkeypatch.setattr(Controller, "_window_open", crash)
    path = write_spec(_iron_spec("tr-controller"))
    with pytest.raises(RunFailed, match="controller_error") as e:
        _go(path, tmp_path)
    summary = e.value.summary
    assert summary.done == 1 and len(summary.failures) == 1  # the Iron-off point still ran
    store = tmp_path / "results" / "tr-controller"
    df = pd.read_csv(store / "results.csv")
    assert list(df["mode"]) == ["off"]  # no row for the point whose controller died
    failures = json.loads((store / "failures.json").read_text())
    assert [f["reason"] for f in failures] == ["controller_error"]
    assert "injected controller crash" in failures[0]["error"] and failures[0]["point"] == "mode=ebpf"
    latest = json.loads((store / "provenance.json").read_text())["latest"]
    assert latest["status"] == "failed" and latest["failures"][0]["reason"] == "controller_error"

    monkeypatch.undo()  # the controller works again: the failed point is measured on the next run
    monkeypatch.setenv("NFVLAB_IRON_IRQ_EXTRA_NS", "0")
    again = _go(path, tmp_path)
    assert (again.done, again.skipped) == (1, 1)
    df = pd.read_csv(store / "results.csv").set_index("mode")
    assert df.loc["ebpf", "calibration_source"] == "env" and df.loc["ebpf", "calibration_irq_extra_ns"] == 0
    assert pd.isna(df.loc["off", "calibration_id"])  # Iron off: no fitted input stamped


def test_a_missing_metric_is_a_failure_not_a_row(tr_names, write_spec, tmp_path, monkeypatch):
    measure = iron_interference.Driver.measure

    def lossy(self, topo, p, raw):
        return {k: v for k, v in measure(self, topo, p, raw).items() if k != "achieved_mbps"}

    monkeypatch.setattr(iron_interference.Driver, "measure", lossy)
    spec = tiny_spec(name="tr-missing")
    spec["params"]["workload"] |= {"victim_events": 200, "warmup_s": 0.1}
    with pytest.raises(RunFailed, match="metric_missing.*achieved_mbps"):
        _go(write_spec(spec), tmp_path)
    assert not list((tmp_path / "results" / "tr-missing" / "rows").glob("*.json"))


def test_flood_thresholds():
    check_flood(40.0, 300.0)  # >= 10 % of a paced rate
    check_flood(FLOOR_MBPS, math.inf)
    for offered, asked in ((29.0, 300.0), (0.0, math.inf), (math.nan, 1000.0), (FLOOR_MBPS / 2, math.inf)):
        with pytest.raises(PointFailed, match="flood_too_small"):
            check_flood(offered, asked)
    assert missing_metrics({"a": 1.0, "b": math.nan, "c": None}, ["a", "b", "c", "d"]) == ["c", "d"]


def test_a_failed_repetition_is_retried_once_on_a_fresh_testbed(tr_names, write_spec, tmp_path, monkeypatch):
    """A failure of the moment costs one more try, not the study: the retry writes the row, the failed
    attempt stays in failures.json (marked recovered), the run is complete. ``retries=0`` fails it."""
    measure, calls = iron_interference.Driver.measure, []

    def flaky(self, topo, p, raw):
        calls.append(topo.victim.netns)
        if len(calls) == 1:
            raise PointFailed("injected", "first attempt fails")
        return measure(self, topo, p, raw)

    monkeypatch.setattr(iron_interference.Driver, "measure", flaky)
    spec = tiny_spec(name="tr-retry")
    spec["params"]["workload"] |= {"victim_events": 200, "warmup_s": 0.1}
    path = write_spec(spec)
    summary = _go(path, tmp_path)
    assert (summary.done, summary.failures, len(calls)) == (1, [], 2)
    store = tmp_path / "results" / "tr-retry"
    assert len(pd.read_csv(store / "results.csv")) == 1
    [f] = json.loads((store / "failures.json").read_text())
    assert (f["reason"], f["attempt"], f["retried"], f["recovered"]) == ("injected", 1, True, True)
    latest = json.loads((store / "provenance.json").read_text())["latest"]
    assert latest["status"] == "complete" and latest["recovered"][0]["reason"] == "injected"

    calls.clear()
    (store / "results.csv").unlink()
    for row in (store / "rows").glob("*.json"):
        row.unlink()
    with pytest.raises(RunFailed, match="injected"):
        run_when_free(run, path, scale=None, results_root=tmp_path / "results", build_dir=tmp_path / "build",
                      retries=0)
    assert len(calls) == 1
