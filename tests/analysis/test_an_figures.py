"""Figures from the real specs' `figures:` entries on synthetic rows: PNG and SVG written."""

from __future__ import annotations

import math

import pytest
from analysis_fakes import spec_named, udp_receivers_metrics, udp_senders_metrics, write_spec_rows

from nfvlab.analysis.figures import _positions, draw_figure, make_figures
from nfvlab.spec import Figure


@pytest.fixture
def senders(results_root):
    spec = spec_named("iron-udp-senders")
    return spec, write_spec_rows(results_root, spec, udp_senders_metrics)


def _nonempty(path) -> bool:
    return path is not None and path.is_file() and path.stat().st_size > 0


def test_line_figures_written_as_png_and_svg(senders):
    spec, store = senders
    outs = make_figures(spec, store.frame(), store.figures_dir)
    assert [o.id for o in outs] == ["fig2-1-penalty", "fig2-2-ksoftirqd"]
    for o in outs:
        assert o.error is None and o.n_rows == 36
        assert _nonempty(o.png) and _nonempty(o.svg)
        assert o.png == store.figures_dir / f"{o.id}.png"
        assert o.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in o.svg.read_bytes()[:2000]


def test_scatter_with_facets_and_bucket_line(results_root):
    spec = spec_named("iron-udp-receivers")
    store = write_spec_rows(results_root, spec, udp_receivers_metrics, provenance=False)
    (out,) = make_figures(spec, store.frame(), store.figures_dir)
    assert out.kind == "scatter" and _nonempty(out.png) and _nonempty(out.svg)


def test_box_figure_with_where_and_hue(senders):
    spec, store = senders
    fig = Figure(id="box", title="box", kind="box", x="core_rate_mbps", y="penalty_factor",
                 hue="containers_per_core", where={"containers_per_core": [2, 10]}, reference_line=1.0)
    out = draw_figure(fig, store.frame(), store.figures_dir, spec.metrics)
    assert out.error is None and out.n_rows == 18 and _nonempty(out.png) and _nonempty(out.svg)


def test_where_matching_nothing_draws_nothing_and_removes_stale_files(senders):
    spec, store = senders
    fig = spec.figures[0].model_copy(update={"where": {"containers_per_core": 99}})
    store.figures_dir.mkdir(parents=True, exist_ok=True)
    stale = store.figures_dir / f"{fig.id}.png"
    stale.write_bytes(b"old")
    out = draw_figure(fig, store.frame(), store.figures_dir, spec.metrics)
    assert out.files == {} and out.error == "no rows to plot" and not stale.exists()


def test_unknown_column_is_an_error_not_an_exception(senders):
    spec, store = senders
    fig = Figure(id="bad", title="bad", x="nope", y="penalty_factor")
    out = draw_figure(fig, store.frame(), store.figures_dir, spec.metrics)
    assert out.files == {} and "nope" in out.error


def test_inf_is_placed_right_most_with_its_label(senders):
    _, store = senders
    df = store.frame()
    pos, ticks, labels = _positions(df, "core_rate_mbps", categorical=True)
    assert labels == ["250", "1000", "inf"] and ticks == [0.0, 1.0, 2.0]
    assert set(pos[df["core_rate_mbps"].map(math.isinf)]) == {2.0}
