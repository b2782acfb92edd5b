"""R4, chain-wide ordering (§3.4.2): the Trojan detector judged by logical clock finds sequences whose
packets reach it out of order, the arrival-order baseline does not; the scrubbers' `service` split
and per-instance delay. Real redis-servers, the compiled data plane, namespaces."""

from __future__ import annotations

import os

import pytest

from nfvlab.chc import chain, dagrun, exp_ordering, traces
from nfvlab.chc.compile import compile_chain

C = (1 << 56)  # root 1's clocks


def test_store_judges_trojan_steps_by_clock_not_by_arrival(clean_standalone):
    c = clean_standalone.servers[0].client()
    key = "chc:{v2:trojan:events}"

    def step(host: str, ev: int, counter: int) -> int:  # one packet = one clock (the clock log keys on it)
        return c.fcall("chc_trojan_clock", 1, key, str(C + counter), f"1:2:{ev}", host, str(ev))

    # The Trojan's steps entered as ssh 1, html 2, zip 3, exe 4, irc 5 and arrive backwards.
    assert [step("a", ev, n) for ev, n in [(4, 5), (3, 4), (2, 3), (1, 2)]] == [0, 0, 0, 0]
    assert step("a", 0, 1) == 1
    # Same steps, but IRC entered before the EXE download: no Trojan, whatever the arrival order.
    assert [step("b", ev, n) for ev, n in [(0, 21), (1, 22), (2, 23), (4, 24), (3, 25)]] == [0] * 5
    # Counters of different length still order right (9 < 10).
    assert [step("d", ev, n) for ev, n in [(4, 13), (0, 9), (1, 10), (2, 11), (3, 12)]] == [0, 0, 0, 0, 1]


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)")


@pytest.fixture(scope="module")
def burst_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("r4") / "r4.pcap"
    info = traces.generate(traces.TraceSpec(connections=12, packets_per_connection=6, trojans=4, reordered_trojans=2,
                                            trojan_burst=True, hosts=4, seed=5), path)
    return path, info


@needs_root
@pytest.mark.parametrize("model", ["T", "EO", "EO+C+NA"])
def test_clock_ordered_detector_fires_on_sequences_only(deployment, bin_dir, burst_trace, model):
    dep, store = deployment
    for srv in store.servers:
        srv.client().flushall()
    pcap, info = burst_trace
    res = chain.run_nf(dep, bin_dir, pcap, "trojan", model, config={"order": "clock"},
                       store_addresses=store.addresses, tag="r4nf")
    assert sorted(res.reports[0]["alerts"].split(",")) == sorted(info.trojan_hosts)


@needs_root
def test_slow_scrubber_path_hides_trojans_from_arrival_order_not_from_clocks(deployment, bin_dir, burst_trace):
    dep, store = deployment
    pcap, info = burst_trace
    found = {}
    for order in ("arrival", "clock"):
        for srv in store.servers:
            srv.client().flushall()
        p = exp_ordering.ChainParams(workload="W1", order=order)  # the SSH scrubber costs 50-100 µs a packet
        res = dagrun.run_chain(dep, bin_dir, compile_chain(exp_ordering.logical_chain(p)), pcap,
                               store_addresses=store.addresses, rate_pps=20000, tag="r4")
        reports = res.reports("scrub")
        assert res.sink["packets"] == res.root["sent"]
        # service split: SSH, FTP, IRC each on one instance; only instance 1 (SSH) is slow
        assert int(reports[0]["delayed_packets"]) > 0 and all(r["delayed_packets"] == "0" for r in reports[1:])
        found[order] = {h for r in res.reports("trojan") for h in r["alerts"].split(",") if h != "-"}
    assert found["clock"] == set(info.trojan_hosts)
    assert found["arrival"] < set(info.trojan_hosts)  # the late SSH SYNs void some sequences
