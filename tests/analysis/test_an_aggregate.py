"""Aggregation: median/p5/p95/mean/n per point on known values; inf as a right-most category."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from nfvlab.analysis.aggregate import (
    apply_where,
    describe,
    fmt_value,
    group_stats,
    ordered_categories,
    point_summary,
    varying_parameters,
    wide_summary,
)
from nfvlab.results import ResultStore


def _write(store: ResultStore, point_index: int, rate: float, n: int, values: list[float]) -> None:
    point_id = f"core_rate_mbps={fmt_value(rate)},containers_per_core={n}"
    for rep, v in enumerate(values):
        store.write_row(point_id, rep, {"spec": "fake", "scale": "quick", "point_index": point_index,
                                        "containers_per_core": n, "core_rate_mbps": rate,
                                        "receivers": None, "penalty_factor": v, "achieved_mbps": 100.0 * v,
                                        "seconds": 0.1, "finished_at": "2026-01-01T00:00:00+00:00"})


@pytest.fixture
def frame(results_root) -> pd.DataFrame:
    store = ResultStore(results_root, "fake")
    _write(store, 0, 1000.0, 2, [float(v) for v in range(1, 11)])  # 1..10
    _write(store, 1, math.inf, 2, [1.0, 1.0, 4.0])
    _write(store, 2, 1000.0, 10, [2.0, math.nan, 3.0])  # a missing measurement
    return store.frame()


def test_inf_survives_the_round_trip_as_a_float(frame):
    assert math.isinf(frame.loc[frame["point_index"] == 1, "core_rate_mbps"].iloc[0])


def test_point_summary_known_values(frame):
    long = point_summary(frame, ["penalty_factor", "achieved_mbps"])
    pf = long[long["metric"] == "penalty_factor"].set_index("point_index")
    assert pf.loc[0, "median"] == pytest.approx(5.5)
    assert pf.loc[0, "p5"] == pytest.approx(1.45)  # numpy linear: 1 + 0.05 * 9
    assert pf.loc[0, "p95"] == pytest.approx(9.55)
    assert pf.loc[0, "mean"] == pytest.approx(5.5)
    assert pf.loc[0, "n"] == 10
    assert pf.loc[1, "median"] == 1.0 and pf.loc[1, "p95"] == pytest.approx(3.7)
    assert pf.loc[2, "n"] == 2 and pf.loc[2, "median"] == pytest.approx(2.5)  # NaN ignored
    ach = long[long["metric"] == "achieved_mbps"].set_index("point_index")
    assert ach.loc[0, "median"] == pytest.approx(550.0)
    assert list(pf.index) == [0, 1, 2]
    assert math.isinf(pf.loc[1, "core_rate_mbps"])


def test_wide_summary_has_metric_stat_columns(frame):
    wide = wide_summary(frame, ["penalty_factor"])
    assert {"penalty_factor_median", "penalty_factor_p5", "penalty_factor_p95", "penalty_factor_mean",
            "penalty_factor_n"} <= set(wide.columns)
    assert len(wide) == 3


def test_empty_frame_gives_empty_summary():
    assert point_summary(pd.DataFrame(), ["penalty_factor"]).empty


def test_describe_all_missing():
    d = describe(pd.Series([math.nan, None]))
    assert d["n"] == 0 and math.isnan(d["median"])


def test_inf_is_the_rightmost_category_labelled_inf():
    assert ordered_categories([math.inf, 3000.0, 250, 1000.0, 250.0]) == [250, 1000.0, 3000.0, math.inf]
    assert [fmt_value(v) for v in (math.inf, 2.0, 2.5, None, "tcp")] == ["inf", "2", "2.5", "none", "tcp"]


def test_varying_parameters(frame):
    assert varying_parameters(frame, ["penalty_factor", "achieved_mbps"]) == [
        "containers_per_core", "core_rate_mbps"]


def test_apply_where(frame):
    assert set(apply_where(frame, {"core_rate_mbps": "inf"})["point_index"]) == {1}
    assert set(apply_where(frame, {"core_rate_mbps": 1000})["point_index"]) == {0, 2}
    assert set(apply_where(frame, {"containers_per_core": [2, 10], "core_rate_mbps": 1000})["point_index"]) \
        == {0, 2}
    assert len(apply_where(frame, {"receivers": None})) == len(frame)
    assert apply_where(frame, {"no_such_column": 1}).empty


def test_group_stats_pools_rows_of_the_same_coordinates(frame):
    st = group_stats(frame, ["core_rate_mbps"], "penalty_factor").set_index("core_rate_mbps")
    assert st.loc[1000.0, "n"] == 12  # 10 + 2 non-missing rows of two points
    assert st.loc[math.inf, "median"] == 1.0
