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
    assert [p.stem for p in paths] == ["statealyzr-cost", "statealyzr-flowspace", "statealyzr-table"]
    for p in paths:
        s = load_spec(p)
        assert s.kind == "statealyzr"
