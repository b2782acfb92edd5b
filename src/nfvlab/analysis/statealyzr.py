"""Report sections of the StateAlyzr specs: Table 4.13, Fig 4.14 and Table 4.17, ours next to the
paper's, drawn from the specs' tidy rows (one row per middlebox) and analysis/reference/statealyzr.yaml.

The paper analysed PRADS, Snort, HAProxy and OpenVPN; this machine reaches HAProxy, OpenVPN, p0f
and tcpdump. A measured row is shown next to the paper row of the same middlebox, or of the same
kind (p0f, a passive pcap monitor, next to PRADS); tcpdump and Snort have no counterpart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nfvlab.analysis.reference import ReferenceValue
from nfvlab.spec import Spec

# measured middlebox -> (paper middlebox key in the reference file, how they relate)
COUNTERPART = {"haproxy": ("haproxy", "same middlebox, version 2.6 here"),
               "openvpn": ("openvpn", "same middlebox, version 2.6 here"),
               "p0f": ("prads", "same kind: passive pcap monitor")}
PAPER_NAMES = {"prads": "PRADS", "snort": "Snort", "haproxy": "HAProxy", "openvpn": "OpenVPN"}
COUNT_COLS = [("all", "all"), ("persistent", "persistent"), ("top_level", "top-level"),
              ("updateable", "updateable"), ("pkt_output", "pkt-output"), ("log_output", "log-output")]
FIELD_BINS = [("keyed_1_field", "1"), ("keyed_2_fields", "2"), ("keyed_3_fields", "3"),
              ("keyed_4_fields", "4"), ("keyed_5_fields", "5"), ("keyed_6plus_fields", "6+")]


@dataclass
class ReportTable:
    """A paper-vs-measured table of the report."""

    id: str
    title: str
    paper_figure: str | None
    columns: list[str]
    rows: list[list[str]]
    row_classes: list[str] = field(default_factory=list)   # "measured" | "paper" per row
    notes: list[str] = field(default_factory=list)


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.1f}" if abs(v) >= 1 else f"{v:.2g}"
    return str(int(v)) if isinstance(v, (int, float)) else str(v)


def _ref(refs: dict[str, ReferenceValue], key: str) -> float | None:
    r = refs.get(key)
    return float(r.value) if r is not None and isinstance(r.value, (int, float)) else None


def _reduction(a: float | None, b: float | None) -> float | None:
    return round(100.0 * (1 - a / b), 1) if a is not None and b else None


def measured_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per middlebox (first repetition), real middleboxes before the ground truth."""
    if df.empty or "middlebox" not in df.columns:
        return []
    recs = df.sort_values("point_index").drop_duplicates("middlebox").to_dict("records")
    for r in recs:
        missed = r.get("missed_labels")
        r["ground_truth"] = missed is not None and not (isinstance(missed, float) and math.isnan(missed))
    return [r for r in recs if not r["ground_truth"]] + [r for r in recs if r["ground_truth"]]


def _paper_counts(refs: dict[str, ReferenceValue], p: str) -> dict[str, float | None]:
    return {c: _ref(refs, f"table4.13.{p}_{c}") for c, _ in COUNT_COLS}


def table_4_13(df: pd.DataFrame, refs: dict[str, ReferenceValue]) -> ReportTable:
    cols = ["middlebox", "source"] + [h for _, h in COUNT_COLS] + [
        "persistent % of all", "persistent→top-level reduction %", "top-level→updateable reduction %"]
    t = ReportTable("table4-13", "Variables and their properties", "table4.13", cols, [])

    def add(name: str, source: str, c: dict[str, Any], cls: str) -> None:
        pers_pct = round(100.0 * c["persistent"] / c["all"], 1) if c.get("all") and c.get("persistent") else None
        t.rows.append([name, source] + [_num(c.get(k)) for k, _ in COUNT_COLS] + [
            _num(pers_pct), _num(_reduction(c.get("top_level"), c.get("persistent"))),
            _num(_reduction(c.get("updateable"), c.get("top_level")))])
        t.row_classes.append(cls)
    shown = set()
    recs = measured_rows(df)
    for r in (r for r in recs if not r["ground_truth"]):
        add(r["middlebox"], "measured", r, "measured")
        if r["middlebox"] in COUNTERPART:
            p, how = COUNTERPART[r["middlebox"]]
            add(PAPER_NAMES[p], f"paper ({how})", _paper_counts(refs, p), "paper")
            shown.add(p)
    for p in PAPER_NAMES:
        if p not in shown and _ref(refs, f"table4.13.{p}_all") is not None:
            add(PAPER_NAMES[p], "paper (no counterpart reachable here)", _paper_counts(refs, p), "paper")
    for r in (r for r in recs if r["ground_truth"]):
        add(r["middlebox"], "ground truth (hand-labelled), missed labels: " + _num(r.get("missed_labels")),
            r, "measured")
    lo, hi = (_ref(refs, f"table4.13.persistent_to_top_level_reduction_pct_{x}") for x in ("lo", "hi"))
    ulo, uhi = (_ref(refs, f"table4.13.top_level_to_updateable_reduction_pct_{x}") for x in ("lo", "hi"))
    t.notes.append(f"Paper reductions: persistent→top-level {_num(lo)}-{_num(hi)} %, "
                   f"top-level→updateable {_num(ulo)}-{_num(uhi)} %. Output-impacting counts are upper "
                   "bounds (context-insensitive backward slices); '–' = not reported.")
    return t


def flowspace_table(df: pd.DataFrame, refs: dict[str, ReferenceValue]) -> ReportTable:
    cols = ["middlebox", "keyed variables", "min fields", "max fields", "distinct flowspaces"] + [
        f"{label} field(s)" for _, label in FIELD_BINS] + ["not computed (budget)"]
    t = ReportTable("fig4-14-table", "Flowspace dimensions of keyed variables", "4.14", cols, [])
    for r in measured_rows(df):
        t.rows.append([r["middlebox"] + (" (ground truth)" if r["ground_truth"] else ""), _num(r.get("keyed")),
                       _num(r.get("min_flowspace_fields")), _num(r.get("max_flowspace_fields")),
                       _num(r.get("distinct_flowspaces"))] + [_num(r.get(k)) for k, _ in FIELD_BINS]
                      + [_num(r.get("flowspace_not_computed"))])
        t.row_classes.append("measured")
    t.rows.append(["Snort (paper)", "–", "1", _num(_ref(refs, "fig4.14.snort_max_fields")), "–",
                   _num(_ref(refs, "fig4.14.snort_keyed_on_1_field")), "–", "–", "–", "–",
                   _num(_ref(refs, "fig4.14.snort_keyed_on_6_fields")), "–"])
    t.row_classes.append("paper")
    t.rows.append(["PRADS (paper)", "–", "–", _num(_ref(refs, "fig4.14.prads_max_fields"))] + ["–"] * 8)
    t.row_classes.append("paper")
    t.notes.append("distinct flowspaces = how many different header-field sets key the keyed variables of a "
                   "middlebox (1 means every keyed variable got the same fields).")
    return t


def cost_table(df: pd.DataFrame, refs: dict[str, ReferenceValue]) -> ReportTable:
    cols = ["middlebox", "source", "build", "IR compile", "analysis", "peak memory (GB)", "size"]
    t = ReportTable("table4-17", "Time and memory usage", "table4.17", cols, [])
    shown = set()
    for r in measured_rows(df):
        if r["ground_truth"]:
            continue
        mem = r.get("peak_rss_mb")
        gb = mem / 1024 if mem is not None and not (isinstance(mem, float) and math.isnan(mem)) else None
        t.rows.append([r["middlebox"], "measured (2 shared cores)", _secs(r.get("build_s")),
                       _secs(r.get("ir_compile_s")), _secs(r.get("analysis_s")),
                       f"{gb:.2f}" if gb is not None else "–", _num(r.get("instructions")) + " IR instructions"])
        t.row_classes.append("measured")
        if r["middlebox"] in COUNTERPART:
            p, how = COUNTERPART[r["middlebox"]]
            t.rows.append(_paper_cost(refs, p, f"paper, CodeSurfer ({how})"))
            t.row_classes.append("paper")
            shown.add(p)
    for p in PAPER_NAMES:
        if p not in shown and _ref(refs, f"table4.17.{p}_analysis_h") is not None:
            t.rows.append(_paper_cost(refs, p, "paper, CodeSurfer"))
            t.row_classes.append("paper")
    t.notes.append("build = the middlebox's own build under bear (– when an earlier run built it); IR "
                   "compile = replaying its units with clang-14 (0 when the units were up to date); "
                   "analysis = after parsing the IR, one process per middlebox; peak memory = that "
                   "process's ru_maxrss. The paper's compile column is CodeSurfer's build.")
    return t


def _secs(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.0f} s ({v / 60:.1f} min)" if v >= 60 else f"{v:.1f} s"


def _paper_cost(refs: dict[str, ReferenceValue], p: str, source: str) -> list[str]:
    def h(key: str) -> str:
        v = _ref(refs, f"table4.17.{p}_{key}")
        return "–" if v is None else f"{v:g} h"
    return [PAPER_NAMES[p], source, h("compile_h"), "–", h("analysis_h"), _num(_ref(refs, f"table4.17.{p}_memory_gb")),
            _num(_ref(refs, f"table4.13.{p}_all")) + " variables"]


def fig_4_14(df: pd.DataFrame, out_dir: Path) -> tuple[dict[str, Path], int, str | None]:
    """Grouped bars: keyed variables by number of flowspace header fields, one colour per middlebox."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    recs = [r for r in measured_rows(df) if (r.get("keyed") or 0) > 0]
    if not recs:
        return {}, 0, "no keyed variables in the rows"
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / len(recs)
    for i, r in enumerate(recs):
        ys = [r.get(k) or 0 for k, _ in FIELD_BINS]
        ax.bar([x + i * width - 0.4 + width / 2 for x in range(len(FIELD_BINS))], ys, width,
               label=r["middlebox"] + (" (gt)" if r["ground_truth"] else ""))
    ax.set_xticks(range(len(FIELD_BINS)))
    ax.set_xticklabels([label for _, label in FIELD_BINS])
    ax.set_xlabel("header fields in the flowspace")
    ax.set_ylabel("keyed variables")
    ax.set_title("Flowspace dimensions of keyed variables (cf. Fig 4.14)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for f in ("png", "svg"):
        files[f] = out_dir / f"fig4-14.{f}"
        fig.savefig(files[f], dpi=120, **({"metadata": {"Date": None}} if f == "svg" else {}))
    plt.close(fig)
    return files, len(recs), None


def sections(spec: Spec, df: pd.DataFrame, refs: dict[str, ReferenceValue],
             fig_dir: Path) -> tuple[list[ReportTable], list[tuple[str, str, str, dict[str, Path], int, str | None]]]:
    """The tables and figures a StateAlyzr spec adds to the report, chosen by its paper figures."""
    tables: list[ReportTable] = []
    figures = []
    figs = set(spec.paper.figures)
    if "table4.13" in figs:
        tables.append(table_4_13(df, refs))
    if "4.14" in figs:
        files, n, err = fig_4_14(df, fig_dir)
        figures.append(("fig4-14", "Flowspace dimensions of keyed variables", "4.14", files, n, err))
        tables.append(flowspace_table(df, refs))
    if "table4.17" in figs:
        tables.append(cost_table(df, refs))
    return tables, figures
