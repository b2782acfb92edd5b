"""bandchance: the chance a study passes "every Iron median in band", from its own rows."""

from __future__ import annotations

import pandas as pd
import pytest

from nfvlab.iron.bandchance import chances, iron_points, label, main, normal_in_band, varying_keys


def write(d, spec, rows):
    (d / spec).mkdir(parents=True)
    pd.DataFrame([{"spec": spec, "point_id": pid, "mode": mode, "penalty_factor": v} for pid, mode, v in rows]
                 ).to_csv(d / spec / "results.csv", index=False)


def test_biased_point_fails_as_measured_but_not_centred_and_vanilla_rows_are_ignored(tmp_path, capsys):
    write(tmp_path, "iron-a", [("tight", "ebpf", v) for v in (0.99, 1.0, 1.01, 1.0, 1.0)]
          + [("tight", "off", 3.0)] * 5)
    write(tmp_path, "iron-b", [("biased", "ebpf", v) for v in (1.09, 1.10, 1.11, 1.10, 1.10)])
    pts = iron_points([tmp_path])
    assert sorted(pts) == [("iron-a", "tight"), ("iron-b", "biased")] and len(pts[("iron-a", "tight")]) == 5
    per, measured, centred = chances(pts, reps=5, trials=2000)
    by = {p.point: p for p in per}
    assert by["tight"].in_band_as_measured == 1.0 and by["biased"].in_band_as_measured == 0.0
    assert measured == 0.0 and centred == 1.0  # only the bias fails it: the spread alone would pass
    assert main([str(tmp_path), "--runs", "3"]) == 0
    out = capsys.readouterr().out
    assert "all 2 Iron points in band at once: 0.000 as measured, 1.000 centred" in out
    assert "iron-b biased: median 1.100" in out


def test_spread_alone_makes_a_study_fail_sometimes(tmp_path):
    wide = (0.90, 0.95, 1.0, 1.05, 1.10)  # stdev ~7 %: a median of 5 leaves the band now and then
    write(tmp_path, "iron-w", [(f"p{i}", "ebpf", v) for i in range(4) for v in wide])
    per, measured, centred = chances(iron_points([tmp_path]), reps=5, trials=4000)
    single = per[0].in_band_centred
    assert 0.5 < single < 1.0
    assert centred == pytest.approx(single ** 4, abs=0.06)  # independent points: the chances multiply
    assert centred < single


def test_normal_model_and_labels():
    assert normal_in_band(0.0, 5) == 1.0
    assert normal_in_band(0.04, 5) == pytest.approx(0.974, abs=0.002)  # median sd 2.24 %: |z| < 2.23
    assert normal_in_band(0.10, 5) < 0.75
    keys = varying_keys([("s", "a=1,b=2,c=3"), ("s", "a=1,b=5,c=3")])
    assert keys == {"s": {"b"}} and label("a=1,b=5,c=3", keys["s"]) == "b=5"


def test_no_iron_rows_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no Iron rows"):
        main([str(tmp_path)])
