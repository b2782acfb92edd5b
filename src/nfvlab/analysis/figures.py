"""Figures mirroring the paper's, drawn from a spec's `figures:` entries (matplotlib Agg + seaborn).

- ``line``: median of y per x (and hue line, and col facet) with a p5-p95 band and error bars
  (Fig 2.1-2.3, 2.9, 2.10). A parameter on the x axis is categorical: its values are evenly spaced
  with infinity right-most, labelled "inf" (the paper's "no rate limiter" point).
- ``scatter``: every repetition a dot, plus a red line averaging y in x-buckets of width ``bucket``
  (Fig 2.4, 2.5).
- ``box``: boxes from p25 to p75 with a red median and whiskers at p5/p95 (Fig 2.11, 2.12, 2.16).

Rows are filtered by the figure's ``where``; ``reference_line`` draws a dashed horizontal line.
Each figure is saved as results/<spec>/figures/<figure id>.png and .svg.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from nfvlab.analysis.aggregate import apply_where, fmt_value, group_stats, ordered_categories  # noqa: E402
from nfvlab.spec import Figure, Spec  # noqa: E402

FORMATS = ("png", "svg")
FACET_W, FACET_H = 4.6, 3.6


@dataclass
class FigureOutput:
    id: str
    title: str
    kind: str
    paper_figure: str | None
    files: dict[str, Path]  # format -> path (empty when nothing was drawn)
    n_rows: int
    error: str | None = None

    @property
    def png(self) -> Path | None:
        return self.files.get("png")

    @property
    def svg(self) -> Path | None:
        return self.files.get("svg")


def _is_categorical_x(data: pd.DataFrame, x: str, metrics: Iterable[str]) -> bool:
    """Parameters are categories (evenly spaced, inf right-most); metrics are continuous."""
    if x not in set(metrics):
        return True
    col = pd.to_numeric(data[x], errors="coerce")
    return bool(col.isna().all() or np.isinf(col).any())


def _positions(data: pd.DataFrame, x: str, categorical: bool) -> tuple[pd.Series, list[float], list[str]]:
    """x positions of the rows, plus tick positions and labels for a categorical axis."""
    if not categorical:
        return pd.to_numeric(data[x], errors="coerce").astype(float), [], []
    cats = ordered_categories(data[x])
    index = {fmt_value(v): i for i, v in enumerate(cats)}
    pos = data[x].map(lambda v: float(index[fmt_value(v)]))
    return pos, [float(i) for i in range(len(cats))], [fmt_value(v) for v in cats]


def _facets(data: pd.DataFrame, col: str | None) -> list[tuple[str | None, pd.DataFrame]]:
    if not col:
        return [(None, data)]
    out = []
    for v in ordered_categories(data[col]):
        label = fmt_value(v)
        out.append((label, data[data[col].map(fmt_value) == label]))
    return out


def _hues(data: pd.DataFrame, hue: str | None) -> list[str | None]:
    if not hue:
        return [None]
    return [fmt_value(v) for v in ordered_categories(data[hue])]


def _subset(data: pd.DataFrame, hue: str | None, label: str | None) -> pd.DataFrame:
    if hue is None or label is None:
        return data
    return data[data[hue].map(fmt_value) == label]


def _draw_line(ax: plt.Axes, data: pd.DataFrame, fig: Figure, hue_labels: list[str | None],
               palette: list) -> None:
    for color, label in zip(palette, hue_labels, strict=False):
        sub = _subset(data, fig.hue, label)
        st = group_stats(sub, ["_x"], fig.y).dropna(subset=["median"])
        st = st[np.isfinite(st["_x"].astype(float))].sort_values("_x")
        if st.empty:
            continue
        xs = st["_x"].to_numpy(float)
        med, lo, hi = (st[c].to_numpy(float) for c in ("median", "p5", "p95"))
        name = label if fig.hue else None
        ax.fill_between(xs, lo, hi, color=color, alpha=0.15, linewidth=0)
        ax.errorbar(xs, med, yerr=[med - lo, hi - med], color=color, marker="o", markersize=4,
                    capsize=3, linewidth=1.5, label=name)


def _draw_scatter(ax: plt.Axes, data: pd.DataFrame, fig: Figure, categorical: bool,
                  hue_labels: list[str | None], palette: list) -> None:
    plot = data.assign(_y=pd.to_numeric(data[fig.y], errors="coerce"))
    plot = plot[np.isfinite(plot["_x"]) & np.isfinite(plot["_y"])]
    if fig.hue:
        plot = plot.assign(_hue=plot[fig.hue].map(fmt_value))
        sns.scatterplot(data=plot, x="_x", y="_y", hue="_hue", hue_order=[h for h in hue_labels if h],
                        palette=palette[: len(hue_labels)], ax=ax, s=18, alpha=0.7, linewidth=0)
        legend = ax.get_legend()
        if legend is not None:
            legend.set_title(fig.hue)
    else:
        sns.scatterplot(data=plot, x="_x", y="_y", color="tab:green", ax=ax, s=18, alpha=0.7,
                        linewidth=0, label="trial")
    if fig.bucket and not categorical and not plot.empty:
        b = np.floor(plot["_x"] / fig.bucket)
        means = plot.groupby(b)["_y"].mean().sort_index()
        centers = (means.index.to_numpy(float) + 0.5) * fig.bucket
        ax.plot(centers, means.to_numpy(float), color="red", linewidth=2,
                label=f"bucket mean (width {fmt_value(fig.bucket)})")


def _box_stats(values: pd.Series, label: str) -> dict | None:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    p5, q1, med, q3, p95 = np.percentile(v, [5, 25, 50, 75, 95])
    return {"label": label, "whislo": p5, "q1": q1, "med": med, "q3": q3, "whishi": p95, "fliers": []}


def _draw_box(ax: plt.Axes, data: pd.DataFrame, fig: Figure, hue_labels: list[str | None],
              palette: list) -> None:
    """Boxes p25-p75, red median, whiskers p5/p95 (the paper's Fig 2.11), grouped by hue."""
    cats = [fmt_value(v) for v in ordered_categories(data[fig.x])]
    xlab = data[fig.x].map(fmt_value)
    n_hue = len(hue_labels)
    width = 0.8 / n_hue
    for h, (color, label) in enumerate(zip(palette, hue_labels, strict=False)):
        in_hue = data[fig.hue].map(fmt_value) == label if fig.hue else pd.Series(True, index=data.index)
        stats, positions = [], []
        for i, c in enumerate(cats):
            s = _box_stats(data.loc[in_hue & (xlab == c), fig.y], c)
            if s is not None:
                stats.append(s)
                positions.append(i - 0.4 + width * (h + 0.5))
        if not stats:
            continue
        ax.bxp(stats, positions=positions, widths=width * 0.85, patch_artist=True, showfliers=False,
               boxprops={"facecolor": color, "alpha": 0.75, "edgecolor": "0.25"},
               medianprops={"color": "red", "linewidth": 1.8}, whiskerprops={"color": "0.25"},
               capprops={"color": "0.25"}, manage_ticks=False)
        # A box without height (every repetition the same) is only its red median: mark it in the
        # hue's colour so the reader can tell whose it is.
        flat = [(x, st["med"]) for x, st in zip(positions, stats, strict=True) if st["q1"] == st["q3"]]
        if flat:
            ax.scatter(*zip(*flat, strict=True), color=color, marker="D", s=28, edgecolor="0.25", zorder=3)
        if fig.hue:
            ax.plot([], [], color=color, linewidth=8, alpha=0.75, label=label)
    ax.set_xticks(range(len(cats)))
    ax.set_xticklabels(cats)
    ax.set_xlim(-0.6, len(cats) - 0.4)


def _one_legend(axes: Iterable[plt.Axes], title: str | None) -> None:
    """A single legend on the last panel with every series of every panel (facets may differ)."""
    axes = list(axes)
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label and not label.startswith("_"):
                seen.setdefault(label, handle)
    if seen:
        axes[-1].legend(list(seen.values()), list(seen), title=title, fontsize="small", title_fontsize="small")


def draw_figure(fig: Figure, df: pd.DataFrame, out_dir: Path, metrics: Iterable[str] = ()) -> FigureOutput:
    """Draw one figure from the tidy rows and save it as PNG and SVG under out_dir."""
    out_dir = Path(out_dir)
    targets = {f: out_dir / f"{fig.id}.{f}" for f in FORMATS}
    result = FigureOutput(fig.id, fig.title, fig.kind, fig.paper_figure, {}, 0)
    data = apply_where(df, fig.where)
    missing = [c for c in (fig.x, fig.y, fig.hue, fig.col) if c and c not in data.columns]
    if missing:
        data = data.iloc[0:0]
        result.error = f"columns {missing} are not in the results"
    else:
        data = data[pd.to_numeric(data[fig.y], errors="coerce").notna()] if not data.empty else data
    result.n_rows = int(len(data))
    if data.empty:
        result.error = result.error or "no rows to plot"
        for path in targets.values():
            path.unlink(missing_ok=True)  # never leave a stale figure from an older run
        return result

    metrics = list(metrics)
    categorical = _is_categorical_x(data, fig.x, metrics) or fig.kind == "box"
    pos, ticks, tick_labels = _positions(data, fig.x, categorical)
    data = data.assign(_x=pos)
    facets = _facets(data, fig.col)
    hue_labels = _hues(data, fig.hue)
    palette = sns.color_palette("colorblind", max(len(hue_labels), 1))

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
        plot_fig, axes = plt.subplots(1, len(facets), figsize=(FACET_W * len(facets), FACET_H),
                                      sharey=True, squeeze=False)
        try:
            for ax, (col_label, sub) in zip(axes[0], facets, strict=True):
                if fig.kind == "line":
                    _draw_line(ax, sub, fig, hue_labels, palette)
                elif fig.kind == "scatter":
                    _draw_scatter(ax, sub, fig, categorical, hue_labels, palette)
                else:
                    _draw_box(ax, sub, fig, hue_labels, palette)
                if categorical and fig.kind != "box":
                    ax.set_xticks(ticks)
                    ax.set_xticklabels(tick_labels)
                    if ticks:
                        ax.set_xlim(ticks[0] - 0.5, ticks[-1] + 0.5)
                if fig.reference_line is not None:
                    ax.axhline(fig.reference_line, color="0.35", linestyle="--", linewidth=1, zorder=0)
                ax.set_xlabel(fig.x_label or fig.x)
                ax.set_ylabel((fig.y_label or fig.y) if ax is axes[0][0] else "")
                if col_label is not None:
                    ax.set_title(f"{fig.col} = {col_label}")
                if ax.get_legend() is not None:
                    ax.get_legend().remove()
            _one_legend(axes[0], fig.hue)
            _fit_labels(plot_fig, axes[0], fig.title)
            plot_fig.tight_layout()
            out_dir.mkdir(parents=True, exist_ok=True)
            for f, path in targets.items():
                plot_fig.savefig(path, dpi=120, **({"metadata": {"Date": None}} if f == "svg" else {}))
                result.files[f] = path
        finally:
            plt.close(plot_fig)
    return result


CHARS_PER_INCH = 11  # of the figure's title and tick labels at its font size


def _fit_labels(plot_fig, axes, title: str) -> None:
    """Wrap the title to the figure's width and slant crowded x tick labels, so none runs off the
    figure or into its neighbour."""
    import textwrap

    plot_fig.suptitle(textwrap.fill(title, int(plot_fig.get_figwidth() * CHARS_PER_INCH)))
    for ax in axes:
        labels = ax.get_xticklabels()
        if sum(len(t.get_text()) + 2 for t in labels) > FACET_W * CHARS_PER_INCH:
            for t in labels:
                t.set_rotation(25)
                t.set_horizontalalignment("right")


def make_figures(spec: Spec, df: pd.DataFrame, out_dir: Path) -> list[FigureOutput]:
    """Every figure of a spec; a figure that fails is reported with its error, not raised."""
    outputs = []
    for fig in spec.figures:
        try:
            outputs.append(draw_figure(fig, df, out_dir, spec.metrics))
        except Exception as e:  # noqa: BLE001 - one broken figure must not lose the report
            outputs.append(FigureOutput(fig.id, fig.title, fig.kind, fig.paper_figure, {}, 0,
                                        error=f"{type(e).__name__}: {e}"))
    return outputs

