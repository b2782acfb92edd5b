"""CLI registration, the staged experiment specs, recipes."""

import argparse
from pathlib import Path

import pytest

from nfvlab.statealyzr import cli, corpus

from .conftest import needs_pcap

SPECS = Path(cli.__file__).resolve().parents[3] / "experiments"


def test_register_adds_statealyzr_command():
    ap = argparse.ArgumentParser(prog="nfvlab")
    sub = ap.add_subparsers(dest="cmd")
    cli.register(sub)
    a = ap.parse_args(["statealyzr", "analyze", "conntrack", "--json", "x.json"])
    assert a.func is cli.cmd_analyze and a.target == "conntrack" and a.json == "x.json"
    a = ap.parse_args(["statealyzr", "table", "p0f", "--no-ground-truth"])
    assert a.recipes == ["p0f"] and a.no_ground_truth


@needs_pcap
def test_analyze_writes_json_with_counts_and_evidence(tmp_path, capsys):
    import json
    out = tmp_path / "r.json"
    assert cli.main(["analyze", "hostcount", "--json", str(out)]) == 0
    j = json.loads(out.read_text())
    assert set(j["counts"]) >= {"all", "persistent", "top_level", "updateable", "pkt_output", "log_output"}
    hosts = next(v for v in j["variables"] if v["key"] == "hosts")
    assert hosts["flowspace"] == ["src_ip"] and hosts["evidence"]["keyed"]
    assert "hostcount:" in capsys.readouterr().out


def test_recipes_are_valid():
    names = corpus.recipes()
    assert {"haproxy", "openvpn", "p0f", "tcpdump", "prads", "snort"} <= set(names)
    for n in names:
        r = corpus.load_recipe(n)
        assert r.source and (r.make or r.configure)


def test_bad_recipe_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "x.yaml").write_text("name: x\nkind: k\nsource: {ftp: nope}\n")
    monkeypatch.setattr(corpus, "RECIPE_DIR", tmp_path)
    with pytest.raises(ValueError, match="source"):
        corpus.load_recipe("x")


def test_statealyzr_specs_validate():
    from nfvlab.spec import load_spec
    paths = sorted(SPECS.glob("statealyzr-*.yaml"))
    assert [p.stem for p in paths] == ["statealyzr-cost", "statealyzr-flowspace", "statealyzr-table",
                                       "statealyzr-transfer"]
    for p in paths:
        s = load_spec(p)
        assert s.kind in ("statealyzr", "statealyzr-transfer")


MAKEFILE = ("wrapcount: wrapcount.o\n\t$(CC) -o $@ wrapcount.o -lpcap\n"
            "wrapcount.o: wrapcount.c\n\t$(CC) -O2 -c wrapcount.c\n")


def _tree(tmp_path, makefile=MAKEFILE):
    d = tmp_path / "mytree"
    d.mkdir()
    (d / "wrapcount.c").write_text((corpus.GT_DIR / "wrapcount.c").read_text())
    (d / "Makefile").write_text(makefile)
    return d


@needs_pcap
def test_analyze_a_source_tree_with_its_own_build(tmp_path, capsys):
    """Issue 15: `analyze DIR --build make` on a tree outside the corpus, recorded with bear;
    the result equals the ground truth's own analysis."""
    import json
    import shutil
    if not shutil.which("bear"):
        pytest.skip("bear not installed")
    d = _tree(tmp_path)
    out = tmp_path / "r.json"
    rc = cli.main(["analyze", str(d), "--build", "make", "--workdir", str(tmp_path / "wd"), "--json", str(out)])
    assert rc == 0
    j = json.loads(out.read_text())
    gt = corpus.load_ground_truth("wrapcount")
    ref = corpus.analyze_ground_truth(gt)
    assert j["counts"] == ref.counts
    assert "instrumentation" not in j and json.loads(Path(j["instrumentation_file"]).read_text())["bits"]
    err = capsys.readouterr().err
    assert "bear --output" in err and "packet procedures" in err     # build log and progress
    assert not list(d.glob("compile_commands.json*"))                # the user's tree is only built


@needs_pcap
def test_failed_build_is_an_error_and_leaves_no_stale_database(tmp_path, capsys):
    import shutil
    if not shutil.which("bear"):
        pytest.skip("bear not installed")
    d = _tree(tmp_path)
    wd = tmp_path / "wd"
    assert cli.main(["analyze", str(d), "--build", "make", "--workdir", str(wd), "--quiet"]) == 0
    ccj = wd / "mytree.compile_commands.json"
    assert ccj.exists()
    (d / "wrapcount.c").write_text("this is not C\n")
    rc = cli.main(["analyze", str(d), "--build", "make clean; make", "--workdir", str(wd), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "build of mytree failed" in err and "make clean; make" in err
    assert not ccj.exists() and not ccj.with_name(ccj.name + ".partial").exists()
    # the same command again must rebuild (and fail again), not reuse anything
    assert cli.main(["analyze", str(d), "--build", "make clean; make", "--workdir", str(wd), "--quiet"]) == 2


@needs_pcap
def test_missing_receive_call_is_a_clear_error_and_receive_names_it(tmp_path, capsys):
    src = tmp_path / "myrecv.c"
    src.write_text("""
#include <stdio.h>
#include <string.h>
unsigned long pkts;
int my_next_packet(char *buf, int n) { return (int)fread(buf, 1, (size_t)n, stdin); }
int main(void) {
    char buf[2048];
    while (my_next_packet(buf, sizeof buf) > 0) { if (buf[0] == 'x') pkts++; }
    printf("%lu\\n", pkts);
    return 0;
}
""")
    assert cli.main(["analyze", str(src), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no packet-receive call" in err and "--receive" in err
    assert cli.main(["analyze", str(src), "--quiet", "--receive", "my_next_packet"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["pkts"])
    assert row.split()[1:4] == ["x", "x", "x"]          # persistent, top-level, updateable


@needs_pcap
def test_analyze_recipe_file_from_anywhere(tmp_path):
    import shutil
    if not shutil.which("bear"):
        pytest.skip("bear not installed")
    _tree(tmp_path)
    rec = tmp_path / "elsewhere" / "mine.yaml"
    rec.parent.mkdir()
    rec.write_text("name: mine\nsource: {path: ../mytree}\nmake: [make]\n")
    assert cli.main(["analyze", str(rec), "--workdir", str(tmp_path / "wd"), "--quiet"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsource: {path: .}\nmake: make\n")
    with pytest.raises(ValueError, match="make: expected a list"):
        corpus.load_recipe_file(bad)


def test_table_spec_sweeps_every_ground_truth_with_self_check_claims():
    """Every hand-labelled program is a point of the Table 4.13 sweep (both scales), and every
    claim restricted to ground truth is a self-check naming only swept programs."""
    import yaml
    spec = yaml.safe_load((SPECS / "statealyzr-table.yaml").read_text())
    gts = set(corpus.ground_truths())
    for sweep in (spec["sweep"], spec["scales"]["quick"]["sweep"]):
        assert gts <= set(sweep["corpus.middlebox"])
    gt_claims = [c for c in spec["claims"] if set(_as_list(c["where"]["middlebox"])) <= gts]
    assert {c["metric"] for c in gt_claims} >= {"missed_labels", "label_recall_min", "flowspace_mismatches",
                                               "forbidden_flagged", "updateable_precision"}
    for c in gt_claims:
        assert c["check"] == "self-check", c["id"]
    assert set(next(c for c in gt_claims if c["metric"] == "label_recall_min")["where"]["middlebox"]) == gts


def test_label_metrics_of_a_ground_truth_point():
    from nfvlab.statealyzr.experiment import label_metrics, metrics_of
    gt = corpus.load_ground_truth("overapprox")
    res = corpus.analyze_ground_truth(gt)
    cmp = corpus.compare(res, gt)
    m = {**metrics_of(res.to_json(), len(cmp["missed"])), **label_metrics(cmp)}
    assert m["missed_labels"] == 0 and m["flowspace_mismatches"] == 0 and m["forbidden_flagged"] == 0
    assert m["label_recall_min"] == 1.0 and m["updateable_precision"] == 1.0
    assert m["keyed_recall"] == 1.0 and m["keyed"] == 4


def _as_list(x) -> list:
    return x if isinstance(x, list) else [x]
