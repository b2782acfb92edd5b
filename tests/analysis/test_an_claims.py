"""Claim evaluation: bands, every/reducers, complete and current rows only, NaN as missing, stability."""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from analysis_fakes import EXPERIMENTS, spec_named, write_spec_rows

from nfvlab.analysis.claims import (
    INCOMPLETE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    UNSTABLE,
    evaluate_claim,
    evaluate_spec,
    in_band,
    tally,
)
from nfvlab.analysis.current import StampCheck, reported_scale, select_current
from nfvlab.plan import expand
from nfvlab.results import ResultStore
from nfvlab.spec import Claim, load_spec

NO_STAMPS = StampCheck(False, note="stamps not checked: test")
SPEC = "iron-udp-receivers"  # quick: receivers 1, 5, 9 x send rate 200, 500, 1000, inf; 3 repetitions


def claim(**kw) -> Claim:
    base = {"id": "c", "statement": "s", "metric": "penalty_factor", "across_points": "max", "band": [2.0, 10.0]}
    return Claim(**(base | kw))


def penalty(values: dict[int, list[float]]):
    """Rows whose penalty depends on the receivers only: receivers -> one value per repetition."""
    return lambda p, rep: {"penalty_factor": values[p["receivers"]][rep], "achieved_mbps": 100.0}


def current_of(root, spec=None, stamps=NO_STAMPS, scale="quick"):
    spec = spec or spec_named(SPEC)
    return select_current(spec, ResultStore(root, spec.name).frame(), scale, stamps)


@pytest.fixture
def full(results_root):
    """Every point of the quick plan, 3 repetitions: medians 1.5 (1 rx), 3.0 (5 rx), 4.0 (9 rx)."""
    write_spec_rows(results_root, spec_named(SPEC),
                    penalty({1: [1.4, 1.5, 1.6], 5: [2.9, 3.0, 3.1], 9: [3.9, 4.0, 4.1]}))
    return current_of(results_root)


@pytest.mark.parametrize("band, verdict", [
    ([4.0, 4.5], REPRODUCED),        # max of medians = 4.0, the band is inclusive
    ([3.5, 4.0], REPRODUCED),
    ([4.1, 9.0], NOT_REPRODUCED),    # below the band
    ([1.0, 3.9], NOT_REPRODUCED),    # above the band: a two-sided claim catches it
])
def test_band_is_two_sided(full, band, verdict):
    r = evaluate_claim(claim(band=band), full)
    assert r.measured == pytest.approx(4.0) and r.verdict == verdict
    assert (r.expected_points, r.found_points, r.expected_repetitions) == (12, 12, 3)


def test_every_point_must_lie_in_the_band(full):
    assert evaluate_claim(claim(across_points="every", band=[1.3, 4.5]), full).verdict == REPRODUCED
    r = evaluate_claim(claim(across_points="every", band=[2.5, 4.5]), full)
    assert r.verdict == NOT_REPRODUCED and r.measured == pytest.approx(1.5)
    assert r.deciding_point.startswith("receivers=1")


@pytest.mark.parametrize("point_stat, across, expected", [
    ("median", "max", 4.0), ("median", "min", 1.5), ("median", "median", 3.0), ("mean", "max", 4.0),
    ("max", "max", 4.1), ("min", "min", 1.4),
])
def test_point_and_across_statistics(full, point_stat, across, expected):
    r = evaluate_claim(claim(point_stat=point_stat, across_points=across, band=[0, 100]), full)
    assert r.measured == pytest.approx(expected) and r.verdict == REPRODUCED


def test_where_selects_the_expected_points(full):
    r = evaluate_claim(claim(where={"receivers": 1}, band=[1.45, 1.55]), full)
    assert (r.expected_points, r.measured, r.verdict) == (4, pytest.approx(1.5), REPRODUCED)
    none = evaluate_claim(claim(where={"receivers": 7}), full)
    assert none.verdict == NOT_RUN and "no point of the plan" in none.notes[0]


def test_victim_faster_than_its_baseline_is_not_reproduced(results_root):
    """The issue's case: tc drop at max rate, median 0.51 (p5-p95 0.44-0.82), beside isolated points."""
    vals = {1: [0.99, 1.0, 1.01], 5: [1.0, 1.01, 1.02], 9: [0.44, 0.51, 0.82]}
    write_spec_rows(results_root, spec_named(SPEC), penalty(vals))
    r = evaluate_claim(claim(across_points="every", band=[0.95, 1.05]), current_of(results_root))
    assert r.verdict == NOT_REPRODUCED
    assert r.measured == pytest.approx(0.51)
    # the old one-sided form `<= 1.05` would have passed it
    assert in_band(0.51, (None, 1.05))


def test_partial_run_is_incomplete_with_expected_and_found(results_root):
    spec = spec_named(SPEC)
    store = write_spec_rows(results_root, spec, penalty({1: [1.5] * 3, 5: [3.0] * 3, 9: [4.0] * 3}))
    plan = expand(spec, "quick")
    # a run killed after the first repetition of the last two points
    for point in plan.points[-2:]:
        for rep in (1, 2):
            (store.rows_dir / f"{store.row_key(point.point_id, rep)}.json").unlink()
    r = evaluate_claim(claim(band=[3.5, 4.5]), current_of(results_root))
    assert r.verdict == INCOMPLETE
    assert (r.expected_points, r.found_points, r.expected_repetitions) == (12, 10, 3)
    assert r.coverage == "12 point(s) x 3 rep(s) expected; 10 complete, 32 of 36 values found"
    assert len(r.missing) == 2 and all(m.endswith(": 1/3") for m in r.missing)
    assert r.would_be == REPRODUCED  # shown, never judged


def test_nan_counts_as_missing(results_root):
    vals = {1: [1.5, math.nan, 1.5], 5: [3.0] * 3, 9: [4.0] * 3}
    write_spec_rows(results_root, spec_named(SPEC), penalty(vals))
    r = evaluate_claim(claim(band=[3.5, 4.5]), current_of(results_root))
    assert r.verdict == INCOMPLETE
    assert r.found_points == 8 and all("(1 NaN)" in m for m in r.missing) and len(r.missing) == 4


def test_a_point_that_left_the_plan_is_not_used(results_root, tmp_path):
    """Edit a parameter after a run: the old rows belong to points no longer planned."""
    write_spec_rows(results_root, spec_named(SPEC), penalty({1: [1.5] * 3, 5: [3.0] * 3, 9: [4.0] * 3}))
    data = yaml.safe_load((EXPERIMENTS / f"{SPEC}.yaml").read_text())
    edited = copy.deepcopy(data)
    edited["params"]["workload"]["victim_events"] = 2000  # was 1000: every point id changes
    path = tmp_path / f"{SPEC}.yaml"
    path.write_text(yaml.safe_dump(edited))
    spec = load_spec(path)
    current = current_of(results_root, spec)
    assert current.off_plan_rows == 36 and current.rows.empty
    r = evaluate_claim(claim(band=[3.5, 4.5]), current)
    assert r.verdict == NOT_RUN and r.measured is None
    assert any("not in the current plan" in n for n in r.notes)
    # only a swept value changed: the other points' rows still count, the new point is missing
    edited = copy.deepcopy(data)
    edited["scales"]["quick"]["sweep"]["workload.send_rate_mbps"] = [200, 500, 1000, 1500]
    path.write_text(yaml.safe_dump(edited))
    r = evaluate_claim(claim(band=[3.5, 4.5]), current_of(results_root, load_spec(path)))
    assert r.verdict == INCOMPLETE and r.found_points == 9 and len(r.missing) == 3


def test_rows_with_other_or_no_stamps_are_stale(results_root):
    spec = spec_named(SPEC)
    store = write_spec_rows(results_root, spec, penalty({1: [1.5] * 3, 5: [3.0] * 3, 9: [4.0] * 3}))
    stamps = StampCheck(True, {"code_hash": "aaaa", "testbed_hash": "bbbb"})
    none = current_of(results_root, stamps=stamps)
    assert none.rows.empty and none.unstamped_rows == 36 and none.stale_rows == 36
    assert any("no stamps" in n for n in none.notes())
    # stamp every row with the current stamps except one point's, measured by older code
    plan = expand(spec, "quick")
    for row in store.rows():
        old = row["point_id"] == plan.points[0].point_id
        store.write_row(row["point_id"], row["repetition"],
                        {**row, "code_hash": "old0" if old else "aaaa", "testbed_hash": "bbbb"})
    cur = current_of(results_root, stamps=stamps)
    assert (cur.stale_rows, cur.unstamped_rows, len(cur.rows)) == (3, 0, 33)
    r = evaluate_claim(claim(band=[3.5, 4.5]), cur)
    assert r.verdict == INCOMPLETE and r.missing == [f"{plan.points[0].label}: 0/3"]
    # without the stamps module nothing is filtered on stamps, and that is said
    assert len(current_of(results_root, stamps=NO_STAMPS).rows) == 36


def test_unstable_point_straddling_the_band_makes_the_claim_unstable(results_root):
    vals = {1: [1.0, 1.0, 1.0], 5: [1.0, 1.0, 1.0], 9: [0.8, 1.02, 1.3]}  # median in band, spread across it
    write_spec_rows(results_root, spec_named(SPEC), penalty(vals))
    r = evaluate_claim(claim(across_points="every", band=[0.95, 1.05]), current_of(results_root))
    assert r.verdict == UNSTABLE and r.would_be == REPRODUCED
    assert r.unstable_points and any("spread" in w for w in r.unstable_points[0].warnings)


def test_unstable_but_wholly_outside_is_not_reproduced(results_root):
    vals = {1: [1.0] * 3, 5: [1.0] * 3, 9: [1.5, 2.0, 3.0]}  # noisy, but every repetition far above 1.05
    write_spec_rows(results_root, spec_named(SPEC), penalty(vals))
    r = evaluate_claim(claim(across_points="every", band=[0.95, 1.05]), current_of(results_root))
    assert r.verdict == NOT_REPRODUCED and r.unstable_points


def test_scale_of_the_newest_row_and_override(results_root):
    spec = spec_named(SPEC)
    write_spec_rows(results_root, spec, penalty({1: [1.5] * 10, 5: [3.0] * 10, 9: [4.0] * 10}), scale="paper")
    df = ResultStore(results_root, spec.name).frame()
    assert reported_scale(spec, df) == ("paper", "newest row")
    assert reported_scale(spec, df, override="quick") == ("quick", "--scale")
    assert reported_scale(spec, df.iloc[0:0], {"latest": {"scale": "paper"}}) == ("paper", "provenance")
    current, results = evaluate_spec(spec, df, stamps=NO_STAMPS)
    assert current.scale == "paper" and current.repetitions == 10
    assert {r.verdict for r in results} <= {REPRODUCED, NOT_REPRODUCED}


def test_self_checks_never_count_as_reproductions(full):
    repro = evaluate_claim(claim(band=[3.5, 4.5]), full)
    selfc = evaluate_claim(claim(id="s", band=[3.5, 4.5], check="self-check"), full)
    assert repro.verdict == selfc.verdict == REPRODUCED and selfc.is_self_check
    assert tally([repro, selfc])[REPRODUCED] == 1
    assert tally([repro, selfc], "self-check")[REPRODUCED] == 1


def test_reference_value_and_mismatch(full):
    from nfvlab.analysis.reference import load_references

    refs = load_references()
    ok = evaluate_claim(claim(paper_value=4.5, reference="fig2.4.max_penalty"), full, references=refs)
    assert ok.reference_value == 4.5 and ok.reference_mismatch is False and ok.reference_quote
    bad = evaluate_claim(claim(paper_value=1.5, reference="fig2.4.max_penalty"), full, references=refs)
    assert bad.reference_mismatch is True and any("differs" in n for n in bad.notes)
    unknown = evaluate_claim(claim(reference="fig9.9.nothing"), full, references=refs)
    assert unknown.reference_value is None and any("not in" in n for n in unknown.notes)
    filled = evaluate_claim(claim(reference="table2.15.udp_us"), full, references=refs)
    assert filled.paper_value == pytest.approx(0.706)


def test_rows_of_another_calibration_are_stale(results_root):
    spec = spec_named(SPEC)
    plan = expand(spec, "quick")
    stamps = {"code_hash": "aaaa", "testbed_hash": "bbbb"}
    write_spec_rows(results_root, spec, penalty({1: [1.5] * 3, 5: [3.0] * 3, 9: [4.0] * 3}),
                    extra={**stamps, "calibration_id": "cal-new"})
    store = ResultStore(results_root, spec.name)
    for rep in range(3):  # one point measured with an older calibration
        row = store.row(plan.points[0].point_id, rep)
        store.write_row(row["point_id"], rep, {**row, "calibration_id": "cal-old"})
    cur = current_of(results_root, stamps=StampCheck(True, stamps, calibration_id="cal-new"))
    assert (cur.stale_rows, cur.calibration_stale_rows, len(cur.rows)) == (3, 3, 33)
    assert any("another Iron calibration" in n for n in cur.notes())
    # the saved calibration went stale: every row that carries one is stale
    gone = current_of(results_root, stamps=StampCheck(True, stamps, calibration_id=None,
                                                      calibration_note="Iron calibration not current: kernel changed"))
    assert gone.rows.empty and any("kernel changed" in n for n in gone.notes())


def test_shipped_drop_claims_read_the_issue_point_as_not_reproduced(results_root, tmp_path):
    """iron-drop-mechanism at quick scale: tc at max rate with median 0.51 (p5-p95 0.44-0.82)."""
    from pathlib import Path

    spec = load_spec(Path(__file__).resolve().parents[2] / "experiments" / "iron-drop-mechanism.yaml")

    def rows(p, rep):
        if p["drop"] == "tc" and math.isinf(p["send_rate_mbps"]):
            return {"penalty_factor": [0.44, 0.47, 0.51, 0.6, 0.82][rep]}
        if p["drop"] == "tc":
            return {"penalty_factor": 1.25 + 0.01 * rep}  # degrades at the lower rate: the max claim holds
        return {"penalty_factor": 1.0 + 0.005 * rep}

    write_spec_rows(results_root, spec, rows)
    current = current_of(results_root, spec)
    verdicts = {c.id: evaluate_claim(c, current).verdict for c in spec.claims}
    assert verdicts["early-drop-keeps-isolation"] == REPRODUCED
    assert verdicts["late-drop-degrades"] == REPRODUCED  # its max (1.27) is in [1.095, inf] ...
    assert verdicts["late-drop-within-paper-range"] == NOT_REPRODUCED  # ... the 0.51 point is caught here
