"""Dynamic soundness: every global that changes at run time is updateable (or reachable from an
updateable top-level variable)."""

from pathlib import Path

import pytest

from nfvlab.statealyzr import corpus
from nfvlab.statealyzr.dynamic import dynamic_check, make_pcap

from .conftest import needs_gdb


def test_make_pcap_is_a_valid_capture(tmp_path):
    p = make_pcap(tmp_path / "x.pcap", 10)
    data = p.read_bytes()
    assert data[:4] == bytes.fromhex("d4c3b2a1") and len(data) > 24 + 10 * 16


@needs_gdb
@pytest.mark.parametrize("name", ["conntrack", "hostcount", "aliasmon", "paperfig45", "queueproxy", "hostflow",
                                  "wrapcount", "copykey", "reloadcfg", "daqmon"])
def test_changed_globals_are_updateable(tmp_path, name):
    if name == "daqmon" and not Path("/usr/include/daq.h").exists():
        pytest.skip("libdaq-dev (deps/apt.txt) not installed")
    rep = dynamic_check(name, tmp_path)
    if "error" in rep:
        pytest.skip(f"gdb could not run the middlebox here: {rep['gdb_log'][-300:]}")
    assert rep["changed"], rep      # the run really processed packets
    assert rep["missed"] == [], rep
    assert rep["sound"]


@needs_gdb
def test_alias_only_state_is_covered(tmp_path):
    rep = dynamic_check("hostcount", tmp_path)
    if "error" in rep:
        pytest.skip("gdb could not run the middlebox here")
    assert rep["covered"].get("forwarded", "").startswith("reachable from updateable fwd_ctr")
    gt = corpus.load_ground_truth("hostcount")
    assert gt.labels["forwarded"]["reached_from"] == "fwd_ctr"


@needs_gdb
def test_counters_in_allocation_wrappers_are_caught(tmp_path):
    """Issue 15: a global bumped inside ck_alloc()/ck_free() changes at run time and must be
    updateable (the wrapper skip used to drop every write in the wrapper)."""
    rep = dynamic_check("wrapcount", tmp_path)
    assert {"n_allocs", "n_frees", "bytes_live"} <= set(rep["changed"]), rep
    assert rep["missed"] == []


@needs_gdb
def test_daq_callback_loop_runs_under_gdb(tmp_path):
    """The packet procedure is reached only through daq_acquire_with_meta's callback."""
    if not Path("/usr/include/daq.h").exists():
        pytest.skip("libdaq-dev not installed")
    rep = dynamic_check("daqmon", tmp_path)
    assert "pkt_count" in rep["changed"] and rep["missed"] == [], rep
