"""The §3.6.3 baselines on the compiled data plane, real redis-server and namespaces:
the OpenNF-style controller keeps every NAT instance's copy of the shared objects equal (each packet
waits for one controller round trip; ports are handed out once), and the FTMB-style checkpoint pause
holds packets for its duration. Also the experiment specs of R1 and R3."""

from __future__ import annotations

import os
from pathlib import Path

import dpkt
import pytest

from nfvlab.chc import dag, dagrun, exp_availability, exp_shared_state, opennf, traces
from nfvlab.chc.compile import compile_chain
from nfvlab.experiments.registry import get_kind
from nfvlab.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, chc_bin):
    """This module's own deployment (the session's has room for 36 containers, shared by every test)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, cgroups)")
    from nfvlab.chc.deploy import LocalDeployment

    with LocalDeployment(tmp_path_factory.mktemp("bldep")) as dep:
        yield dep, dep.start_store(1)


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("baselines") / "t.pcap"
    return traces.generate(traces.TraceSpec(connections=30, packets_per_connection=8, hosts=6, seed=3), path)


def _ports_by_destination(pcap: Path, external: str = "198.18.40.100") -> dict[int, set[tuple[bytes, int]]]:
    """External source port -> the (server, server port) pairs it was used toward."""
    out: dict[int, set[tuple[bytes, int]]] = {}
    with open(pcap, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and ip.src == bytes(map(int, external.split("."))):
                out.setdefault(ip.data.sport, set()).add((ip.dst, ip.data.dport))
    return out


@needs_root
def test_opennf_controller_keeps_every_copy_equal_and_each_packet_waits(deployment, bin_dir, trace):
    dep, store = deployment
    chain = exp_shared_state.opennf_dag(exp_shared_state.nat_chain(2))
    assert {i.model for i in chain.instances} == {"T"} and len(chain.instances) == 2
    with opennf.controller(dep, bin_dir, 2, "bl") as ctl:
        res = dagrun.run_chain(dep, bin_dir, chain, trace.path, rate_pps=3000, tag="bl",
                               nf_args={"nat": ("--opennf", ctl.address)})
    received = [int(r.summary["received"]) for r in res.instances.values()]
    assert all(received) and sum(received) == res.root["sent"] == trace.packets  # the root split flows over both
    # strongly consistent: each copy counted every packet of both instances
    assert [int(r.report["total_packets"]) for r in res.instances.values()] == [sum(received)] * 2
    assert len({r.report["tcp_packets"] for r in res.instances.values()}) == 1
    # one event per packet (a new flow's port pop carries its counters), applied at both instances
    assert [int(r.summary["replica_events"]) for r in res.instances.values()] == received
    assert all(int(r.summary["replica_applied"]) == sum(received) for r in res.instances.values())
    assert ctl.summary["updates"] == sum(received) and ctl.summary["hold_median_us"] > 0
    # the wait is in the per-packet time: no packet was faster than the controller's round trip allows
    assert min(s for r in res.instances.values() for s in r.samples_ns) > 10_000
    # ports are handed out once across instances, in the global order
    assert res.sink["packets"] == trace.packets
    assert all(len(dests) == 1 for dests in _ports_by_destination(res.out_pcap).values())


@needs_root
def test_chc_shares_the_same_objects_through_the_store(deployment, bin_dir, trace):
    dep, store = deployment
    for srv in store.servers:
        srv.client().flushall()
    res = dagrun.run_chain(dep, bin_dir, exp_shared_state.nat_chain(2), trace.path, store_addresses=store.addresses,
                           rate_pps=3000, tag="bl")
    received = sum(int(r.summary["received"]) for r in res.instances.values())
    assert received == trace.packets
    # the store's one counter is what both instances report
    assert {int(r.report["total_packets"]) for r in res.instances.values()} == {received}
    assert all(len(dests) == 1 for dests in _ports_by_destination(res.out_pcap).values())


@needs_root
def test_ftmb_pause_holds_packets_for_its_duration(deployment, bin_dir, trace):
    dep, _ = deployment
    chain = compile_chain(dag.load_chain(exp_availability.CHAIN).with_model("T"))
    res = dagrun.run_chain(dep, bin_dir, chain, trace.path, rate_pps=2000, tag="bl",
                           nf_args={"nat": ("--pause-us", "5000", "--pause-every-ms", "20")})
    pauses = int(next(iter(res.instances.values())).summary["pauses"])
    duration_ms = trace.packets / 2000 * 1000
    assert duration_ms / 20 - 3 <= pauses <= duration_ms / 20 + 1  # every 20 ms while traffic lasted
    assert res.sink["packets"] == trace.packets  # queued, not lost
    late = sorted(res.latency_ns)
    assert late[-1] >= 4_000_000  # a packet that arrived as a pause began waited ~5 ms
    assert sum(x >= 1_000_000 for x in late) >= pauses  # every pause held at least one packet


def test_pause_needs_a_period(bin_dir):
    import subprocess

    done = subprocess.run([str(bin_dir / "chc-nf"), "--nf", "nat", "--listen", "127.0.0.1:0", "--pause-us", "5000"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--pause-us needs --pause-every-ms" in done.stderr


@pytest.mark.parametrize("name", ["chc-availability", "chc-shared-state"])
def test_baseline_specs_validate_with_flat_rows(name):
    spec = load_spec(REPO / "experiments" / f"{name}.yaml")
    assert spec.kind == name and {"quick", "paper"} <= set(spec.scales)
    kind = get_kind(name)
    leaves = [p.split(".")[-1] for p in kind.parameter_names()]
    assert len(set(leaves)) == len(leaves) and not set(leaves) & set(kind.metrics)
    assert any(c.counts_as_reproduction for c in spec.claims)


def test_recovery_windows_settle_after_the_spike():
    from nfvlab.chc.exp_recovery import recovery_windows, windows

    samples = [(0, 4000_000), (100_000, 2000_000), (600_000, 900_000)] + \
        [(1_000_000 + k * 500_000, 5_000) for k in range(20)]
    means = windows(samples, 500_000)
    assert means[:3] == [3000.0, 900.0, 5.0] and len(means) == 22
    settled, normal = recovery_windows(means, 2.0, 5)
    assert normal == 5.0 and settled == 2  # windows 0 and 1 are above 2x normal
    assert recovery_windows([1.0, 50.0, 1.0, 1.0], 2.0, 5)[0] == 4  # never settles for 5 windows


@needs_root
def test_failover_replacement_time_stamps_its_packets(deployment, bin_dir, trace):
    from nfvlab.chc import faults
    from nfvlab.chc.exp_recovery import NAT_CONFIG

    dep, store = deployment
    res = faults.run(dep, bin_dir, store, trace.path, "nat", "EO+C+NA", config=NAT_CONFIG, rate_pps=2000,
                     fault=faults.Fault("kill-nf", at_packet=trace.packets // 2), tag="bl", samples=True)
    assert set(res.samples) == {"nat1-r"}  # the SIGKILLed instance wrote none
    starts = [t for t, _ in res.samples["nat1-r"]]
    up = next(e["mono_ns"] for e in res.events if e["event"] == "replacement up")
    killed = next(e["mono_ns"] for e in res.events if e["event"] == "killed")
    assert starts == sorted(starts) and starts[0] > killed and starts[0] >= up - 50_000_000
    assert len({c for c, _ in res.outputs}) == trace.packets


@pytest.fixture(scope="module")
def straggler_setup(deployment, bin_dir, tmp_path_factory):
    from nfvlab.chc import exp_straggler
    from nfvlab.chc.trace_setup import TraceDeployment

    dep, store = deployment
    path = tmp_path_factory.mktemp("r5") / "t.pcap"
    spec = traces.TraceSpec(connections=40, packets_per_connection=8, scanners=1, hosts=8, seed=4)
    info = traces.generate(spec, path)
    driver = object.__new__(exp_straggler.Driver)  # the sanitizer build, not the experiments' optimised one
    driver.bin_dir, driver.build_dir = bin_dir, tmp_path_factory.mktemp("r5build")
    return driver, TraceDeployment(dep, store.addresses, info)


@needs_root
@pytest.mark.parametrize("suppression", ["on", "off"])
def test_straggler_clone_duplicates_are_suppressed_or_counted(straggler_setup, tmp_path, suppression):
    from nfvlab.chc import exp_straggler

    driver, s = straggler_setup
    p = exp_straggler.Params(trace=exp_straggler.TraceParams(connections=40, packets_per_connection=8, scanners=1,
                                                             seed=4),
                             straggler=exp_straggler.StragglerParams(rate_pps=3000, suppression=suppression))
    row = driver.measure(s, p, tmp_path / "raw")
    # the clone got the replay's end marker and every later packet of the straggler
    assert row["clone_packets"] >= row["replicated"] > 0.5 * row["packets"]
    assert row["dup_packets"] >= row["replicated"] - 5  # both emitted them: duplicates at the portscan
    assert row["delivered_frac"] == 1.0
    if suppression == "on":
        assert row["dup_updates"] == 0 and row["sink_duplicates"] == 0
        assert row["portscan_state_equal"] == row["decisions_equal"] == row["nat_counters_equal"] == 1
        assert row["store_repeats"] > 0  # the clone's NAT updates were answered from the clock log
    else:
        assert row["sink_duplicates"] == row["dup_packets"] and row["nat_counters_equal"] == 0
        assert row["dup_updates"] > 0  # duplicate SYNs log their connection attempt again
