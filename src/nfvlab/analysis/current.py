"""Which rows a verdict may rest on: rows of the current plan, at the reported scale, with current stamps.

A spec's results folder keeps every row ever measured: rows of points a later spec edit removed, rows
of another scale, rows measured by older code or on another testbed config. A claim is evaluated
only on *current* rows:

* the row's ``point_id`` is a point of ``nfvlab.plan.expand(spec, scale)`` at the reported scale
  (``point_id`` names every leaf parameter, so an edited parameter moves a point off the plan);
* each generation stamp the harness compares on resume (``code_hash``, ``testbed_hash``) equals the
  current one; a row lacking a stamp column is stale too ("no stamps").

When ``nfvlab.stamps`` is not in the checkout, stamps cannot be compared: no row is dropped for its
stamps and the report says so (``StampCheck.available`` is False).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nfvlab.plan import Plan, Point, expand, flat_params

# Stamps the harness compares on resume (nfvlab.stamps.GENERATION_STAMPS once it exists).
DEFAULT_GENERATION_STAMPS = ("code_hash", "testbed_hash")
RUN_STAMP_COLUMNS = ("run_id", "git_commit", "git_dirty", "code_hash", "testbed_hash")


@dataclass(frozen=True)
class StampCheck:
    """The current stamps rows are compared with, or why they are not compared."""

    available: bool
    current: dict[str, str] = field(default_factory=dict)
    note: str = ""
    # Iron's calibration now: its id, or None with why (not measured, stale); rows that carry a
    # calibration_id are current only with this one. "" = not checked (module absent).
    calibration_id: str | None = ""
    calibration_note: str = ""


def load_current_stamps(spec: Any) -> StampCheck:
    """The current generation stamps of ``spec`` from ``nfvlab.stamps.current_stamps``.

    Guarded: without ``nfvlab.stamps`` (an older checkout) the check is unavailable, not an error.
    """
    try:
        from nfvlab import stamps  # noqa: PLC0415 - optional until the stamps module lands
    except ImportError:
        return StampCheck(False, note="stamps not checked: nfvlab.stamps is not in this checkout")
    keys = tuple(getattr(stamps, "GENERATION_STAMPS", DEFAULT_GENERATION_STAMPS))
    try:
        current = stamps.current_stamps(spec)
    except Exception as e:  # noqa: BLE001 - a stamp that cannot be computed is reported, not fatal
        return StampCheck(False, note=f"stamps not checked: current_stamps failed: {type(e).__name__}: {e}")
    cal_id, cal_note = _current_calibration()
    return StampCheck(True, {k: str(current[k]) for k in keys if k in current}, calibration_id=cal_id,
                      calibration_note=cal_note)


def _current_calibration() -> tuple[str | None, str]:
    """The id of Iron's current calibration (read-only: never measures), as the runner decides it."""
    try:
        from nfvlab.iron import calibration  # noqa: PLC0415 - optional, as nfvlab.stamps
    except ImportError:
        return "", ""
    try:
        return calibration.current().id, ""
    except Exception as e:  # noqa: BLE001 - CalibrationStale (or unreadable): rows with a calibration are stale
        return None, f"Iron calibration not current: {e}"


@dataclass
class CurrentRows:
    """The rows of one spec that a verdict may use, and an account of those it may not."""

    plan: Plan | None
    scale: str | None
    scale_source: str  # "--scale", "newest row", "provenance", "default"
    rows: pd.DataFrame  # current rows of plan points (NaN metrics kept: they count as missing per claim)
    total_rows: int = 0
    off_plan_rows: int = 0  # their point is not in the plan at this scale (spec edited, other scale)
    stale_rows: int = 0  # a generation stamp (or the calibration) differs from the current one
    calibration_stale_rows: int = 0  # of those: measured with another (or now stale) calibration
    unstamped_rows: int = 0  # no stamp columns at all ("no stamps"); counted as stale
    stamps: StampCheck = field(default_factory=lambda: StampCheck(False))
    error: str | None = None

    @property
    def points(self) -> list[Point]:
        return self.plan.points if self.plan else []

    @property
    def repetitions(self) -> int:
        return self.plan.repetitions if self.plan else 0

    def notes(self) -> list[str]:
        out = []
        if self.error:
            out.append(self.error)
        if self.off_plan_rows:
            out.append(f"{self.off_plan_rows} row(s) of points not in the current plan at scale "
                       f"{self.scale or 'default'} are not used")
        if self.unstamped_rows:
            out.append(f"{self.unstamped_rows} row(s) have no stamps (measured before rows were stamped): "
                       "treated as stale, not used")
        other = self.stale_rows - self.unstamped_rows - self.calibration_stale_rows
        if other > 0:
            out.append(f"{other} row(s) carry stamps that differ from the current code/testbed: stale, not used")
        if self.calibration_stale_rows:
            why = self.stamps.calibration_note or "the current calibration is another one"
            out.append(f"{self.calibration_stale_rows} row(s) were measured with another Iron calibration ({why}): "
                       "stale, not used")
        if not self.stamps.available and self.stamps.note:
            out.append(self.stamps.note)
        return out


def _newest_row_scale(df: pd.DataFrame) -> str | None:
    if df.empty or "scale" not in df.columns:
        return None
    order = df
    for col in ("finished_at", "run_id"):
        if col in df.columns:
            order = df.sort_values(col, kind="stable", na_position="first")
            break
    value = order["scale"].iloc[-1]
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def read_provenance(results_dir: Path) -> dict[str, Any] | None:
    """provenance.json of a spec's results, or None when absent or unreadable."""
    try:
        doc = json.loads((results_dir / "provenance.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def reported_scale(spec: Any, df: pd.DataFrame, provenance: Mapping[str, Any] | None = None,
                   override: str | None = None) -> tuple[str | None, str]:
    """The scale a report evaluates a spec at, and where that choice came from.

    ``override`` (``nfvlab report --scale``) wins; then the ``scale`` column of the newest row; then
    provenance (the latest run's scale); then ``quick`` if the spec defines it (the runner's default).
    """
    if override:
        return override, "--scale"
    scale = _newest_row_scale(df)
    if scale:
        return scale, "newest row"
    latest = (provenance or {}).get("latest") if provenance else None
    if isinstance(latest, dict) and latest.get("scale"):
        return str(latest["scale"]), "provenance"
    return ("quick" if "quick" in spec.scales else None), "default"


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def select_current(spec: Any, df: pd.DataFrame, scale: str | None, stamps: StampCheck,
                   scale_source: str = "given") -> CurrentRows:
    """Split a spec's rows into current rows of the plan at ``scale`` and the rest (counted)."""
    try:
        plan = expand(spec, scale)
    except ValueError as e:  # an unknown scale; a pydantic error is a ValueError too
        return CurrentRows(None, scale, scale_source, df.iloc[0:0] if not df.empty else pd.DataFrame(),
                           total_rows=len(df), stamps=stamps, error=f"no plan at scale {scale!r}: {e}")
    out = CurrentRows(plan, scale, scale_source, df, total_rows=len(df), stamps=stamps)
    if df.empty:
        return out
    planned = {p.point_id for p in plan.points}
    on_plan = df["point_id"].isin(planned) if "point_id" in df.columns else pd.Series(False, index=df.index)
    out.off_plan_rows = int((~on_plan).sum())
    keep = on_plan.copy()
    if stamps.available and stamps.current:
        unstamped = pd.Series(True, index=df.index)
        stale = pd.Series(False, index=df.index)
        for key, want in stamps.current.items():
            have = df[key] if key in df.columns else pd.Series(None, index=df.index, dtype=object)
            missing = have.map(_is_missing)
            unstamped &= missing
            stale |= missing | (have.astype(str) != want)
        if stamps.calibration_id != "" and "calibration_id" in df.columns:
            have = df["calibration_id"]
            cal_stale = ~have.map(_is_missing) & (have.astype(str) != str(stamps.calibration_id))
            out.calibration_stale_rows = int((cal_stale & ~stale & on_plan).sum())
            stale |= cal_stale
        out.unstamped_rows = int((unstamped & on_plan).sum())
        out.stale_rows = int((stale & on_plan).sum())
        keep &= ~stale
    out.rows = df[keep]
    return out


def plan_point_frame(points: list[Point]) -> pd.DataFrame:
    """One row per plan point: point_id, point_index, label and every leaf parameter (for `where`)."""
    records = [{"point_id": p.point_id, "point_index": p.index, "point_label": p.label, **flat_params(p.params)}
               for p in points]
    return pd.DataFrame.from_records(records)
