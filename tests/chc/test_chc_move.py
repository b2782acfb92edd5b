"""R2 elastic scaling on the compiled data plane, a real redis-server and namespaces: the root moves a
share of a running NAT's flows to a new instance with last/first markers; the new instance buffers
them until the store notifies it of the old instance's handover, and the NAT's state and the sink's
per-flow order come out as without a move. Also the Python copy of the flow hash and the spec."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from nfvlab.chc import flowhash, traces
from nfvlab.experiments.registry import get_kind
from nfvlab.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)")


def test_flow_hash_is_the_dataplanes():
    # chc/tests/test_dataplane.cpp checks scope_hash("5tuple") of this tuple against the same constant
    s, d = int(ipaddress.IPv4Address("198.18.32.10")), int(ipaddress.IPv4Address("198.18.40.1"))
    assert flowhash.tuple_hash(s, 12345, d, 80, 6) == flowhash.tuple_hash(d, 80, s, 12345, 6) == 0xC7FE2D2B16636046
    assert flowhash.moved(0xC7FE2D2B16636046, 4096) and not flowhash.moved(0xC7FE2D2B16636046, 0x046)
    assert flowhash.moved(0xC7FE2D2B16636046, 0x047)  # bucket 0x046 is the first one past [0, 0x046)


def test_move_spec_validates_with_flat_rows():
    spec = load_spec(REPO / "experiments" / "chc-move.yaml")
    assert spec.kind == "chc-move" and {"quick", "paper"} <= set(spec.scales)
    kind = get_kind("chc-move")
    leaves = [p.split(".")[-1] for p in kind.parameter_names()]
    assert len(set(leaves)) == len(leaves) and not set(leaves) & set(kind.metrics)
    assert {c.id for c in spec.claims if c.counts_as_reproduction} >= {"move-time-no-caching", "move-loss-free"}


@pytest.fixture(scope="module")
def move_setup(tmp_path_factory, chc_bin, bin_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, cgroups)")
    from nfvlab.chc import exp_move
    from nfvlab.chc.deploy import LocalDeployment
    from nfvlab.chc.trace_setup import TraceDeployment

    trace = exp_move.TraceParams(connections=200, packets_per_connection=8, duration_s=0.02, seed=5)
    info = traces.generate(traces.spec_from_params(trace), tmp_path_factory.mktemp("r2") / "t.pcap")
    driver = object.__new__(exp_move.Driver)  # the sanitizer build, not the experiments' optimised one
    driver.bin_dir, driver.build_dir = bin_dir, tmp_path_factory.mktemp("r2build")
    with LocalDeployment(tmp_path_factory.mktemp("r2dep")) as dep:
        store = dep.start_store(1)
        yield driver, TraceDeployment(dep, store.addresses, info), trace


@needs_root
@pytest.mark.parametrize("scheme", ["chc-EO", "chc-EO+C+NA"])
def test_move_hands_flows_over_without_loss_or_reordering(move_setup, tmp_path, scheme):
    from nfvlab.chc import exp_move

    driver, s, trace = move_setup
    p = exp_move.Params(trace=trace, move=exp_move.MoveParams(scheme=scheme, rate_pps=3000, old_stall_ms=20))
    row = driver.measure(s, p, tmp_path / "raw")
    # the new instance got exactly the flows the move covers (the Python hash agrees with the C++ one)
    assert row["moved_flows"] == row["moved_active_flows"] > 10 and row["moved_state_flows"] > 10
    # the old instance was stopped at the move: moved packets reached the new one before the handover
    assert row["moved_buffered"] > 0 and row["late_moved"] == 0
    assert row["state_equal"] == row["store_state_equal"] == row["translations_kept"] == row["flow_order_kept"] == 1
    assert row["delivered_frac"] == 1.0 and row["sink_duplicates"] == 0
    assert 0 < row["flush_ms"] <= row["move_ms"] < 20


@needs_root
def test_naive_move_reorders_a_flow(move_setup, tmp_path):
    """The control: a new instance that does not wait processes moved packets ahead of the old one's
    queue, so some flow leaves out of order (the stall makes sure packets of open flows are queued)."""
    from nfvlab.chc import exp_move

    driver, s, trace = move_setup
    p = exp_move.Params(trace=trace, move=exp_move.MoveParams(scheme="naive-EO", rate_pps=3000, old_stall_ms=20))
    row = driver.measure(s, p, tmp_path / "raw")
    assert row["moved_buffered"] == 0 and row["flow_order_kept"] == 0
    assert row["delivered_frac"] == 1.0


@needs_root
def test_opennf_move_exports_state_and_holds_packets(move_setup, tmp_path):
    """The baseline: the old instance's per-flow entries of the moved flows go to the new instance
    through the controller, and the packets that arrive meanwhile are held, then released to it."""
    from nfvlab.chc import exp_move

    driver, s, trace = move_setup
    p = exp_move.Params(trace=trace, move=exp_move.MoveParams(scheme="opennf", rate_pps=3000, old_stall_ms=20))
    row = driver.measure(s, p, tmp_path / "raw")
    # two entries per translated connection (out and in), for the moved flows seen before the move
    assert row["state_entries"] >= row["moved_state_flows"] > 10
    assert row["moved_buffered"] > 0  # the stall's backlog became OpenNF events
    assert row["state_equal"] == row["translations_kept"] == row["counters_equal"] == 1
    assert row["delivered_frac"] == 1.0 and row["sink_duplicates"] == 0
    assert 0 < row["flush_ms"] < row["move_ms"]


def test_move_needs_externalized_state(bin_dir, tmp_path):
    """Model T keeps per-flow state inside the instance: a move marker is refused, not ignored."""
    import socket
    import subprocess
    import time

    from nfvlab.chc import control

    sock = tmp_path / "nf.sock"
    nf = subprocess.Popen([str(bin_dir / "chc-nf"), "--nf", "nat", "--listen", "127.0.0.1:39561", "--control",
                           str(sock)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        control.wait_ready(sock, alive=lambda: nf.poll() is None)
        header = bytes([1, 1]) + bytes(22)  # version 1, flags LAST, the rest 0 (frame_len patched below)
        payload = b"move 1 5tuple 1 0 1 1 10"
        header = header[:6] + len(payload).to_bytes(2, "big") + header[8:]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(header + payload, ("127.0.0.1", 39561))
        deadline = time.monotonic() + 10
        while nf.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert nf.returncode == 2
        assert "a move needs externalized state" in nf.stderr.read()
    finally:
        if nf.poll() is None:
            nf.kill()
        nf.wait()
