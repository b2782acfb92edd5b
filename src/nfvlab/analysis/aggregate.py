"""Aggregation of tidy result rows: per sweep point, the median, p5, p95, mean and n of each metric.

Rows come from `ResultStore.frame()`: one row per measured repetition, bookkeeping columns
(spec, scale, point_index, point_id, repetition, seconds, finished_at), one column per leaf
parameter and one per metric. Infinite parameter values ("no limiter", "as fast as possible") are
real categories: they sort after every finite value and are labelled "inf".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

BOOKKEEPING = ("spec", "scale", "point_index", "point_id", "repetition", "seconds", "finished_at")
STATS = ("median", "p5", "p95", "mean", "n")


def parameter_columns(df: pd.DataFrame, metrics: Iterable[str]) -> list[str]:
    """Columns that are parameters: neither bookkeeping nor a metric, in frame order."""
    skip = set(BOOKKEEPING) | set(metrics)
    return [c for c in df.columns if c not in skip]


def varying_parameters(df: pd.DataFrame, metrics: Iterable[str]) -> list[str]:
    """Parameter columns that take more than one value over the rows (the swept axes)."""
    out = []
    for c in parameter_columns(df, metrics):
        if df[c].astype(str).nunique(dropna=False) > 1:
            out.append(c)
    return out


def fmt_value(v: Any) -> str:
    """A parameter value as a label: 'inf' for infinity, integers without '.0', 'none' for missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "none"
    if isinstance(v, (float, np.floating)):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if float(v).is_integer():
            return str(int(v))
        return f"{v:g}"
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v)


def sort_key(v: Any) -> tuple:
    """Order category values: numbers ascending (inf last), then strings, then missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (3, 0.0, "")
    if isinstance(v, (bool, np.bool_)):
        return (1, 0.0, str(v))
    if isinstance(v, (int, float, np.integer, np.floating)):
        return (0, float(v), "")
    return (2, 0.0, str(v))


def ordered_categories(values: Iterable[Any]) -> list[Any]:
    """Distinct values in category order (finite numbers ascending, inf right-most)."""
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(fmt_value(v), v)
    return sorted(seen.values(), key=sort_key)


def _coerce_where_value(v: Any) -> Any:
    if isinstance(v, str) and v.strip().lower() in ("inf", "+inf", "infinity"):
        return math.inf
    return v


def apply_where(df: pd.DataFrame, where: Mapping[str, Any] | None) -> pd.DataFrame:
    """Rows matching every `column: value` (a list means any of; null matches missing values).

    A column the rows do not have matches nothing.
    """
    if df.empty or not where:
        return df
    mask = pd.Series(True, index=df.index)
    for col, want in where.items():
        if col not in df.columns:
            return df.iloc[0:0]
        wants = want if isinstance(want, (list, tuple, set)) else [want]
        col_mask = pd.Series(False, index=df.index)
        for w in wants:
            w = _coerce_where_value(w)
            if w is None:
                col_mask |= df[col].isna()
            elif isinstance(w, (int, float)) and not isinstance(w, bool):
                numeric = pd.to_numeric(df[col], errors="coerce")
                col_mask |= numeric == float(w)
            else:
                col_mask |= df[col].astype(str) == str(w)
        mask &= col_mask
    return df[mask]


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), NaNs ignored; NaN when there are none."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return math.nan
    return float(np.percentile(arr, q))


def stat(values: pd.Series, name: str) -> float:
    """One named statistic of a series: median, mean, p5, p95, p25, p75, min, max (NaNs ignored)."""
    s = pd.to_numeric(values, errors="coerce").dropna()
    if s.empty:
        return math.nan
    if name == "median":
        return float(s.median())
    if name == "mean":
        return float(s.mean())
    if name == "min":
        return float(s.min())
    if name == "max":
        return float(s.max())
    if name.startswith("p") and name[1:].isdigit():
        return percentile(s, float(name[1:]))
    raise ValueError(f"unknown statistic {name!r}")


def describe(values: pd.Series) -> dict[str, float]:
    """median, p5, p95, mean and n (non-missing values) of one metric."""
    s = pd.to_numeric(values, errors="coerce").dropna()
    return {
        "median": stat(s, "median"),
        "p5": stat(s, "p5"),
        "p95": stat(s, "p95"),
        "mean": stat(s, "mean"),
        "n": int(s.size),
    }


def _group_keys(df: pd.DataFrame, metrics: Iterable[str]) -> list[str]:
    if "point_id" in df.columns:
        return ["point_id"]
    return parameter_columns(df, metrics)


def point_summary(df: pd.DataFrame, metrics: Iterable[str]) -> pd.DataFrame:
    """Long table: one row per (point, metric) with the point's parameters, median, p5, p95, mean, n.

    Points are identified by point_id (or, lacking it, by every parameter column) and ordered by
    point_index when present, else by the parameters in category order.
    """
    metrics = [m for m in metrics if m in df.columns]
    params = parameter_columns(df, metrics)
    columns = ["point_index", *params, "point_id", "metric", *STATS]
    if df.empty or not metrics:
        return pd.DataFrame(columns=columns)
    keys = _group_keys(df, metrics)
    records = []
    for _, group in df.groupby(keys, dropna=False, sort=False):
        first = group.iloc[0]
        base = {p: first[p] for p in params}
        base["point_id"] = first.get("point_id", None)
        base["point_index"] = group["point_index"].min() if "point_index" in group else None
        for m in metrics:
            records.append({**base, "metric": m, **describe(group[m])})
    out = pd.DataFrame.from_records(records)
    out = _order_points(out, params)
    return out[[c for c in columns if c in out.columns]]


def _order_points(out: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    if out.empty:
        return out
    if out["point_index"].notna().all():
        return out.sort_values(["point_index"], kind="stable", ignore_index=True)
    keys = [out[p].map(sort_key) for p in params]
    order = sorted(range(len(out)), key=lambda i: tuple(k.iloc[i] for k in keys))
    return out.iloc[order].reset_index(drop=True)


def wide_summary(df: pd.DataFrame, metrics: Iterable[str]) -> pd.DataFrame:
    """One row per point; columns <metric>_median, <metric>_p5, <metric>_p95, <metric>_mean, <metric>_n."""
    long = point_summary(df, metrics)
    if long.empty:
        return long
    id_cols = [c for c in long.columns if c not in ("metric", *STATS)]
    rows: dict[Any, dict[str, Any]] = {}
    for _, r in long.iterrows():
        key = r["point_id"] if pd.notna(r["point_id"]) else tuple(fmt_value(r[c]) for c in id_cols)
        row = rows.setdefault(key, {c: r[c] for c in id_cols})
        for s in STATS:
            row[f"{r['metric']}_{s}"] = r[s]
    return pd.DataFrame(list(rows.values()))


def group_stats(df: pd.DataFrame, by: list[str], y: str) -> pd.DataFrame:
    """median, p5, p95, mean, n of `y` over the rows of each combination of `by` (missing kept).

    Used by the figures: rows of all points sharing the plotted coordinates are pooled.
    """
    by = [b for b in by if b]
    if df.empty:
        return pd.DataFrame(columns=[*by, *STATS])
    if not by:
        return pd.DataFrame([describe(df[y])])
    records = []
    for key, group in df.groupby(by, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        records.append({**dict(zip(by, key, strict=True)), **describe(group[y])})
    return pd.DataFrame.from_records(records)
