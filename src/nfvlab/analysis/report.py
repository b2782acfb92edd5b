"""The HTML report a reviewer reads: grouped by the dissertation's figures and tables.

`build_report()` reads whatever results exist (any subset of the specs, specs with zero rows,
missing provenance), selects each spec's current rows (current.py: points of the plan at the reported
scale, current stamps), evaluates the claims on them (claims.py), draws each spec's figures, and
writes results/report/index.html and results/report/claims.csv:

- a one-screen summary on top: reproduction verdict counts, one line per paper figure/table;
- one section per paper figure/table: the plots, the claims beside them (paper value, measured with
  its p5-p95 spread, band, verdict, expected vs found), the stamps of the rows behind them
  (commit, dirty, code hash, testbed hash, Iron's calibration as a fitted input);
- self-checks apart (they never count as reproductions);
- per experiment: row accounting (current / stale / off-plan), per-point summary with stability
  flags, provenance; and the artifact-evaluation guide (artifact.py).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from nfvlab.analysis.aggregate import fmt_value, point_summary, varying_parameters
from nfvlab.analysis.claims import VERDICTS, ClaimResult, evaluate_claims, tally
from nfvlab.analysis.current import (
    CurrentRows,
    StampCheck,
    load_current_stamps,
    read_provenance,
    reported_scale,
    select_current,
)
from nfvlab.analysis.figures import FigureOutput, make_figures
from nfvlab.analysis.reference import ReferenceError, ReferenceValue, load_references
from nfvlab.analysis.sections import PaperItem, claim_item, ensure_item, home_item, normalise, paper_items
from nfvlab.analysis.stability import assess
from nfvlab.results import ResultStore, atomic_write
from nfvlab.spec import Spec, SpecError, load_spec

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = "report.html.j2"
CLAIM_COLUMNS = ["spec", "claim_id", "check", "statement", "verdict", "would_be", "scale", "paper_value",
                 "reference", "reference_value", "reference_mismatch", "measured", "spread", "band", "one_sided",
                 "condition", "deciding_point", "coverage", "missing", "unstable_points", "metric", "where",
                 "point_stat", "across_points", "expected_points", "found_points", "expected_repetitions",
                 "n_points", "n_rows", "notes"]
# experiment kind -> "module:function" adding kind-specific tables and figures (paper vs measured)
KIND_SECTIONS = {"statealyzr": "nfvlab.analysis.statealyzr:sections"}
PROVENANCE_FIELDS = [("status", "status"), ("start", "start"), ("end", "end"), ("scale", "scale"),
                     ("spec_hash", "spec hash"), ("host", "host"), ("kernel", "kernel"),
                     ("cpu_model", "CPU model"), ("cores", "cores"), ("cgroup_version", "cgroup version"),
                     ("python", "python")]
STAMP_COLUMNS = [("run_id", "run id"), ("git_commit", "git commit"), ("git_dirty", "dirty"),
                 ("code_hash", "code hash"), ("testbed_hash", "testbed hash")]


def default_results_root() -> Path:
    return Path(os.environ.get("NFVLAB_RESULTS", REPO / "results"))


def default_experiments_dir() -> Path:
    return REPO / "experiments"


def fmt_num(v: Any) -> str:
    """A measured number for a table: 3 significant-ish digits, '–' when missing."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        if isinstance(v, float) and math.isnan(v):
            return "–"
        if isinstance(v, float) and math.isinf(v):
            return "inf" if v > 0 else "-inf"
        a = abs(v)
        if isinstance(v, int) or float(v).is_integer() and a >= 1:
            return f"{int(v):,}" if a >= 10000 else str(int(v))
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 10:
            return f"{v:.1f}"
        return f"{v:.3f}"
    return str(v)


def fmt_plain(v: Any) -> str:
    """A paper/reference value as written: 1.18, 6, 0.706; '–' when missing."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:g}"
    return str(v)


@dataclass
class Experiment:
    """Everything the template shows for one spec file."""

    file: str
    name: str
    status: str  # "ok" (current rows), "stale" (rows, none current), "not run", "invalid"
    description: str = ""
    paper_figures: list[str] = field(default_factory=list)
    section: str | None = None
    home: str = ""
    n_rows: int = 0  # every stored row
    n_current: int = 0  # current rows of the plan at the reported scale
    scale: str | None = None
    scale_source: str = ""
    expected_points: int = 0
    expected_repetitions: int = 0
    row_notes: list[str] = field(default_factory=list)
    error: str | None = None
    figures: list[dict[str, Any]] = field(default_factory=list)
    figures_from: str = ""  # which rows the figures were drawn from
    summary_columns: list[str] = field(default_factory=list)
    summary_rows: list[list[str]] = field(default_factory=list)
    summary_metrics: list[str] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)  # kind-specific paper-vs-measured tables
    stamps: list[tuple[str, str]] = field(default_factory=list)
    calibration: list[tuple[str, str]] = field(default_factory=list)
    provenance: list[tuple[str, str]] | None = None
    provenance_tools: list[tuple[str, str]] = field(default_factory=list)
    provenance_error: str | None = None
    run_seconds: list[float] = field(default_factory=list)  # recorded run durations (artifact guide)

    @property
    def anchor(self) -> str:
        return "exp-" + self.name


@dataclass
class Section:
    """One figure or table of the dissertation with everything measured for it."""

    item: PaperItem
    figures: list[tuple[Experiment, dict[str, Any]]] = field(default_factory=list)
    tables: list[tuple[Experiment, Any]] = field(default_factory=list)
    claims: list[tuple[Experiment, ClaimResult]] = field(default_factory=list)
    experiments: list[Experiment] = field(default_factory=list)

    @property
    def reproductions(self) -> list[tuple[Experiment, ClaimResult]]:
        return [(e, c) for e, c in self.claims if not c.is_self_check]

    @property
    def self_checks(self) -> list[tuple[Experiment, ClaimResult]]:
        return [(e, c) for e, c in self.claims if c.is_self_check]


def key_metrics(spec: Spec, df: pd.DataFrame) -> list[str]:
    """The metrics the figures and claims are about, in first-mention order, that the rows have."""
    names: list[str] = []
    for m in [*(f.y for f in spec.figures), *(c.metric for c in spec.claims)]:
        if m in spec.metrics and m not in names:
            names.append(m)
    if not names:
        names = list(spec.metrics[:3])
    return [m for m in names if m in df.columns]


def summary_table(spec: Spec, df: pd.DataFrame, planned: int) -> tuple[list[str], list[list[str]], list[str]]:
    """Per-point table: the swept parameters, n, median/p5/p95 of each key metric, stability flags.

    Returns (parameter columns, rows, metrics); a row is the parameter labels, n, three cells per
    metric, then the stability warnings (pyperf-style, stability.py) of the key metrics.
    """
    metrics = key_metrics(spec, df)
    long = point_summary(df, metrics)
    if long.empty:
        return [], [], metrics
    axes = varying_parameters(df, spec.metrics)
    rows = []
    for pid, group in long.groupby("point_id", sort=False, dropna=False):
        first = group.iloc[0]
        n = int(group["n"].max())
        row = [fmt_value(first[a]) for a in axes] + [str(n)]
        by_metric = {r["metric"]: r for _, r in group.iterrows()}
        for m in metrics:
            r = by_metric.get(m)
            row += [fmt_num(r[s]) if r is not None else "–" for s in ("median", "p5", "p95")]
        point_rows = df[df["point_id"] == pid]
        flags = []
        for m in metrics:
            st = assess(point_rows[m], planned)
            flags += [f"{m}: {w}" for w in st.warnings]
        row.append("; ".join(flags) if flags else "stable")
        rows.append(row)
    return axes, rows, metrics


def read_provenance_pairs(doc: dict[str, Any] | None) -> tuple[list[tuple[str, str]] | None,
                                                               list[tuple[str, str]], str | None]:
    """The `latest` block of provenance.json as (field, value) pairs, the tool versions, an error."""
    if doc is None:
        return None, [], "no provenance.json (or unreadable)"
    latest = doc.get("latest")
    if not isinstance(latest, dict):
        return None, [], "unreadable provenance.json: no 'latest' object"
    git = latest.get("git") or {}
    commit = git.get("commit") if isinstance(git, dict) else git
    commit_text = f"{commit or 'unknown'}{' (dirty)' if isinstance(git, dict) and git.get('dirty') else ''}"
    pairs = [("git commit", commit_text)]
    pairs += [(label, fmt_num(latest.get(key)) if latest.get(key) is not None else "–")
              for key, label in PROVENANCE_FIELDS]
    runs = doc.get("runs")
    if isinstance(runs, list):
        pairs.append(("runs recorded", str(len(runs))))
    tools = [(k, str(v) if v else "not found") for k, v in (latest.get("tools") or {}).items()]
    tools += [(k, str(v) if v else "not installed") for k, v in (latest.get("packages") or {}).items()]
    return pairs, tools, None


def run_durations(doc: dict[str, Any] | None) -> list[tuple[str | None, float, int]]:
    """(scale, seconds, repetitions measured) of every recorded complete run with start and end."""
    out = []
    for run in (doc or {}).get("runs") or []:
        if not isinstance(run, dict) or run.get("status") != "complete":
            continue
        try:
            start = datetime.fromisoformat(str(run["start"]))
            end = datetime.fromisoformat(str(run["end"]))
        except (KeyError, ValueError):
            continue
        out.append((run.get("scale"), (end - start).total_seconds(), int(run.get("done") or 0)))
    return out


def _distinct(df: pd.DataFrame, col: str, skip_missing: bool = False) -> str:
    if col not in df.columns:
        return "no stamps"
    column = df[col].dropna() if skip_missing else df[col]
    values = sorted({fmt_value(v) for v in column})
    return ", ".join(values) if len(values) <= 3 else f"{', '.join(values[:3])} (+{len(values) - 3} more)"


def row_stamps(df: pd.DataFrame) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The stamps of the rows a verdict used, and the calibration values they were measured with."""
    if df.empty:
        return [], []
    stamps = [(label, _distinct(df, col)) for col, label in STAMP_COLUMNS]
    # only the points that use Iron carry a calibration; the others have none to show
    calibration = [(c.removeprefix("calibration_"), _distinct(df, c, skip_missing=True))
                   for c in df.columns if c.startswith("calibration_") and df[c].notna().any()]
    return stamps, calibration


def _copy_figure(out: FigureOutput, spec_name: str, report_dir: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": out.id, "title": out.title, "kind": out.kind,
                             "paper_figure": out.paper_figure, "n_rows": out.n_rows, "error": out.error}
    for fmt, src in out.files.items():
        rel = Path("figures") / spec_name / src.name
        dest = report_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        entry[fmt] = rel.as_posix()
    return entry


def _kind_sections(exp: Experiment, spec: Spec, df: pd.DataFrame, figures_dir: Path, report_dir: Path,
                   references: dict[str, ReferenceValue]) -> None:
    """Tables and figures of the spec's kind that the generic figure kinds cannot draw."""
    target = KIND_SECTIONS.get(spec.kind)
    if target is None:
        return
    module, attr = target.split(":")
    try:
        tables, figures = getattr(import_module(module), attr)(spec, df, references, figures_dir)
    except Exception as e:  # noqa: BLE001 - a broken section is reported, not fatal
        exp.error = f"{spec.kind} report sections failed: {type(e).__name__}: {e}"
        return
    exp.tables = tables
    for fid, title, paper_figure, files, n, err in figures:
        out = FigureOutput(fid, title, "bar", paper_figure, files, n, err)
        exp.figures.append(_copy_figure(out, spec.name, report_dir))


def _experiment(path: Path, results_root: Path, report_dir: Path | None, references: dict[str, ReferenceValue],
                items: dict[str, PaperItem], scale: str | None,
                stamps: StampCheck | None) -> tuple[Experiment, Spec | None]:
    """One spec's current rows, verdicts, stamps and (with a report_dir) figures."""
    try:
        spec = load_spec(path)
    except SpecError as e:
        return Experiment(file=path.name, name=path.stem, status="invalid", error="; ".join(e.problems)), None
    store = ResultStore(results_root, spec.name)
    exp = Experiment(file=path.name, name=spec.name, status="not run", description=spec.description.strip(),
                     paper_figures=list(spec.paper.figures), section=spec.paper.section,
                     home=home_item(spec, items))
    try:
        df = store.frame()
    except Exception as e:  # noqa: BLE001 - a damaged results folder is reported, not fatal
        df = pd.DataFrame()
        exp.error = f"cannot read results: {type(e).__name__}: {e}"
    provenance = read_provenance(store.dir)
    chosen, source = reported_scale(spec, df, provenance, scale if scale in spec.scales or scale is None else None)
    if scale is not None and scale not in spec.scales:
        exp.row_notes.append(f"--scale {scale} is not a scale of this spec; reported at {chosen} ({source})")
    check = stamps if stamps is not None else load_current_stamps(spec)
    current = select_current(spec, df, chosen, check, source)
    exp.n_rows, exp.n_current = int(len(df)), int(len(current.rows))
    exp.scale, exp.scale_source = chosen, source
    exp.expected_points, exp.expected_repetitions = len(current.points), current.repetitions
    exp.row_notes += current.notes()
    if exp.n_current:
        exp.status = "ok"
    elif exp.n_rows:
        exp.status = "stale"

    # Figures from the current rows; with none current, from every stored row, said so in the caption.
    fig_rows, exp.figures_from = current.rows, f"{exp.n_current} current rows"
    if current.rows.empty and not df.empty:
        fig_rows, exp.figures_from = df, f"{exp.n_rows} stored rows, none current (see the row notes)"
    if not fig_rows.empty:
        if report_dir is not None:
            for out in make_figures(spec, fig_rows, store.figures_dir):
                exp.figures.append(_copy_figure(out, spec.name, report_dir))
        exp.summary_columns, exp.summary_rows, exp.summary_metrics = summary_table(spec, fig_rows,
                                                                                   current.repetitions)
        long = point_summary(fig_rows, spec.metrics)
        if not long.empty and report_dir is not None:
            atomic_write(store.dir / "summary.csv", long.to_csv(index=False))
    # also without rows: the paper's side of a paper-vs-measured table is worth showing
    if report_dir is not None:
        _kind_sections(exp, spec, current.rows, store.figures_dir, report_dir, references)
    exp.claims = evaluate_claims(spec, current, references)
    exp.stamps, exp.calibration = row_stamps(current.rows if not current.rows.empty else df)
    exp.provenance, exp.provenance_tools, exp.provenance_error = read_provenance_pairs(provenance)
    exp.run_seconds = [s for sc, s, _ in run_durations(provenance) if sc == chosen]
    return exp, spec


def _sections(experiments: list[tuple[Experiment, Spec | None]], items: dict[str, PaperItem]) -> list[Section]:
    by_id: dict[str, Section] = {}

    def section(fig_id: str, spec: Spec) -> Section:
        item = ensure_item(items, fig_id, spec)
        return by_id.setdefault(fig_id, Section(item))

    for exp, spec in experiments:
        if spec is None:
            continue
        for entry in exp.figures:
            fig_id = normalise(entry.get("paper_figure"), items) or exp.home
            section(fig_id, spec).figures.append((exp, entry))
        for table in exp.tables:
            fig_id = normalise(getattr(table, "paper_figure", None), items) or exp.home
            section(fig_id, spec).tables.append((exp, table))
        for claim in exp.claims:
            fig_id = claim_item(claim.reference)
            fig_id = fig_id if fig_id in items else exp.home
            section(fig_id, spec).claims.append((exp, claim))
        if not exp.figures and not exp.claims:
            section(exp.home, spec)
        for s in by_id.values():
            if any(e is exp for e, _ in [*s.figures, *s.tables, *s.claims]) and exp not in s.experiments:
                s.experiments.append(exp)
        if exp not in by_id[exp.home].experiments:
            by_id[exp.home].experiments.append(exp)
    return sorted(by_id.values(), key=lambda s: s.item.order)


def _orphans(results_root: Path, known: set[str]) -> list[str]:
    if not results_root.is_dir():
        return []
    return sorted(p.name for p in results_root.iterdir()
                  if p.is_dir() and p.name not in known and (p / "rows").is_dir())


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt_num
    env.filters["plain"] = fmt_plain
    env.filters["slug"] = lambda s: str(s).replace(" ", "-")
    return env


def claims_frame(claims: list[ClaimResult]) -> pd.DataFrame:
    return pd.DataFrame([c.as_record() for c in claims], columns=CLAIM_COLUMNS)


def _publish(path: Path, text: str) -> None:
    """Atomic write, readable by everyone (the report is opened from disk, maybe by another user)."""
    atomic_write(path, text)
    path.chmod(0o644)


def _references(reference_dir: Path | None, problems: list[str]) -> dict[str, ReferenceValue]:
    try:
        references = load_references(reference_dir)
    except ReferenceError as e:
        references = {}
        problems.append(str(e))
    if not references:
        problems.append("no reference values loaded (analysis/reference/*.yaml)")
    return references


def build_report_parts(results_root: Path | None = None, experiments_dir: Path | None = None,
                       reference_dir: Path | None = None, scale: str | None = None,
                       stamps: StampCheck | None = None, report_dir: Path | None = None,
                       problems: list[str] | None = None) -> tuple[list[tuple[Experiment, Spec | None]],
                                                                  list[Section], Path]:
    """Every spec's experiment (evaluated claims, stamps) and the paper sections, without writing HTML.

    With ``report_dir`` the figures are drawn and copied there (the report); without, nothing is drawn
    (the artifact guide needs the verdicts and times only).
    """
    results_root = Path(results_root) if results_root is not None else default_results_root()
    experiments_dir = Path(experiments_dir) if experiments_dir is not None else default_experiments_dir()
    problems = problems if problems is not None else []
    references = _references(reference_dir, problems)
    items = paper_items(references)
    loaded = [_experiment(p, results_root, report_dir, references, items, scale, stamps)
              for p in sorted(experiments_dir.glob("*.yaml"))]
    if not loaded:
        problems.append(f"no experiment specs in {experiments_dir}")
    return loaded, _sections(loaded, items), results_root


def build_report(results_root: Path | None = None, experiments_dir: Path | None = None,
                 reference_dir: Path | None = None, scale: str | None = None,
                 stamps: StampCheck | None = None, artifact: bool = True) -> Path:
    """Figures, claims and results/report/index.html from whatever results exist; returns its path.

    Defaults: results_root = $NFVLAB_RESULTS or <repo>/results (as the runner),
    experiments_dir = <repo>/experiments, reference_dir = <repo>/analysis/reference.
    ``scale`` overrides the reported scale of every spec that defines it (``nfvlab report --scale``);
    ``stamps`` the current stamps (default: nfvlab.stamps.current_stamps per spec, when present).
    """
    results_root = Path(results_root) if results_root is not None else default_results_root()
    report_dir = results_root / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(report_dir / "figures", ignore_errors=True)  # only figures of this build
    problems: list[str] = []
    loaded, sections, _ = build_report_parts(results_root, experiments_dir, reference_dir, scale, stamps,
                                             report_dir, problems)
    experiments = [e for e, _ in loaded]
    claims = [c for e in experiments for c in e.claims]
    _publish(report_dir / "claims.csv", claims_frame(claims).to_csv(index=False))
    stamp_notes = sorted({n for e in experiments for n in e.row_notes if n.startswith("stamps not checked")})
    guide = None
    if artifact:
        from nfvlab.analysis.artifact import build_guide  # noqa: PLC0415 - artifact imports report

        guide = build_guide(loaded, sections, results_root)
    html = _environment().get_template(TEMPLATE).render(
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        experiments=experiments,
        sections=sections,
        counts=tally(claims),
        self_counts=tally(claims, "self-check"),
        verdicts=VERDICTS,
        n_claims=sum(not c.is_self_check for c in claims),
        n_self_checks=sum(c.is_self_check for c in claims),
        self_checks=[(e, c) for e in experiments for c in e.claims if c.is_self_check],
        stamp_notes=stamp_notes,
        orphans=_orphans(results_root, {e.name for e in experiments} | {"report"}),
        problems=problems,
        results_root=str(results_root),
        n_references=len(_references(reference_dir, [])),
        guide=guide,
    )
    index = report_dir / "index.html"
    _publish(index, html)
    return index


def current_rows(spec: Spec, results_root: Path | None = None, scale: str | None = None,
                 stamps: StampCheck | None = None) -> CurrentRows:
    """The current rows of one spec's stored results (for other tools: the artifact guide, tests)."""
    root = Path(results_root) if results_root is not None else default_results_root()
    store = ResultStore(root, spec.name)
    df = store.frame()
    chosen, source = reported_scale(spec, df, read_provenance(store.dir), scale)
    return select_current(spec, df, chosen, stamps if stamps is not None else load_current_stamps(spec), source)
