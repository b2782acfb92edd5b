"""The StateAlyzr part of the report (Table 4.13, Fig 4.14, Table 4.17), from real analysis rows.

The ground-truth middleboxes are analysed for real through the experiment kind's driver (a child
process each, a fraction of a second); the rows go through the same store, specs and report as a
`make exp-statealyzr` run. Real middleboxes are too slow for a test: their rows are absent, so
their claims must say "not run" and their paper rows still appear.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from nfvlab.analysis.report import build_report
from nfvlab.plan import expand, flat_params
from nfvlab.results import ResultStore
from nfvlab.runner import point_slug
from nfvlab.spec import load_spec
from nfvlab.stamps import current_stamps
from nfvlab.statealyzr import build as sa_build
from nfvlab.statealyzr.experiment import Driver

REPO = Path(__file__).resolve().parents[2]
GT = ["conntrack", "hostcount", "aliasmon", "hostflow"]
pytestmark = pytest.mark.skipif(not (sa_build.have_toolchain() and Path("/usr/include/pcap/pcap.h").exists()),
                                reason="clang-14/llvm-14 or libpcap-dev not installed")


def run_points(spec_path: Path, root: Path, build_dir: Path, names: list[str]) -> None:
    """What the runner does for the points of `names` (without its root check)."""
    spec = load_spec(spec_path)
    store = ResultStore(root, spec.name)
    driver = Driver(build_dir)
    stamps = current_stamps(spec, "test-run")  # what the runner stamps every row with
    for point in expand(spec).points:
        if point.params.corpus.middlebox not in names:
            continue
        m = driver.measure(None, point.params, store.raw_path(point_slug(point), 0))
        store.write_row(point.point_id, 0, {"spec": spec.name, "scale": None, "point_index": point.index,
                                            **flat_params(point.params), **{k: m.get(k) for k in spec.metrics},
                                            "seconds": 0.0, "finished_at": "now", **stamps})


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sa-report")
    exp = tmp / "experiments"
    exp.mkdir()
    for name in ("statealyzr-table", "statealyzr-flowspace", "statealyzr-cost"):
        shutil.copy(REPO / "experiments" / f"{name}.yaml", exp)
    root = tmp / "results"
    run_points(exp / "statealyzr-table.yaml", root, tmp / "build", GT)
    run_points(exp / "statealyzr-flowspace.yaml", root, tmp / "build", GT)
    index = build_report(root, exp)
    return root, index.read_text(), pd.read_csv(root / "report" / "claims.csv").set_index("claim_id")


def table(html: str, tid: str) -> list[list[str]]:
    m = re.search(rf'<table class="paper-vs-measured" id="table-{tid}">(.*?)</table>', html, re.S)
    assert m, f"table {tid} missing"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(1), re.S)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
            for r in rows]


def test_table_4_13_has_measured_ground_truth_and_every_paper_row(report):
    _, html, _ = report
    rows = table(html, "table4-13")
    header, body = rows[0], {r[0]: r for r in rows[1:]}
    assert header[:8] == ["middlebox", "source", "all", "persistent", "top-level", "updateable",
                          "pkt-output", "log-output"]
    for name in GT:
        assert "missed labels: 0" in body[name][1]
        all_, pers, top, upd = (int(body[name][i]) for i in (2, 3, 4, 5))
        assert all_ >= pers >= top >= upd > 0  # the analyses only ever narrow the set
    # paper rows, with the reductions computed from the paper's own counts
    assert body["HAProxy"][2:8] == ["7876", "272", "176", "115", "101", "109"]
    assert body["HAProxy"][9:11] == ["35.3", "34.7"]
    assert body["PRADS"][3:6] == ["61", "29", "10"] and body["Snort"][5] == "148"


def test_conntrack_row_matches_its_analysis(report):
    root, html, _ = report
    body = {r[0]: r for r in table(html, "table4-13")[1:]}
    rows = ResultStore(root, "statealyzr-table").frame().set_index("middlebox")
    c = rows.loc["conntrack"]
    assert body["conntrack"][2:6] == [str(int(c[k])) for k in ("all", "persistent", "top_level", "updateable")]
    assert float(body["conntrack"][10]) == pytest.approx(100 * (1 - c["updateable"] / c["top_level"]), abs=0.05)


def test_flowspace_table_and_figure(report):
    root, html, _ = report
    rows = table(html, "fig4-14-table")
    body = {r[0]: r for r in rows[1:]}
    # conntrack's connection table is keyed by the 5-tuple (hand label), hostcount's list by the source
    assert body["conntrack (ground truth)"][1:4] == ["1", "5", "5"]
    assert body["conntrack (ground truth)"][rows[0].index("5 field(s)")] == "1"
    assert body["hostcount (ground truth)"][2:4] == ["1", "1"]
    # hostflow: host table by source address, flow table by 4-tuple, TTL histogram by TTL
    assert body["hostflow (ground truth)"][1:5] == ["3", "1", "4", "3"]
    assert body["Snort (paper)"][3] == "6" and body["PRADS (paper)"][3] == "3"
    assert 'id="exp-statealyzr-flowspace-fig4-14"' in html
    png = root / "report" / "figures" / "statealyzr-flowspace" / "fig4-14.png"
    assert png.stat().st_size > 1000


def test_cost_table_shows_paper_rows_without_measurements(report):
    _, html, _ = report
    rows = table(html, "table4-17")
    body = {r[0]: r for r in rows[1:]}
    assert set(body) == {"PRADS", "Snort", "HAProxy", "OpenVPN"}   # no real middlebox measured here
    assert body["Snort"][4] == "19 h" and body["OpenVPN"][5] == "7.3" and body["HAProxy"][2] == "0.25 h"


def test_claims_verdicts_follow_the_rows(report):
    _, _, claims = report
    # 4 of the plan's 12 ground-truth middleboxes ran: the self-check is incomplete, its value shown
    gt = claims.loc["statealyzr-ground-truth-sound"]
    assert gt["verdict"] == "incomplete" and gt["would_be"] == "reproduced" and gt["check"] == "self-check"
    assert gt["measured"] == 0 and gt["n_points"] == len(GT) and gt["expected_points"] == 12
    not_run = ["queueproxy", "paperfig45", "wrapcount", "daqmon", "copykey", "reloadcfg", "overapprox", "hdralloc"]
    assert set(gt["missing"].split("; ")) == {f"middlebox={m}: 0/1" for m in not_run}
    for cid in ("statealyzr-top-level-reduction", "statealyzr-updateable-reduction",
                "flowspace-differs-between-variables", "statealyzr-minutes-not-hours",
                "statealyzr-memory-within-paper"):
        assert claims.loc[cid, "verdict"] == "not run", cid   # real middleboxes not in these rows
    assert claims.loc["statealyzr-top-level-reduction", "reference_value"] == 16


def test_driver_caches_the_analysis_between_specs(report):
    root, _, _ = report
    table_rows = ResultStore(root, "statealyzr-table").frame().set_index("middlebox")
    flow_rows = ResultStore(root, "statealyzr-flowspace").frame().set_index("middlebox")
    assert not table_rows.loc["conntrack", "missed_labels"]
    raw = next((root / "statealyzr-flowspace" / "raw").rglob("metrics.json"))
    assert '"cached": true' in raw.read_text()
    assert flow_rows.loc["conntrack", "keyed"] == table_rows.loc["conntrack", "keyed"]
