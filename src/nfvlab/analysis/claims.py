"""Claim evaluation: the paper's statements checked as bands, on complete and current rows only.

For a claim at the reported scale:

1. *Expected points*: the points of the current plan (``CurrentRows.plan``) whose parameters match
   the claim's ``where``; each must have the plan's repetitions.
2. *Found*: per expected point, the current rows (see current.py) with a measured (non-NaN) value of
   the claim's metric. NaN counts as missing, never as dropped.
3. Verdicts, in this order:
   - **not run**: no expected point has a single measured value (or no plan point matches ``where``);
   - **incomplete**: some expected point has fewer values than the planned repetitions; the result
     lists expected vs found, and the value measured so far is shown but never judged;
   - otherwise per point ``point_stat`` over its repetitions, and ``across_points``:
     ``every``: each point's value must lie in the band; a reducer (max/min/median/mean) reduces the
     per-point values to one number that must lie in the band;
   - **not reproduced**: a point decides against the band (see stability.py: its value is outside and
     it is stable, or its whole p5-p95 range is outside);
   - **unstable**: the verdict rests on a point that is flagged unstable and whose p5-p95 range
     straddles a band edge; ``would_be`` keeps the verdict the medians alone would give;
   - **reproduced** otherwise.
4. ``check: self-check`` claims get the same verdicts, but are tallied apart and never count as
   reproductions of the paper.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from nfvlab.analysis.aggregate import apply_where, fmt_value, stat
from nfvlab.analysis.current import (
    CurrentRows,
    StampCheck,
    load_current_stamps,
    plan_point_frame,
    reported_scale,
    select_current,
)
from nfvlab.analysis.reference import ReferenceValue, values_differ
from nfvlab.analysis.stability import assess, band_side
from nfvlab.spec import Claim, Spec

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCOMPLETE = "incomplete"
UNSTABLE = "unstable"
NOT_RUN = "not run"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCOMPLETE, UNSTABLE, NOT_RUN)
Band = tuple[float | None, float | None]


def band_text(band: Band) -> str:
    low, high = band
    return f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"


def in_band(measured: float, band: Band) -> bool:
    low, high = band
    return (low is None or measured >= low) and (high is None or measured <= high)


@dataclass
class PointResult:
    """One expected point of a claim: what was planned, found and measured."""

    label: str
    point_id: str
    expected: int
    found: int  # repetitions with a measured (non-NaN) value in current rows
    nan: int = 0  # current rows whose metric is NaN (missing)
    value: float | None = None  # point_stat over the repetitions
    p5: float | None = None
    p95: float | None = None
    stable: bool = True
    warnings: list[str] = field(default_factory=list)
    side: str = ""  # "in" | "out" | "undecided" (unstable and straddling the band)

    @property
    def complete(self) -> bool:
        return self.found >= self.expected


@dataclass
class ClaimResult:
    spec: str
    claim_id: str
    statement: str
    metric: str
    where: dict[str, Any]
    point_stat: str
    across_points: str
    band: Band
    one_sided: str | None
    check: str
    paper_value: float | str | None
    measured: float | None
    verdict: str
    scale: str | None = None
    would_be: str | None = None  # for "unstable"/"incomplete": the verdict the values alone would give
    spread: tuple[float, float] | None = None  # p5-p95 of the deciding point (or of the per-point values)
    deciding_point: str | None = None
    expected_points: int = 0
    found_points: int = 0  # expected points with all their repetitions
    expected_repetitions: int = 0
    n_points: int = 0  # points with at least one measured value
    n_rows: int = 0  # current rows used
    points: list[PointResult] = field(default_factory=list)
    reference: str | None = None
    reference_value: float | str | None = None
    reference_quote: str | None = None
    reference_section: str | None = None
    reference_mismatch: bool | None = None  # True: paper_value disagrees with the reference file
    notes: list[str] = field(default_factory=list)

    @property
    def is_self_check(self) -> bool:
        return self.check == "self-check"

    @property
    def condition(self) -> str:
        if self.across_points == "every":
            return f"every point's {self.point_stat}({self.metric}) in {band_text(self.band)}"
        return f"{self.across_points} over points of {self.point_stat}({self.metric}) in {band_text(self.band)}"

    @property
    def band_label(self) -> str:
        return band_text(self.band)

    @property
    def coverage(self) -> str:
        """Expected vs found, e.g. '6 points x 5 reps expected; 4 complete, 27 of 30 values'."""
        found_values = sum(min(p.found, p.expected) for p in self.points)
        return (f"{self.expected_points} point(s) x {self.expected_repetitions} rep(s) expected; "
                f"{self.found_points} complete, {found_values} of {self.expected_points * self.expected_repetitions} "
                "values found")

    @property
    def missing(self) -> list[str]:
        return [f"{p.label}: {p.found}/{p.expected}" + (f" ({p.nan} NaN)" if p.nan else "")
                for p in self.points if not p.complete]

    @property
    def unstable_points(self) -> list[PointResult]:
        return [p for p in self.points if not p.stable]

    def as_record(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("points")
        d["where"] = ";".join(f"{k}={v}" for k, v in self.where.items())
        d["band"] = band_text(self.band)
        d["spread"] = "" if self.spread is None else f"{self.spread[0]:.4g}-{self.spread[1]:.4g}"
        d["notes"] = "; ".join(self.notes)
        d["condition"] = self.condition
        d["coverage"] = self.coverage
        d["missing"] = "; ".join(self.missing)
        d["unstable_points"] = "; ".join(f"{p.label}: {', '.join(p.warnings)}" for p in self.unstable_points)
        return d


def _point_results(claim: Claim, current: CurrentRows) -> tuple[list[PointResult], int, list[str]]:
    """Per expected point: found repetitions, value, spread, stability, side of the band."""
    notes: list[str] = []
    plan_points = plan_point_frame(current.points)
    expected = apply_where(plan_points, claim.where) if not plan_points.empty else plan_points
    rows = current.rows
    if not rows.empty and claim.metric not in rows.columns:
        notes.append(f"metric {claim.metric!r} is not a column of the results")
        rows = rows.iloc[0:0]
    by_point = {pid: g for pid, g in rows.groupby("point_id", sort=False)} if not rows.empty else {}
    low, high = claim.band
    out: list[PointResult] = []
    used = 0
    for _, pt in expected.iterrows():
        group = by_point.get(pt["point_id"])
        values = pd.to_numeric(group[claim.metric], errors="coerce") if group is not None else pd.Series(dtype=float)
        measured = values.dropna()
        res = PointResult(label=pt["point_label"], point_id=pt["point_id"], expected=current.repetitions,
                          found=int(measured.size), nan=int(values.size - measured.size))
        used += int(values.size)
        if measured.size:
            st = assess(measured, current.repetitions)
            res.value = stat(measured, claim.point_stat)
            res.p5, res.p95 = st.p5, st.p95
            res.stable, res.warnings = st.stable, list(st.warnings)
            inside = in_band(res.value, claim.band)
            if res.stable:
                res.side = "in" if inside else "out"
            else:
                side = band_side(low, high, st.p5, st.p95)
                res.side = {"inside": "in", "outside": "out"}.get(side, "undecided")
                if side == "inside" and not inside or side == "outside" and inside:
                    res.side = "undecided"  # the statistic and its spread disagree: do not decide
        out.append(res)
    return out, used, notes


def _judge(claim: Claim, points: list[PointResult]) -> tuple[str, float | None, PointResult | None, str]:
    """Verdict from complete points: (verdict, measured, deciding point, verdict by values alone)."""
    values = [p.value for p in points if p.value is not None]
    if claim.across_points == "every":
        outside = [p for p in points if p.value is not None and not in_band(p.value, claim.band)]
        by_values = NOT_REPRODUCED if outside else REPRODUCED
        decided_out = [p for p in outside if p.side == "out"]
        # the point farthest from the band's centre (or its edge) is shown as the measured value
        def distance(p: PointResult) -> float:
            low, high = claim.band
            v = p.value or 0.0
            return max((low - v) if low is not None else -math.inf, (v - high) if high is not None else -math.inf)
        if decided_out:
            worst = max(decided_out, key=distance)
            return NOT_REPRODUCED, worst.value, worst, by_values
        worst = max(points, key=distance)
        if any(p.side == "undecided" for p in points):
            shaky = max((p for p in points if p.side == "undecided"), key=distance)
            return UNSTABLE, shaky.value, shaky, by_values
        return REPRODUCED, worst.value, worst, by_values
    measured = stat(pd.Series(values), claim.across_points)
    by_values = REPRODUCED if in_band(measured, claim.band) else NOT_REPRODUCED
    if claim.across_points in ("max", "min"):
        pick = max if claim.across_points == "max" else min
        deciding = pick(points, key=lambda p: p.value)
        shaky = deciding.side == "undecided"
    else:
        deciding = None
        shaky = any(p.side == "undecided" for p in points)
    return (UNSTABLE if shaky else by_values), measured, deciding, by_values


def evaluate_claim(claim: Claim, current: CurrentRows, spec_name: str = "",
                   references: dict[str, ReferenceValue] | None = None) -> ClaimResult:
    """Evaluate one claim on the current rows of its spec (see the module doc for the verdicts)."""
    points, n_rows, notes = _point_results(claim, current)
    # row accounting explains an incomplete verdict; the stamps-unavailable note is the report's banner
    notes = [*notes, *(n for n in current.notes() if not n.startswith("stamps not checked"))]
    result = ClaimResult(
        spec=spec_name, claim_id=claim.id, statement=claim.statement, metric=claim.metric,
        where=dict(claim.where), point_stat=claim.point_stat, across_points=claim.across_points,
        band=tuple(claim.band), one_sided=claim.one_sided, check=claim.check, paper_value=claim.paper_value,
        measured=None, verdict=NOT_RUN, scale=current.scale, expected_points=len(points),
        found_points=sum(p.complete for p in points), expected_repetitions=current.repetitions,
        n_points=sum(p.value is not None for p in points), n_rows=n_rows, points=points,
        reference=claim.reference, notes=notes,
    )
    if not points:
        where = ", ".join(f"{k}={fmt_value(v)}" for k, v in claim.where.items())
        notes.insert(0, f"no point of the plan at scale {current.scale or 'default'} matches where {where or '{}'}")
    elif result.n_points == 0:
        pass  # not run: nothing measured for any expected point
    elif result.found_points < len(points):
        result.verdict = INCOMPLETE
        measured = [p for p in points if p.value is not None]
        _, result.measured, deciding, result.would_be = _judge(claim, measured)
        result.deciding_point = deciding.label if deciding else None
    else:
        result.verdict, result.measured, deciding, by_values = _judge(claim, points)
        if result.verdict == UNSTABLE:
            result.would_be = by_values
        if deciding is not None:
            result.deciding_point = deciding.label
            if deciding.p5 is not None:
                result.spread = (deciding.p5, deciding.p95)
    if result.spread is None and result.deciding_point is None and result.n_points > 1:
        vals = pd.Series([p.value for p in points if p.value is not None])
        result.spread = (stat(vals, "p5"), stat(vals, "p95"))
    _attach_reference(result, claim, references or {})
    return result


def _attach_reference(result: ClaimResult, claim: Claim, references: dict[str, ReferenceValue]) -> None:
    if not claim.reference:
        return
    ref = references.get(claim.reference)
    if ref is None:
        result.notes.append(f"reference {claim.reference!r} is not in analysis/reference/")
        return
    result.reference_value, result.reference_quote, result.reference_section = ref.value, ref.quote, ref.section
    if claim.paper_value is None:
        result.paper_value = ref.value
    else:
        result.reference_mismatch = values_differ(claim.paper_value, ref.value)
        if result.reference_mismatch:
            result.notes.append(f"paper_value {claim.paper_value} differs from the reference file's "
                                f"{claim.reference} = {ref.value}")


def evaluate_claims(spec: Spec, current: CurrentRows,
                    references: dict[str, ReferenceValue] | None = None) -> list[ClaimResult]:
    return [evaluate_claim(c, current, spec.name, references) for c in spec.claims]


def tally(results: Iterable[ClaimResult], check: str | None = "reproduction") -> dict[str, int]:
    """Verdict counts; by default of reproductions only (self-checks never count as reproductions)."""
    counts = {v: 0 for v in VERDICTS}
    for r in results:
        if check is None or r.check == check:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
    return counts


def evaluate_spec(spec: Spec, df: pd.DataFrame, provenance: dict[str, Any] | None = None,
                  scale: str | None = None, stamps: StampCheck | None = None,
                  references: dict[str, ReferenceValue] | None = None) -> tuple[CurrentRows, list[ClaimResult]]:
    """The current rows of a spec's results and its claims' verdicts.

    ``df``: every stored row (``ResultStore.frame()``); ``scale``: the ``--scale`` override (else the
    newest row's scale, then provenance); ``stamps``: the current stamps (default: from nfvlab.stamps).
    """
    chosen, source = reported_scale(spec, df, provenance, scale)
    current = select_current(spec, df, chosen, stamps if stamps is not None else load_current_stamps(spec), source)
    return current, evaluate_claims(spec, current, references)
