"""The HTML report: sections by paper figure, claims with bands and verdicts, stamps, self-checks, guide."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
from analysis_fakes import EXPERIMENTS, spec_named, udp_receivers_metrics, udp_senders_metrics, write_spec_rows

from nfvlab.analysis.current import StampCheck
from nfvlab.analysis.report import build_report
from nfvlab.results import ResultStore

STAMPS = {"code_hash": "c0de", "testbed_hash": "7e57"}
CURRENT = StampCheck(True, STAMPS)
ROW_STAMPS = {**STAMPS, "run_id": "r-1", "git_commit": "deadbeef" * 5, "git_dirty": False,
              "calibration_irq_extra_ns": 310.0, "calibration_timer_extra_ns": 1200.0}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """UDP senders stamped and current (with provenance); UDP receivers unstamped (stale); TCP none."""
    root = tmp_path_factory.mktemp("report") / "results"
    write_spec_rows(root, spec_named("iron-udp-senders"), udp_senders_metrics, extra=ROW_STAMPS)
    write_spec_rows(root, spec_named("iron-udp-receivers"), udp_receivers_metrics, provenance=False)
    (root / "iron-tcp-senders").mkdir()  # a folder with zero rows
    index = build_report(root, EXPERIMENTS, stamps=CURRENT)
    claims = pd.read_csv(root / "report" / "claims.csv").set_index("claim_id")
    return root, index, index.read_text(), claims


def section(html: str, anchor: str) -> str:
    """The HTML of one paper section (from its h2 to the next h2)."""
    m = re.search(rf'<h2 id="{anchor}">(.*?)(?=<h2 )', html, re.S)
    assert m, anchor
    return m.group(1)


def test_report_written_where_expected(built):
    root, index, _, _ = built
    assert index == root / "report" / "index.html" and index.stat().st_size > 0


def test_sections_follow_the_paper_figures_in_order(built):
    _, _, html, _ = built
    anchors = re.findall(r'<h2 id="(paper-[^"]+)"', html)
    assert anchors[:5] == ["paper-fig2-1", "paper-fig2-2", "paper-fig2-3", "paper-fig2-4", "paper-fig2-5"]
    assert anchors.index("paper-fig2-9") > anchors.index("paper-fig2-5")  # §2.3.1 after §2.1.3
    fig21 = section(html, "paper-fig2-1")
    assert "rate limiting causes penalty factors as high as 1.18" in fig21  # the paper's quote
    assert 'src="figures/iron-udp-senders/fig2-1-penalty.png"' in fig21  # its plot
    assert "udp-senders-break-isolation" in fig21 and "iron-isolates-udp-senders" not in fig21
    assert "iron-isolates-udp-senders" in section(html, "paper-fig2-9")
    assert "fig2-9" in html.split('<table id="paper-summary"')[1].split("</table>")[0]


def test_claims_show_paper_value_measured_spread_band_verdict(built):
    _, _, html, claims = built
    fig21 = section(html, "paper-fig2-1")
    assert "[1.09, inf]" in fig21 and "1.18" in fig21 and "one-sided: the paper reports a maximum" in fig21
    c = claims.loc["udp-senders-break-isolation"]
    assert c["verdict"] == "reproduced" and c["measured"] == pytest.approx(1.101)
    assert c["band"] == "[1.09, inf]" and c["spread"] and c["scale"] == "quick"
    # the fake data gives Iron the same penalties as vanilla: the isolation claim fails, two-sided
    iso = claims.loc["iron-isolates-udp-senders"]
    assert iso["verdict"] == "not reproduced" and iso["band"] == "[0.95, 1.05]"


def test_stale_rows_are_not_used_and_the_report_says_no_stamps(built):
    _, _, html, claims = built
    for cid in ("udp-receivers-up-to-4-5x", "one-udp-receiver-breaks-isolation"):
        assert claims.loc[cid, "verdict"] == "not run"
        assert "no stamps" in claims.loc[cid, "notes"]
    assert "have no stamps (measured before rows were stamped): treated as stale" in html
    # the plot is still drawn, from stored rows, and labelled as such
    assert "none current (see the row notes)" in section(html, "paper-fig2-4")


def test_stamps_and_calibration_as_fitted_input(built):
    _, _, html, _ = built
    fig21 = section(html, "paper-fig2-1")
    assert "deadbeef" in fig21 and "c0de" in fig21 and "7e57" in fig21
    assert "fitted input" in fig21 and "irq_extra_ns=310" in fig21


def test_one_screen_summary_counts_reproductions_only(built):
    _, _, html, claims = built
    top = html.split('<table id="paper-summary"')[0]
    n = int((claims["check"] == "reproduction").sum())
    assert f"{n} claims of the paper:" in top
    assert "1 reproduced" in top and "1 not reproduced" in top and f"{n - 2} not run" in top
    assert 'href="#paper-fig2-1"' in html.split('<h2 ')[0]


def test_self_checks_apart(tmp_path):
    exp = tmp_path / "experiments"
    exp.mkdir()
    text = (EXPERIMENTS / "iron-udp-senders.yaml").read_text().replace(
        "    band: [0.95, 1.05]\n", "    band: [0.95, 1.05]\n    check: self-check\n")
    (exp / "iron-udp-senders.yaml").write_text(text)
    root = tmp_path / "results"
    write_spec_rows(root, spec_named("iron-udp-senders"), lambda p, r: {"penalty_factor": 1.0})
    html = build_report(root, exp, stamps=StampCheck(False, note="stamps not checked: test")).read_text()
    top = html.split('<table id="paper-summary"')[0]
    assert "1 claims of the paper:" in top and "0 reproduced" in top and "1 not reproduced" in top
    selfchecks = html.split('<h2 id="self-checks">')[1].split("<h2 ")[0]
    assert "iron-isolates-udp-senders" in selfchecks and "v-reproduced" in selfchecks
    assert "stamps not checked: test" in top  # the banner


def test_figures_linked_relatively_and_copied(built):
    root, _, html, _ = built
    for rel in ("figures/iron-udp-senders/fig2-1-penalty.png", "figures/iron-udp-senders/fig2-2-ksoftirqd.png",
                "figures/iron-udp-receivers/fig2-4-penalty-vs-input.png"):
        assert f'src="{rel}"' in html
        assert (root / "report" / rel).stat().st_size > 0
        assert (root / "report" / rel).with_suffix(".svg").stat().st_size > 0
    assert str(root) + "/iron" not in html.replace(str(root) + "/report", "")  # no absolute figure links


def test_per_point_summary_with_stability_and_provenance(built):
    root, _, html, _ = built
    assert "<th colspan=\"3\">penalty_factor</th>" in html and ">stable<" in html
    assert "6.18.0-test" in html and "Fake CPU @ 3.2GHz" in html
    assert "no provenance: no provenance.json" in html  # the receivers spec has none
    summary = pd.read_csv(root / "iron-udp-senders" / "summary.csv")
    assert {"metric", "median", "p5", "p95", "mean", "n"} <= set(summary.columns)


def test_specs_without_results_are_listed_as_not_run(built):
    _, _, html, _ = built
    assert "No results yet: <code>nfvlab run experiments/iron-tcp-senders.yaml</code>" in html


def test_artifact_section_in_the_report(built):
    _, _, html, _ = built
    guide = html.split('<h2 id="artifact">')[1].split("<h2 ")[0]
    assert "Kick the tires" in guide and "<code>make exp-iron-udp-senders</code>" in guide
    assert "every point&#39;s median(penalty_factor) in [0.95, 1.05]" in guide


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
