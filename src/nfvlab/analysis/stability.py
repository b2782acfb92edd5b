"""Stability of one sweep point's repetitions, in the spirit of pyperf's `check`.

pyperf warns that a benchmark "may be unstable" when the standard deviation is at least 10 % of the
mean, when the minimum or maximum lies 50 % or more from the mean, and when there are too few
samples. nfvlab applies the same kind of checks per point, around the median (the statistic its
claims use), and adds the p5-p95 spread the report shows:

* too few repetitions: fewer than MIN_REPETITIONS values (a spec planning one repetition declares
  its metric deterministic, e.g. a static analysis count: not assessed);
* stdev >= STDEV_PCT % of |median|;
* p95 - p5 >= SPREAD_PCT % of |median|;
* min or max >= OUTLIER_PCT % away from the median.

A median of 0 makes relative spreads meaningless; then only the count check applies.

How a claim uses this (see claims.py): instability matters only where it could flip the verdict.
A point whose p5-p95 range lies entirely inside (or entirely outside) the claim's band is decided
even when flagged unstable; an unstable point whose range straddles a band edge is *undecided*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MIN_REPETITIONS = 3
STDEV_PCT = 10.0
SPREAD_PCT = 30.0  # ~3.3 stdev for normal noise: the p5-p95 width at pyperf's 10 % stdev
OUTLIER_PCT = 50.0


@dataclass(frozen=True)
class Stability:
    n: int
    median: float
    p5: float
    p95: float
    stdev: float
    warnings: tuple[str, ...] = field(default_factory=tuple)
    assessed: bool = True  # False: one planned repetition (deterministic metric)

    @property
    def stable(self) -> bool:
        return not self.warnings


def _pct(a: float, b: float) -> float:
    return 100.0 * a / abs(b)


def assess(values: pd.Series | list[float], planned_repetitions: int) -> Stability:
    """Stability of one point's values of one metric (NaNs are dropped; count them as missing first)."""
    arr = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(dtype=float)
    n = int(arr.size)
    if n == 0:
        return Stability(0, math.nan, math.nan, math.nan, math.nan, ("no values",))
    med = float(np.median(arr))
    p5, p95 = (float(x) for x in np.percentile(arr, [5, 95]))
    stdev = float(np.std(arr, ddof=1)) if n >= 2 else math.nan
    if planned_repetitions <= 1:
        return Stability(n, med, p5, p95, stdev, (), assessed=False)
    warns: list[str] = []
    if n < MIN_REPETITIONS:
        warns.append(f"too few repetitions ({n} < {MIN_REPETITIONS})")
    if med != 0 and math.isfinite(med):
        if n >= 2 and _pct(stdev, med) >= STDEV_PCT:
            warns.append(f"stdev {stdev:.3g} is {_pct(stdev, med):.0f} % of the median {med:.3g}")
        if _pct(p95 - p5, med) >= SPREAD_PCT:
            warns.append(f"p5-p95 spread {p5:.3g}-{p95:.3g} is {_pct(p95 - p5, med):.0f} % of the median")
        for name, v in (("minimum", float(arr.min())), ("maximum", float(arr.max()))):
            if abs(_pct(v - med, med)) >= OUTLIER_PCT:
                warns.append(f"the {name} {v:.3g} is {abs(_pct(v - med, med)):.0f} % from the median")
    return Stability(n, med, p5, p95, stdev, tuple(warns))


def band_side(low: float | None, high: float | None, lo: float, hi: float) -> str:
    """Where the interval [lo, hi] lies relative to the band: 'inside', 'outside' or 'straddles'."""
    def inside(v: float) -> bool:
        return (low is None or v >= low) and (high is None or v <= high)

    if inside(lo) and inside(hi):
        return "inside"
    if (high is not None and lo > high) or (low is not None and hi < low):
        return "outside"
    return "straddles"
