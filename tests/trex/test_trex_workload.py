"""The TRex workload drives the fake TRex server through the unmodified official client."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import zmq

from nfvlab.workloads.trex import TrexError, TrexTraffic, import_trex, run_trex
from nfvlab.workloads.trexfake import compress, decompress, is_compressed
from nfvlab.workloads.trexfake.model import Stream, offered_rates
from nfvlab.workloads.trexfake.process import FakeTrexProcess

# The methods a connect / reset / add_streams / start / wait_on_traffic / get_stats / release /
# disconnect session of lbr-trex-client 3.4.0 calls (seen in the fake's call log).
SESSION_METHODS = {
    "get_version", "api_sync_v2", "get_system_info", "get_supported_cmds", "get_port_status", "publish_now",
    "get_async_events", "get_port_stats", "get_global_stats", "get_port_xstats_names", "get_port_xstats_values",
    "get_active_pgids", "get_pgid_stats", "get_tpg_status", "acquire", "set_port_attr", "set_rx_feature",
    "capture", "service", "add_stream", "start_traffic", "release",
}


@pytest.fixture(scope="module")
def fake():
    with FakeTrexProcess() as f:
        yield f


@pytest.fixture(scope="module")
def slow_dut():
    with FakeTrexProcess(dut_capacity_pps=50_000) as f:
        yield f


def test_udp_rate_flows_recorded(fake) -> None:
    row = run_trex(TrexTraffic(rate_pps=50_000, flows=100, frame_bytes=64, duration_s=1.0), fake.server).row()
    assert row["tx_packets"] == pytest.approx(50_000, abs=2)
    assert row["rx_packets"] == row["tx_packets"]
    assert row["tx_pps"] == pytest.approx(50_000, rel=1e-3)
    assert row["dropped_packets"] == 0 and row["drop_ratio"] == 0
    assert row["tx_bytes"] == pytest.approx(64 * row["tx_packets"], abs=64)
    assert row["tx_l1_mbps"] == pytest.approx(50_000 * 84 * 8 / 1e6, rel=1e-3)
    assert row["flows"] == 100 and row["proto"] == "udp"
    assert 0.9 <= row["wall_s"] <= 60  # wall clock on a shared machine: only a sanity band


def test_tcp_drops_above_dut_capacity(slow_dut) -> None:
    row = run_trex(TrexTraffic(proto="tcp", rate_pps=80_000, frame_bytes=512, duration_s=0.5), slow_dut.server).row()
    assert row["tx_packets"] == pytest.approx(40_000, abs=2)
    assert row["rx_packets"] == pytest.approx(25_000, abs=2)
    assert row["drop_ratio"] == pytest.approx(0.375, abs=1e-3)
    assert row["rx_pps"] == pytest.approx(50_000, rel=1e-3)


def test_line_rate_caps_the_offered_rate(fake) -> None:
    row = run_trex(TrexTraffic(rate_mbps=25_000, frame_bytes=1518, duration_s=0.5), fake.server).row()
    assert row["offered_pps"] == pytest.approx(25e9 / (1538 * 8))
    assert row["tx_l1_mbps"] == pytest.approx(10_000, rel=1e-3)  # the fake's ports are 10 Gbit/s


def test_session_used_the_real_protocol() -> None:
    with FakeTrexProcess() as f:
        run_trex(TrexTraffic(rate_pps=1000, duration_s=0.2), f.server)
    called = json.loads(f.calls.split("calls ", 1)[1])  # the fake logs its calls when it stops
    assert set(called) >= SESSION_METHODS, SESSION_METHODS - set(called)
    assert called["start_traffic"] == 1 and called["add_stream"] == 1


def test_unknown_port_is_a_clear_error(fake) -> None:
    with pytest.raises(TrexError, match=r"tx_port/rx_port \[2, 3\] not on the server"):
        run_trex(TrexTraffic(rate_pps=10, tx_port=2, rx_port=3, duration_s=0.2), fake.server)


def test_no_server_is_a_clear_error() -> None:
    from nfvlab.workloads.trex import TrexServer

    with pytest.raises(TrexError, match="TRex"):
        run_trex(TrexTraffic(rate_pps=10, duration_s=0.2), TrexServer(sync_port=1, async_port=2, timeout_s=1))


def test_wire_framing_jsonrpc_and_async_trigger(fake) -> None:
    ctx = zmq.Context()
    req, sub = ctx.socket(zmq.REQ), ctx.socket(zmq.SUB)
    try:
        for s in (req, sub):
            s.setsockopt(zmq.RCVTIMEO, 3000)
            s.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        req.connect(f"tcp://127.0.0.1:{fake.rpc_port}")
        sub.connect(f"tcp://127.0.0.1:{fake.async_port}")
        msg = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "api_sync_v2",
                          "params": {"name": "STL", "major": 5, "minor": 1}}).encode()
        req.send(compress(msg))  # the client compresses every request (threshold 0)
        reply = req.recv()
        assert is_compressed(reply)
        api_h = json.loads(decompress(reply))["result"]["api_h"]
        req.send(json.dumps({"jsonrpc": "2.0", "id": 8, "method": "no_such_method", "params": {"api_h": api_h}})
                 .encode())
        assert json.loads(req.recv())["error"]["code"] == -32601
        req.send(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "get_port_status", "params": {"port_id": 0}})
                 .encode())
        assert "API handler" in json.loads(req.recv())["error"]["specific_err"]
        assert sub.recv() == b"{}"  # the PUB channel carries triggers only
    finally:
        req.close()
        sub.close()
        ctx.term()


def test_client_refuses_to_share_a_process_with_pyzmq() -> None:
    with pytest.raises(TrexError, match="child process"):
        import_trex()


def test_compression_rejects_bad_frames() -> None:
    assert decompress(compress(b"hello")) == b"hello"
    assert not is_compressed(b"{}")
    with pytest.raises(ValueError):
        decompress(b"\x00" * 8 + b"x")


def test_field_engine_makes_the_flows() -> None:
    # In a child: this test process has pyzmq loaded, which the TRex client's own zmq cannot share.
    code = ("import json; from nfvlab.workloads.trex import TrexTraffic, build_stream; "
            "print(json.dumps(build_stream(TrexTraffic(rate_pps=1000, flows=300, frame_bytes=128, proto='tcp'))"
            ".to_json()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    js = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [i["type"] for i in js["vm"]["instructions"]] == ["flow_var", "write_flow_var", "fix_checksum_hw"]
    stream = Stream.from_json(1, js)
    assert stream.flows == 300
    assert stream.frame_bytes == 128
    assert offered_rates([stream], {"type": "raw", "value": 1, "op": "abs"}, 10e9) == [1000.0]


@pytest.mark.parametrize(("data", "words"), [
    ({"rate_pps": 100, "frame_bytes": 40}, "frame_bytes: Input should be greater than or equal to 64"),
    ({"rate_pps": 100, "rate_mbps": 5}, "exactly one of rate_pps or rate_mbps"),
    ({}, "exactly one of rate_pps or rate_mbps"),
    ({"rate_pps": 100, "proto": "sctp"}, "proto"),
    ({"rate_pps": 100, "flows": 0}, "flows"),
    ({"rate_pps": 100, "tx_port": 1, "rx_port": 1}, "must differ"),
    ({"rate_pps": 100, "colour": "red"}, "colour"),
])
def test_invalid_traffic_names_the_field(data, words) -> None:
    with pytest.raises(TrexError) as info:
        TrexTraffic.parse(data, where="experiments/x.yaml: params.trex")
    assert "experiments/x.yaml: params.trex" in str(info.value) and words in str(info.value)


def test_offered_rate_from_l1_mbps() -> None:
    t = TrexTraffic(rate_mbps=1000, frame_bytes=64)
    assert math.isclose(t.offered_pps, 1e9 / (84 * 8))
