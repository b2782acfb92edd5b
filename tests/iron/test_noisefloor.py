"""The A/A noise floor's arithmetic (the runs themselves need the testbed: python -m nfvlab.iron.noisefloor)."""

from __future__ import annotations

import os

from nfvlab.iron.noisefloor import p_median_in_band, quantile, steal_ticks, summarize


def test_quantile_interpolates():
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert quantile([1.0, 2.0], 0.25) == 1.25


def test_median_in_band_probability():
    assert p_median_in_band([1.0, 1.01, 0.99], reps=5) == 1.0  # all inside: always inside
    assert p_median_in_band([1.2, 1.3], reps=5) == 0.0
    # half the single ratios outside on both sides: a median of 5 is inside more often than one ratio
    spread = [0.90, 0.98, 1.0, 1.02, 1.10, 0.91, 1.09, 0.99]
    s = summarize(spread, reps=5, points=20)
    assert s["single_in_band"] == 0.5 and s["median_of_5_in_band"] > 0.5
    assert abs(s["all_20_points_in_band"] - s["median_of_5_in_band"] ** 20) < 1e-12


def test_steal_ticks_reads_this_machine():
    assert steal_ticks(0) >= 0 and steal_ticks(os.cpu_count() + 5) == 0
