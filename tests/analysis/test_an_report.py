"""The HTML report over any subset of results: figures, summary, claims table, provenance."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from analysis_fakes import EXPERIMENTS, spec_named, udp_receivers_metrics, udp_senders_metrics, write_spec_rows

from nfvlab.analysis.report import build_report
from nfvlab.results import ResultStore


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """UDP senders with provenance, UDP receivers without; the TCP specs have no results."""
    root = tmp_path_factory.mktemp("report") / "results"
    write_spec_rows(root, spec_named("iron-udp-senders"), udp_senders_metrics)
    write_spec_rows(root, spec_named("iron-udp-receivers"), udp_receivers_metrics, provenance=False)
    (root / "iron-tcp-senders").mkdir()  # a folder with zero rows
    index = build_report(root, EXPERIMENTS)
    return root, index, index.read_text()


def test_report_written_where_expected(built):
    root, index, _ = built
    assert index == root / "report" / "index.html" and index.stat().st_size > 0


def test_claims_table_and_verdicts(built):
    _, _, html = built
    assert 'id="claims-table"' in html
    for claim_id in ("udp-senders-break-isolation", "udp-receivers-up-to-4-5x", "one-udp-receiver-breaks-isolation",
                     "tcp-senders-break-isolation", "tcp-receivers-several-x"):
        assert claim_id in html
    assert 'class="verdict v-reproduced"' in html
    assert 'class="verdict v-not-reproduced"' in html  # one receiver peaks at 1.5 in the fake data
    assert 'class="verdict v-not-run"' in html
    assert "fig2.1.max_penalty = 1.18" in html  # the reference value is shown


def test_claims_csv(built):
    root, _, _ = built
    claims = pd.read_csv(root / "report" / "claims.csv").set_index("claim_id")
    assert claims.loc["udp-senders-break-isolation", "verdict"] == "reproduced"
    assert claims.loc["udp-senders-break-isolation", "measured"] == pytest.approx(1.101)
    assert claims.loc["one-udp-receiver-breaks-isolation", "verdict"] == "not reproduced"
    assert claims.loc["one-udp-receiver-breaks-isolation", "measured"] == pytest.approx(1.5)
    assert claims.loc["tcp-senders-break-isolation", "verdict"] == "not run"
    assert claims.loc["tcp-receivers-several-x", "n_rows"] == 0
    assert claims.loc["udp-receivers-up-to-4-5x", "paper_value"] == pytest.approx(4.5)


def test_top_summary_counts(built):
    _, _, html = built
    assert "7 claims:" in html
    assert "2 reproduced" in html and "1 not reproduced" in html and "4 not run" in html


def test_figures_linked_relatively_and_copied(built):
    root, _, html = built
    for rel in ("figures/iron-udp-senders/fig2-1-penalty.png", "figures/iron-udp-senders/fig2-2-ksoftirqd.png",
                "figures/iron-udp-receivers/fig2-4-penalty-vs-input.png"):
        assert f'src="{rel}"' in html
        assert (root / "report" / rel).stat().st_size > 0
        assert (root / "report" / rel).with_suffix(".svg").stat().st_size > 0
    assert (root / "iron-udp-senders" / "figures" / "fig2-1-penalty.svg").is_file()
    assert str(root) + "/iron" not in html.replace(str(root) + "/report", "")  # no absolute figure links


def test_summary_table_and_provenance(built):
    root, _, html = built
    assert "<th colspan=\"3\">penalty_factor</th>" in html
    assert ">inf<" in html  # the no-limiter point is a row of its own
    assert "deadbeef" in html and "6.18.0-test" in html and "Fake CPU @ 3.2GHz" in html
    assert "no provenance: no provenance.json" in html  # the receivers spec has none
    summary = pd.read_csv(root / "iron-udp-senders" / "summary.csv")
    assert {"metric", "median", "p5", "p95", "mean", "n"} <= set(summary.columns)


def test_specs_without_results_are_listed_as_not_run(built):
    _, _, html = built
    assert "No results yet: <code>nfvlab run experiments/iron-tcp-senders.yaml</code>" in html
    assert "No results yet: <code>nfvlab run experiments/iron-tcp-receivers.yaml</code>" in html


def test_empty_results_invalid_spec_and_reference_mismatch(tmp_path):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    shutil.copy(EXPERIMENTS / "iron-udp-senders.yaml", experiments)
    text = (EXPERIMENTS / "iron-tcp-senders.yaml").read_text().replace("paper_value: 1.95", "paper_value: 1.5")
    (experiments / "iron-tcp-senders.yaml").write_text(text)
    (experiments / "broken.yaml").write_text("name: broken\nrepetitions: many\n")
    root = tmp_path / "results"
    ResultStore(root, "orphan").write_row("p", 0, {"point_index": 0, "x": 1})
    html = build_report(root, experiments).read_text()
    assert "0 reproduced" in html and "4 not run" in html
    assert "status-invalid" in html and "broken" in html
    assert "mismatch with paper value" in html
    assert "orphan" in html
    claims = pd.read_csv(root / "report" / "claims.csv")
    assert bool(claims.set_index("claim_id").loc["tcp-senders-break-isolation", "reference_mismatch"])
