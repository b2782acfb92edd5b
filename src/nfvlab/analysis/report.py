"""The HTML report: every experiment's figures, per-point summary, claims and provenance.

`build_report()` reads whatever results exist (any subset of the specs, specs with zero rows,
missing provenance), draws each spec's figures into results/<spec>/figures/, copies them next to
the report so results/report/ works when opened from disk, evaluates the claims and writes
results/report/index.html and results/report/claims.csv.
"""

from __future__ import annotations

import json
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
from nfvlab.analysis.claims import VERDICTS, ClaimResult, evaluate_claim, tally
from nfvlab.analysis.figures import FigureOutput, make_figures
from nfvlab.analysis.reference import ReferenceError, ReferenceValue, load_references
from nfvlab.results import ResultStore, atomic_write
from nfvlab.spec import Spec, SpecError, load_spec

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = "report.html.j2"
CLAIM_COLUMNS = ["spec", "claim_id", "statement", "verdict", "paper_value", "reference", "reference_value",
                 "reference_mismatch", "measured", "condition", "metric", "where", "point_stat",
                 "across_points", "band", "one_sided", "check", "n_points", "n_rows", "notes"]
# experiment kind -> "module:function" adding kind-specific tables and figures (paper vs measured)
KIND_SECTIONS = {"statealyzr": "nfvlab.analysis.statealyzr:sections"}
PROVENANCE_FIELDS = [("status", "status"), ("start", "start"), ("end", "end"), ("scale", "scale"),
                     ("spec_hash", "spec hash"), ("host", "host"), ("kernel", "kernel"),
                     ("cpu_model", "CPU model"), ("cores", "cores"), ("cgroup_version", "cgroup version"),
                     ("python", "python")]


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


@dataclass
class Experiment:
    """Everything the template shows for one spec file."""

    file: str
    name: str
    status: str  # "ok" (has rows), "not run" (no rows), "invalid" (spec does not load)
    description: str = ""
    paper_figures: list[str] = field(default_factory=list)
    section: str | None = None
    n_rows: int = 0
    n_points: int = 0
    scales: list[str] = field(default_factory=list)
    error: str | None = None
    figures: list[dict[str, Any]] = field(default_factory=list)
    summary_columns: list[str] = field(default_factory=list)
    summary_rows: list[list[str]] = field(default_factory=list)
    summary_metrics: list[str] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)  # kind-specific paper-vs-measured tables
    provenance: list[tuple[str, str]] | None = None
    provenance_tools: list[tuple[str, str]] = field(default_factory=list)
    provenance_error: str | None = None

    @property
    def anchor(self) -> str:
        return self.name


def key_metrics(spec: Spec, df: pd.DataFrame) -> list[str]:
    """The metrics the figures and claims are about, in first-mention order, that the rows have."""
    names: list[str] = []
    for m in [*(f.y for f in spec.figures), *(c.metric for c in spec.claims)]:
        if m in spec.metrics and m not in names:
            names.append(m)
    if not names:
        names = list(spec.metrics[:3])
    return [m for m in names if m in df.columns]


def summary_table(spec: Spec, df: pd.DataFrame) -> tuple[list[str], list[list[str]], list[str]]:
    """Per-point table: the swept parameters, n, and median, p5, p95 of each key metric.

    Returns (parameter columns, rows, metrics); a row is the parameter labels, n, then three cells
    per metric.
    """
    metrics = key_metrics(spec, df)
    long = point_summary(df, metrics)
    if long.empty:
        return [], [], metrics
    axes = varying_parameters(df, spec.metrics)
    rows = []
    for _, group in long.groupby("point_id", sort=False, dropna=False):
        first = group.iloc[0]
        n = int(group["n"].max())
        row = [fmt_value(first[a]) for a in axes] + [str(n)]
        by_metric = {r["metric"]: r for _, r in group.iterrows()}
        for m in metrics:
            r = by_metric.get(m)
            row += [fmt_num(r[s]) if r is not None else "–" for s in ("median", "p5", "p95")]
        rows.append(row)
    return axes, rows, metrics


def fmt_plain(v: Any) -> str:
    """A paper/reference value as written: 1.18, 6, 0.706; '–' when missing."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:g}"
    return str(v)


def read_provenance(store: ResultStore) -> tuple[list[tuple[str, str]] | None, list[tuple[str, str]], str | None]:
    """The `latest` block of provenance.json as (field, value) pairs, the tool versions, an error."""
    path = store.dir / "provenance.json"
    if not path.exists():
        return None, [], "no provenance.json"
    try:
        doc = json.loads(path.read_text())
        latest = doc["latest"]
        if not isinstance(latest, dict):
            raise TypeError("'latest' is not an object")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        return None, [], f"unreadable provenance.json: {e}"
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


def _experiment(path: Path, results_root: Path, report_dir: Path,
                references: dict[str, ReferenceValue]) -> Experiment:
    try:
        spec = load_spec(path)
    except SpecError as e:
        return Experiment(file=path.name, name=path.stem, status="invalid", error="; ".join(e.problems))
    store = ResultStore(results_root, spec.name)
    exp = Experiment(file=path.name, name=spec.name, status="not run", description=spec.description.strip(),
                     paper_figures=list(spec.paper.figures), section=spec.paper.section)
    try:
        df = store.frame()
    except Exception as e:  # noqa: BLE001 - a damaged results folder is reported, not fatal
        df = pd.DataFrame()
        exp.error = f"cannot read results: {type(e).__name__}: {e}"
    exp.n_rows = int(len(df))
    if not df.empty:
        exp.status = "ok"
        exp.n_points = int(df["point_id"].nunique()) if "point_id" in df else exp.n_rows
        if "scale" in df:
            exp.scales = sorted({fmt_value(s) for s in df["scale"]})
        for out in make_figures(spec, df, store.figures_dir):
            exp.figures.append(_copy_figure(out, spec.name, report_dir))
        exp.summary_columns, exp.summary_rows, exp.summary_metrics = summary_table(spec, df)
        long = point_summary(df, spec.metrics)
        if not long.empty:
            atomic_write(store.dir / "summary.csv", long.to_csv(index=False))
    # also without rows: the paper's side of a paper-vs-measured table is worth showing
    _kind_sections(exp, spec, df, store.figures_dir, report_dir, references)
    exp.claims = [evaluate_claim(c, df, spec.name, references) for c in spec.claims]
    exp.provenance, exp.provenance_tools, exp.provenance_error = read_provenance(store)
    return exp


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


def build_report(results_root: Path | None = None, experiments_dir: Path | None = None,
                 reference_dir: Path | None = None) -> Path:
    """Figures, claims and results/report/index.html from whatever results exist; returns its path.

    Defaults: results_root = $NFVLAB_RESULTS or <repo>/results (as the runner),
    experiments_dir = <repo>/experiments, reference_dir = <repo>/analysis/reference.
    """
    results_root = Path(results_root) if results_root is not None else default_results_root()
    experiments_dir = Path(experiments_dir) if experiments_dir is not None else default_experiments_dir()
    report_dir = results_root / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(report_dir / "figures", ignore_errors=True)  # only figures of this build

    problems: list[str] = []
    try:
        references = load_references(reference_dir)
    except ReferenceError as e:
        references = {}
        problems.append(str(e))
    if not references:
        problems.append("no reference values loaded (analysis/reference/*.yaml)")

    experiments = [_experiment(p, results_root, report_dir, references)
                   for p in sorted(experiments_dir.glob("*.yaml"))]
    if not experiments:
        problems.append(f"no experiment specs in {experiments_dir}")
    claims = [c for e in experiments for c in e.claims]
    counts = tally(claims)
    _publish(report_dir / "claims.csv", claims_frame(claims).to_csv(index=False))

    html = _environment().get_template(TEMPLATE).render(
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        experiments=experiments,
        counts=counts,
        verdicts=VERDICTS,
        n_claims=len(claims),
        orphans=_orphans(results_root, {e.name for e in experiments} | {"report"}),
        problems=problems,
        results_root=str(results_root),
        n_references=len(references),
    )
    index = report_dir / "index.html"
    _publish(index, html)
    return index
