"""Issue 12's foundation against real redis-servers and the compiled data plane: the store's clock log
and commit signals, the root's packet log emptied by delete requests + XOR checks, R6 NF and root
failover, and the COE checker -- passing with the protocols on, failing with one switched off."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from nfvlab.chc import coe, coe_run, faults, traces
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


def test_root_persists_its_clock_and_a_failover_root_continues_past_it(clean_standalone, chc_bin, tmp_path):
    pcap = tmp_path / "t.pcap"
    traces.generate(traces.TraceSpec(connections=4, packets_per_connection=6, udp_flows=0, seed=3), pcap)
    n = len(traces.read_frames(pcap))
    store = clean_standalone.addresses[0]
    c = clean_standalone.servers[0].client(decode_responses=True)

    def root(*extra: str) -> subprocess.CompletedProcess:  # sends to a loopback port nobody reads
        return subprocess.run([chc_bin("chc-root"), "--pcap", str(pcap), "--next", "127.0.0.1:9", "--bind",
                               "127.0.0.1:0", "--store", store, *extra], capture_output=True, text=True, timeout=60)

    done = root("--recover", "--persist-clock", "5")
    assert done.returncode == 2 and "no persisted clock" in done.stderr
    first = root("--persist-clock", "5")
    assert first.returncode == 0, first.stderr
    r = json.loads(first.stdout)
    assert r["admitted"] == r["sent"] == n and r["start_counter"] == 0
    stored = int(c.hget("chc:{root:r1}", "counter"))
    assert stored == n // 5 * 5 and r["persisted"] == stored  # every 5th counter, the last one acknowledged
    # unpaced, the root used up each lease and waited for the write's acknowledgement
    assert r["clock_waits"] > 0 and r["lease_wait_seconds"] > 0 and r["cpu_seconds"] > 0
    # A failover root: the clock continues at stored + 5, the input at the given position.
    second = json.loads(root("--persist-clock", "1", "--recover", "--input-from", "7").stdout)
    assert second["resumed_from"] == stored and second["persist_every"] == 5  # the period is the store's
    assert second["start_counter"] == stored + 5 and second["admitted"] == n - 7
    assert second["last_clock"] == (1 << 56) + stored + 5 + n - 7
    assert int(c.hget("chc:{root:r1}", "counter")) >= stored + 5


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
    faults.Fault(kind="kill-root", at_packet=153),
], ids=lambda f: f.kind)
def test_faults_keep_chain_output_equivalence(session, fault):
    o = session.case_for(fault)
    assert o.verdict.ok, o.line()
    if fault.kind.startswith("kill-nf"):
        assert o.verdict.numbers["replayed"] > 0
    if fault.kind == "kill-root":  # persisted at 150, so the new root starts at 160: 7 clocks unused
        assert o.verdict.numbers["clock_gap"] == 7 and o.verdict.numbers["missing"] == 0, o.line()
    if fault.kind == "kill-nf-slow-store":  # the replay met committed updates and delivered outputs
        assert o.verdict.numbers["store_repeats"] > 0 and o.verdict.numbers["sink_suppressed"] > 0, o.line()


@needs_root
def test_checker_fails_with_duplicate_suppression_off(session):
    fault = faults.Fault(kind="kill-nf-slow-store", at_packet=150, delay_ms=150)
    store_off = session.case_for(fault, faults.Options(store_dedup=False))
    assert not store_off.verdict.ok and store_off.verdict.numbers["state_diff"] > 0, store_off.line()
    sink_off = session.case_for(fault, faults.Options(sink_dedup=False))
    assert not sink_off.verdict.ok and sink_off.verdict.numbers["duplicates"] > 0, sink_off.line()


@needs_root
def test_checker_fails_when_a_failover_root_reuses_clocks(session):
    fault = faults.Fault(kind="kill-root", at_packet=150)
    judged = session.case_for(fault, faults.Options(persist_clock=0, xor_check=False))
    n = judged.verdict.numbers
    assert not judged.verdict.ok and n["clock_gap"] < 0 and n["state_diff"] > 0 and n["missing"] > 0, judged.line()
    # With the XOR check on, the reused clocks' updates are suppressed and never signal a commit: the
    # root's log stops emptying, which the harness reports instead of waiting out its timeout.
    stalled = session.case_for(fault, faults.Options(persist_clock=0))
    assert not stalled.verdict.ok and "stopped emptying" in stalled.verdict.problems[0], stalled.line()


def test_seeds_give_reproducible_faults():
    a, b = coe.fault_for_seed(11, 500), coe.fault_for_seed(11, 500)
    assert a == b and a.kind in coe.SUITE_KINDS and 50 <= a.at_packet <= 450


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "1-x"], "--seeds"),
    (["--kind", "kill-nf"], "--at-packet"),
    (["--kind", "kill-root", "--at-s", "0.1"], "--at-packet"),
    (["--seeds", "1", "--persist-clock", "-1"], "--persist-clock"),
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
