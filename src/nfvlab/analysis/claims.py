"""Claim evaluation: the paper's statements checked against measured rows.

For a claim: take the rows matching `where`; per point, `point_stat` of `metric` over the point's
repetitions; then `across_points` of those (`every`: each point must lie in the band); the claim
is reproduced when the measured value lies in the claim's band [low, high]. No matching rows (or
no measured value) means "not run".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from nfvlab.analysis.aggregate import apply_where, stat
from nfvlab.analysis.reference import ReferenceValue, values_differ
from nfvlab.spec import Claim, Spec

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_RUN = "not run"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_RUN)



@dataclass
class ClaimResult:
    spec: str
    claim_id: str
    statement: str
    metric: str
    where: dict[str, Any]
    point_stat: str
    across_points: str
    band: tuple[float | None, float | None]
    one_sided: str | None
    check: str
    paper_value: float | str | None
    measured: float | None
    verdict: str
    n_points: int
    n_rows: int
    reference: str | None = None
    reference_value: float | str | None = None
    reference_quote: str | None = None
    reference_section: str | None = None
    # True: paper_value disagrees with the reference file; None: nothing to compare / unknown key.
    reference_mismatch: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def condition(self) -> str:
        return f"{self.across_points} point's {self.point_stat}({self.metric}) in {band_text(self.band)}" \
            if self.across_points == "every" else \
            f"{self.across_points} over points of {self.point_stat}({self.metric}) in {band_text(self.band)}"

    def as_record(self) -> dict[str, Any]:
        d = asdict(self)
        d["where"] = ";".join(f"{k}={v}" for k, v in self.where.items())
        d["notes"] = "; ".join(self.notes)
        d["condition"] = self.condition
        return d


def band_text(band: tuple[float | None, float | None]) -> str:
    low, high = band
    return f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"


def in_band(measured: float, band: tuple[float | None, float | None]) -> bool:
    low, high = band
    return (low is None or measured >= low) and (high is None or measured <= high)


def evaluate_claim(claim: Claim, df: pd.DataFrame, spec_name: str = "",
                   references: dict[str, ReferenceValue] | None = None) -> ClaimResult:
    """Evaluate one claim on the tidy rows of its spec (an empty frame gives "not run")."""
    references = references or {}
    notes: list[str] = []
    rows = apply_where(df, claim.where) if not df.empty else df
    if not df.empty and claim.metric not in df.columns:
        notes.append(f"metric {claim.metric!r} is not a column of the results")
        rows = rows.iloc[0:0]
    measured: float | None = None
    all_in = False
    n_points = 0
    if not rows.empty:
        keys = ["point_id"] if "point_id" in rows.columns else [c for c in rows.columns if c != claim.metric]
        per_point = rows.groupby(keys, dropna=False, sort=False)[claim.metric].apply(
            lambda s: stat(s, claim.point_stat))
        per_point = per_point.dropna()
        n_points = int(per_point.size)
        if n_points:
            if claim.across_points == "every":
                # the point farthest outside the band decides; inside, the worst-placed one is shown
                outside = [v for v in per_point if not in_band(v, claim.band)]
                measured = outside[0] if outside else float(per_point.median())
                all_in = not outside
            else:
                measured = stat(per_point, claim.across_points)
                all_in = in_band(measured, claim.band)
        else:
            notes.append(f"no measured values of {claim.metric} in the matching rows")
    if measured is None or math.isnan(measured):
        measured = None
        verdict = NOT_RUN
    else:
        verdict = REPRODUCED if all_in else NOT_REPRODUCED

    result = ClaimResult(
        spec=spec_name, claim_id=claim.id, statement=claim.statement, metric=claim.metric,
        where=dict(claim.where), point_stat=claim.point_stat, across_points=claim.across_points,
        band=claim.band, one_sided=claim.one_sided, check=claim.check, paper_value=claim.paper_value,
        measured=measured, verdict=verdict, n_points=n_points, n_rows=int(len(rows)),
        reference=claim.reference, notes=notes,
    )
    if claim.reference:
        ref = references.get(claim.reference)
        if ref is None:
            notes.append(f"reference {claim.reference!r} is not in analysis/reference/")
        else:
            result.reference_value = ref.value
            result.reference_quote = ref.quote
            result.reference_section = ref.section
            if claim.paper_value is None:
                result.paper_value = ref.value
            else:
                result.reference_mismatch = values_differ(claim.paper_value, ref.value)
                if result.reference_mismatch:
                    notes.append(f"paper_value {claim.paper_value} differs from the reference file's "
                                 f"{claim.reference} = {ref.value}")
    return result


def evaluate_claims(spec: Spec, df: pd.DataFrame,
                    references: dict[str, ReferenceValue] | None = None) -> list[ClaimResult]:
    return [evaluate_claim(c, df, spec.name, references) for c in spec.claims]


def tally(results: Iterable[ClaimResult]) -> dict[str, int]:
    counts = {v: 0 for v in VERDICTS}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    return counts
