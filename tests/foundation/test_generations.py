"""Stamps and generations on real runs: every row carries its stamps; a resumed run reuses a row only
when its stamps are current (an edited spec, changed code or testbed config measure again, and say
so); --keep-stale reuses and records it; raw output is keyed like the rows; provenance keeps every run."""

from __future__ import annotations

import json

import pandas as pd

from nfvlab import stamps
from nfvlab.plan import expand
from nfvlab.runner import point_slug, run
from nfvlab.spec import load_spec

from .conftest import REPO, needs_root, run_when_free, tiny_spec

pytestmark = [needs_root]

STAMP_COLUMNS = ["run_id", "git_commit", "git_dirty", "code_hash", "testbed_hash", "scale"]


def _spec(**workload) -> dict:
    spec = tiny_spec(name="tr-generations")
    spec["params"]["workload"] |= {"victim_events": 300, "warmup_s": 0.2, **workload}
    return spec


def test_stale_rows_are_measured_again_and_keep_stale_is_recorded(tr_names, write_spec, tmp_path, monkeypatch):
    results, build = tmp_path / "results", tmp_path / "build"

    def go(path, **kw):
        return run_when_free(run, path, scale=None, results_root=results, build_dir=build, **kw)

    path = write_spec(_spec())
    first = go(path)
    assert first.done == 1
    store = results / "tr-generations"
    row = pd.read_csv(store / "results.csv").iloc[0]
    for col in STAMP_COLUMNS:
        assert col in row.index, col
    assert row["code_hash"] == stamps.code_hash("iron-interference")
    assert row["testbed_hash"] == stamps.testbed_hash()
    assert len(str(row["git_commit"])) == 40
    assert "calibration_id" not in row.index or pd.isna(row["calibration_id"])  # Iron off: no fitted input

    # an edited spec parameter: the old row is not reused
    edited = write_spec(_spec(victim_events=350), name="edited.yaml")
    again = go(edited)
    assert (again.done, again.skipped) == (1, 0)
    df = pd.read_csv(store / "results.csv")
    assert sorted(df["victim_events"]) == [300, 350]
    # raw output is keyed like the rows: the two points' folders differ, the first one is intact
    old_pt, new_pt = expand(load_spec(path)).points[0], expand(load_spec(edited)).points[0]
    assert point_slug(old_pt) != point_slug(new_pt)
    assert (store / "raw" / point_slug(old_pt) / "r0" / "baseline" / "victim.out").read_text()
    assert (store / "raw" / point_slug(new_pt) / "r0" / "network" / "victim.out").read_text()

    # the code behind the kind changed: the stored row is stale, measured again
    monkeypatch.setattr(stamps, "code_hash", lambda kind: "feedfacefeedface")
    regen = go(edited)
    assert (regen.done, regen.stale, regen.skipped) == (1, 1, 0)
    rows = [json.loads(f.read_text()) for f in (store / "rows").glob("*.json")]
    current = [r for r in rows if r["victim_events"] == 350]
    assert current[0]["code_hash"] == "feedfacefeedface"

    # the testbed config changed, but --keep-stale: the row is reused and says so
    monkeypatch.setattr(stamps, "testbed_hash", lambda config_path=None: "0123456789abcdef")
    kept = go(edited, keep_stale=True)
    assert (kept.done, kept.kept_stale, kept.skipped) == (0, 1, 1)
    prov = json.loads((store / "provenance.json").read_text())
    runs = [r for r in prov["runs"] if r["status"] != "testbed_busy"]  # (retries while others held the lock)
    assert [r["status"] for r in runs] == ["complete"] * 4  # every run, not only the latest
    latest = prov["latest"]
    assert latest["keep_stale"] is True and latest["stale"][0]["reasons"][0].startswith("testbed_hash:")
    row = next(json.loads(f.read_text()) for f in (store / "rows").glob("*.json")
               if json.loads(f.read_text())["victim_events"] == 350)
    assert row["kept_stale_by"] == latest["run_id"] and "testbed_hash" in row["kept_stale_reasons"]
    assert "kept_stale_by" in pd.read_csv(store / "results.csv").columns


def test_code_hash_covers_driver_iron_workloads_and_testbed_sources():
    files = {str(f.relative_to(stamps.PACKAGE_DIR)) for f in stamps.code_files("nfvlab.experiments.iron_interference")}
    for must in ("experiments/iron_interference.py", "iron/controller.py", "iron/runtime.py", "iron/bpf/iron.bpf.c",
                 "workloads/c/nfvflood.c", "workloads/sysbench.py", "testbeds/local.py", "testbeds/cgroups.py"):
        assert must in files, must
    for never in ("results.py", "runner.py", "stamps.py", "analysis/report.py", "experiments/registry.py"):
        assert never not in files, never  # bookkeeping: where rows go, not how they are measured
    sa = {str(f.relative_to(stamps.PACKAGE_DIR)) for f in stamps.code_files("nfvlab.statealyzr.experiment")}
    assert "statealyzr/corpus/groundtruth/conntrack.c" in sa and not any(f.startswith("iron/") for f in sa)


def test_code_hash_of_chc_kinds_covers_the_data_plane_built_outside_the_package():
    chc = {str(f.relative_to(stamps.REPO_DIR)) for f in stamps.code_files("nfvlab.chc.exp_correctness")}
    for must in ("chc/tools/chc-root.cpp", "chc/src/nf_nat.cpp", "chc/include/chc/store.h",
                 "src/nfvlab/chc/chc_functions.lua", "src/nfvlab/chc/faults.py"):
        assert must in chc, must
    iron = stamps.code_files("nfvlab.experiments.iron_interference")
    assert not any(stamps.REPO_DIR / "chc" in f.parents for f in iron)
    assert stamps.hash_files(sorted(stamps.code_files("nfvlab.chc.exp_correctness")))  # repo files hash too


def test_stale_reasons_name_each_changed_stamp():
    now = {"code_hash": "a", "testbed_hash": "b", "calibration_id": "c", "run_id": "r2"}
    assert stamps.stale_reasons({"code_hash": "a", "testbed_hash": "b", "calibration_id": "c", "run_id": "r1"},
                                now) == []
    why = stamps.stale_reasons({"code_hash": "x", "testbed_hash": "b"}, now)
    assert why == ["code_hash: x -> a", "calibration_id: none -> c"]


def test_iron_rows_carry_the_calibration_and_a_new_one_makes_them_stale(tr_names, write_spec, tmp_path,
                                                                       monkeypatch):
    from nfvlab.iron import calibration

    monkeypatch.delenv("NFVLAB_IRON_IRQ_EXTRA_NS", raising=False)
    monkeypatch.delenv("NFVLAB_IRON_TIMER_EXTRA_NS", raising=False)
    monkeypatch.setattr(calibration, "default_build_dir", lambda: tmp_path / "iron")
    (tmp_path / "iron").mkdir()
    (tmp_path / "iron" / calibration.CALIBRATION_FILE).write_text(json.dumps(
        {"irq_extra_ns": 1, "timer_extra_ns": 1, "kernel": "0.0-another-kernel"}))  # stale: re-measured
    measured = []

    def fake_measurement() -> dict:  # the real one (nfvlab.iron.calibrate.measure) takes minutes
        measured.append(1)
        return {"irq_extra_ns": 6100, "timer_extra_ns": 8400}

    spec = tiny_spec(name="tr-calibrated")
    spec["params"]["workload"] |= {"victim_events": 300, "warmup_s": 0.2}
    spec["params"]["iron"] = {"mode": "ebpf", "drop": "xdp"}
    path = write_spec(spec)

    def go():
        return run_when_free(run, path, scale=None, results_root=tmp_path / "results", build_dir=tmp_path / "b",
                             calibrate=fake_measurement)

    assert go().done == 1 and measured == [1]
    csv = tmp_path / "results" / "tr-calibrated" / "results.csv"
    row = pd.read_csv(csv).iloc[0]
    assert (row["calibration_irq_extra_ns"], row["calibration_timer_extra_ns"]) == (6100, 8400)
    assert row["calibration_source"] == "measured" and row["calibration_id"] == calibration.current().id
    assert go().done == 0 and measured == [1]  # current: neither re-measured nor re-run
    calibration.save({"irq_extra_ns": 7000, "timer_extra_ns": 9000})  # someone re-calibrated
    regen = go()
    assert (regen.done, regen.stale) == (1, 1)
    row = pd.read_csv(csv).iloc[0]
    assert (row["calibration_irq_extra_ns"], row["calibration_timer_extra_ns"]) == (7000, 9000)


def test_current_generation_of_an_iron_point_needs_a_current_calibration(monkeypatch, tmp_path):
    from nfvlab.iron import calibration

    monkeypatch.delenv("NFVLAB_IRON_IRQ_EXTRA_NS", raising=False)
    monkeypatch.setattr(calibration, "default_build_dir", lambda: tmp_path)
    spec = load_spec(REPO / "experiments" / "iron-drop-mechanism.yaml")
    ebpf = next(p for p in expand(spec, "quick").points if p.params.iron.mode == "ebpf").params
    # the shipped specs derive the hidden cost online; a point that uses the fitted calibration:
    params = ebpf.model_copy(update={"iron": ebpf.iron.model_copy(update={"hidden_cost": "calibrated"})})
    assert not stamps.point_uses_calibration(spec, ebpf) and stamps.point_uses_calibration(spec, params)
    now, problems = stamps.current_generation(spec, params)
    assert "calibration_id" not in now and problems == ["calibration not current (not measured yet)"]
    monkeypatch.setenv("NFVLAB_IRON_IRQ_EXTRA_NS", "7000")
    now, problems = stamps.current_generation(spec, params)
    assert problems == [] and now["calibration_id"] == "env-7000-7000"
    assert stamps.stale_reasons({**now, "run_id": "old"}, now) == []
