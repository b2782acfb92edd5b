"""Issue 12's foundation against real redis-servers and the compiled data plane: the store's clock log
and commit signals, the root's packet log emptied by delete requests + XOR checks, R6 NF failover
with replay, and the COE checker -- passing with the protocols on, failing with one switched off."""

from __future__ import annotations

import os

import pytest

from nfvlab.chc import coe, coe_run, faults
from nfvlab.chc import store as chc_store

CLOCK = (1 << 56) + 5  # root 1, packet 5


def test_clock_log_applies_an_update_once_and_signals_its_commit(clean_standalone):
    c = clean_standalone.servers[0].client()
    key = "chc:{v1:cnt}"
    assert c.fcall("chc_incr", 1, key, str(CLOCK), "2:3:0", "5") == 5
    assert c.fcall("chc_incr", 1, key, str(CLOCK), "2:3:0", "5") == 5  # retransmission: logged result
    assert c.fcall("chc_incr", 1, key, str(CLOCK), "2:3:1", "5") == 10  # the packet's second update
    assert c.fcall("chc_incr", 1, key, "0", "2", "1") == 11  # no packet: not logged
    assert c.fcall("chc_incr", 1, key, "0", "2", "1") == 12
    assert c.hget(key + ":clog", "#dups") == b"1"
    signals = c.xrange("chc:commit:r1")
    assert [(e[b"c"], e[b"x"]) for _, e in signals] == [(str(CLOCK).encode(), str(2 << 16 | 3).encode())] * 2
    # Results of every shape come back from the log unchanged: lists, nil, status, arrays.
    c.rpush("chc:{v1:l}", "a", "b")
    assert [c.fcall("chc_pop", 1, "chc:{v1:l}", str(CLOCK), "2:1:0", "L") for _ in range(2)] == [b"a", b"a"]
    assert [c.fcall("chc_pop", 1, "chc:{v1:e}", str(CLOCK), "2:1:0", "L") for _ in range(2)] == [None, None]
    assert [c.fcall("chc_set", 1, "chc:{v1:s}", str(CLOCK), "2:4:0", "x") for _ in range(2)] == [b"OK", b"OK"]
    step = ["chc_trw_step", 1, "chc:{v1:t}", str(CLOCK), "2:2:0", "h", "0.5", "4.6", "-4.6"]
    assert c.fcall(*step) == c.fcall(*step) == [b"0.5", 0]


def test_without_dedup_updates_apply_again_but_signal_once(clean_standalone):
    c = clean_standalone.servers[0].client()
    chc_store.load_functions(c, dedup=False)
    try:
        key = "chc:{v1:cnt}"
        assert [c.fcall("chc_incr", 1, key, str(CLOCK), "2:3:0", "5") for _ in range(2)] == [5, 10]
        assert c.xlen("chc:commit:r1") == 1
    finally:
        chc_store.load_functions(c)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)")


@pytest.fixture(scope="module")
def session(deployment, bin_dir, tmp_path_factory):
    dep, store = deployment
    s = coe_run.Session(dep, bin_dir, coe_run.Case(connections=30, rate_pps=2000), tmp_path_factory.mktemp("coe"),
                        store=store)
    yield s
    for srv in store.servers:  # leave the shared store with the default library for the other tests
        chc_store.load_functions(srv.client())


@needs_root
def test_root_log_is_emptied_by_delete_requests_and_commit_signals(session):
    ideal = session.ideal()
    r = ideal.root
    assert r["sent"] == r["admitted"] == r["delete_requests"] == r["deleted"] == session.packets
    assert r["logged"] == 0 and r["commits"] >= session.packets  # every NAT packet updates two counters
    assert len(ideal.outputs) == session.packets - ideal.instances[0]["dropped"]
    assert ideal.state["chc:{v1:nat:total_packets}"] == str(session.packets)


@needs_root
@pytest.mark.parametrize("log_mode", ["local", "store"])
def test_root_stops_admitting_at_the_log_threshold(session, log_mode):
    run = session._run(faults.Fault(), faults.Options(log_mode=log_mode, log_max=4), 1)
    assert run.root["max_logged"] <= 4 and run.root["stalls"] > 0  # it waited for deletes
    assert run.root["deleted"] == session.packets and run.root["log"] == log_mode
    assert coe.check(session.ideal(), run, session.inputs).ok


@needs_root
@pytest.mark.parametrize("fault", [
    faults.Fault(kind="kill-nf", at_packet=150),
    faults.Fault(kind="kill-nf-slow-store", at_packet=150, delay_ms=150),
    faults.Fault(kind="delay-store", at_packet=150, delay_ms=150),
], ids=lambda f: f.kind)
def test_faults_keep_chain_output_equivalence(session, fault):
    o = session.case_for(fault)
    assert o.verdict.ok, o.line()
    if fault.kind.startswith("kill"):
        assert o.verdict.numbers["replayed"] > 0
    if fault.kind == "kill-nf-slow-store":  # the replay met committed updates and delivered outputs
        assert o.verdict.numbers["store_repeats"] > 0 and o.verdict.numbers["sink_suppressed"] > 0, o.line()


@needs_root
def test_checker_fails_with_duplicate_suppression_off(session):
    fault = faults.Fault(kind="kill-nf-slow-store", at_packet=150, delay_ms=150)
    store_off = session.case_for(fault, faults.Options(store_dedup=False))
    assert not store_off.verdict.ok and store_off.verdict.numbers["state_diff"] > 0, store_off.line()
    sink_off = session.case_for(fault, faults.Options(sink_dedup=False))
    assert not sink_off.verdict.ok and sink_off.verdict.numbers["duplicates"] > 0, sink_off.line()


def test_seeds_give_reproducible_faults():
    a, b = coe.fault_for_seed(11, 500), coe.fault_for_seed(11, 500)
    assert a == b and a.kind in coe.SUITE_KINDS and 50 <= a.at_packet <= 450


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "1-x"], "--seeds"),
    (["--kind", "kill-nf"], "--at-packet"),
    (["--seeds", "1", "--kinds", "kill-nf,nope"], "--kinds"),
    (["--seeds", "1", "--instances", "2"], "--instances"),
    ([], "--seeds, --seed or --kind"),
])
def test_fault_cli_refuses_bad_arguments_before_any_setup(argv, message, capsys):
    from nfvlab.cli import main

    assert main(["chc", "fault", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bad_seed_list_in_the_spec_names_the_field(tmp_path):
    from pathlib import Path

    from nfvlab.spec import SpecError, load_spec

    text = (Path(__file__).resolve().parents[2] / "experiments" / "chc-correctness.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace('fault.seeds: ["1-10", "11-20"', 'fault.seeds: ["one-ten", "11-20"'))
    with pytest.raises(SpecError, match="fault.seeds|seeds"):
        load_spec(bad)
