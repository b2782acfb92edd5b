"""The state-transfer experiment (Fig 4.15/4.16): generated export/import code, log equivalence."""

import pytest

from nfvlab.statealyzr.dynamic import make_pcap
from nfvlab.statealyzr.transfer import run_transfer, split_pcap, summarize

from .conftest import needs_gdb


def test_split_pcap_keeps_the_tail(tmp_path):
    p = make_pcap(tmp_path / "a.pcap", 10)
    t = split_pcap(p, 4, tmp_path / "t.pcap")
    assert t.read_bytes()[:24] == p.read_bytes()[:24]
    assert len(split_pcap(p, 0, tmp_path / "all.pcap").read_bytes()) == len(p.read_bytes())
    assert len(split_pcap(p, 10, tmp_path / "none.pcap").read_bytes()) == 24
    assert 24 < len(t.read_bytes()) < len(p.read_bytes())


@needs_gdb
def test_hot_standby_logs_equal_single_instance(tmp_path):
    """hostcount's forwarded counter is reached only through fwd_ctr: the generated export must
    follow the pointer into the global, or the standby's report differs."""
    r = run_transfer("hostcount", tmp_path, 40, switch_points=(0.3, 0.7), cost_packets=2000, cost_reps=3)
    if not r["rows"]:
        pytest.skip("gdb could not run the middlebox here")
    real = [c for c in r["checks"] if c["model"] != "none"]
    assert len(real) == 4 and all(c["logs_equal"] for c in real), r["checks"]
    ctl = [c for c in r["checks"] if c["model"] == "none"]
    assert ctl and not any(c["logs_equal"] for c in ctl)        # the check can fail
    s = summarize(r)
    assert s["model_i_bytes_mean"] >= s["model_iii_bytes_mean"] > 0
    assert len(r["rows"]) == 39 and {"hosts", "fwd_ctr"} <= set(r["transferred_variables"])
