"""Claim evaluation: bands, every/reducers, where, point/across statistics, not run, references."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from nfvlab.analysis.claims import NOT_REPRODUCED, NOT_RUN, REPRODUCED, evaluate_claim, in_band, tally
from nfvlab.analysis.reference import load_references
from nfvlab.results import ResultStore
from nfvlab.spec import Claim


@pytest.fixture
def frame(results_root) -> pd.DataFrame:
    """Two points (receivers 1 and 5), three repetitions each."""
    store = ResultStore(results_root, "fake")
    values = {1: [1.5, 2.0, 2.5], 5: [3.0, 4.0, 8.0]}
    for i, (rx, vals) in enumerate(values.items()):
        for rep, v in enumerate(vals):
            store.write_row(f"receivers={rx}", rep, {"spec": "fake", "point_index": i, "receivers": rx,
                                                      "penalty_factor": v, "drops": math.nan})
    return store.frame()


def claim(**kw) -> Claim:
    base = {"id": "c", "statement": "s", "metric": "penalty_factor",
            "across_points": "max", "band": [2.0, 10.0]}
    return Claim(**(base | kw))


@pytest.mark.parametrize("band, verdict", [
    ([4.0, 4.5], REPRODUCED),        # max of medians = 4.0, the band is inclusive
    ([3.5, 4.0], REPRODUCED),
    ([4.1, 9.0], NOT_REPRODUCED),    # below the band
    ([1.0, 3.9], NOT_REPRODUCED),    # above the band: a two-sided claim catches it
])
def test_band_is_two_sided(frame, band, verdict):
    r = evaluate_claim(claim(band=band), frame, "fake")
    assert r.measured == pytest.approx(4.0)
    assert r.verdict == verdict
    assert (r.n_points, r.n_rows) == (2, 6)


def test_every_point_must_lie_in_the_band(frame):
    # medians 2.0 and 4.0: [1.5, 4.5] holds both, [2.5, 4.5] misses the first
    assert evaluate_claim(claim(across_points="every", band=[1.5, 4.5]), frame).verdict == REPRODUCED
    r = evaluate_claim(claim(across_points="every", band=[2.5, 4.5]), frame)
    assert r.verdict == NOT_REPRODUCED and r.measured == pytest.approx(2.0)


def test_where_selects_rows(frame):
    r = evaluate_claim(claim(where={"receivers": 1}), frame)
    assert r.measured == pytest.approx(2.0) and r.verdict == REPRODUCED and r.n_rows == 3


@pytest.mark.parametrize("point_stat, across, expected", [
    ("median", "max", 4.0), ("median", "min", 2.0), ("median", "mean", 3.0), ("mean", "max", 5.0),
    ("max", "max", 8.0), ("min", "min", 1.5), ("p95", "max", 7.6), ("p5", "min", 1.55),
])
def test_point_and_across_statistics(frame, point_stat, across, expected):
    r = evaluate_claim(claim(point_stat=point_stat, across_points=across), frame)
    assert r.measured == pytest.approx(expected)


def test_not_run_without_rows(frame):
    assert evaluate_claim(claim(), pd.DataFrame()).verdict == NOT_RUN
    r = evaluate_claim(claim(where={"receivers": 9}), frame)
    assert (r.verdict, r.measured, r.n_rows) == (NOT_RUN, None, 0)


def test_not_run_when_the_metric_was_never_measured(frame):
    r = evaluate_claim(claim(metric="drops"), frame)
    assert r.verdict == NOT_RUN and r.notes


def test_reference_value_and_mismatch(frame):
    refs = load_references()
    ok = evaluate_claim(claim(paper_value=1.18, reference="fig2.1.max_penalty"), frame, references=refs)
    assert ok.reference_value == 1.18 and ok.reference_mismatch is False and ok.reference_quote
    bad = evaluate_claim(claim(paper_value=1.5, reference="fig2.1.max_penalty"), frame, references=refs)
    assert bad.reference_mismatch is True and any("differs" in n for n in bad.notes)
    unknown = evaluate_claim(claim(reference="fig9.9.nothing"), frame, references=refs)
    assert unknown.reference_value is None and any("not in" in n for n in unknown.notes)
    filled = evaluate_claim(claim(reference="table2.15.udp_us"), frame, references=refs)
    assert filled.paper_value == pytest.approx(0.706)


def test_in_band_and_tally(frame):
    assert in_band(1.0, (1.0, None)) and in_band(1.0, (None, 1.0)) and not in_band(1.01, (0.9, 1.0))
    results = [evaluate_claim(claim(), frame), evaluate_claim(claim(), pd.DataFrame())]
    assert tally(results) == {REPRODUCED: 1, NOT_REPRODUCED: 0, NOT_RUN: 1}
