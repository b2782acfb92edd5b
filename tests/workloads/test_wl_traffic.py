"""nfvflood: build, argv builders, result parsing, and real UDP/TCP floods over loopback and a veth
pair between two network namespaces."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from nfvlab.workloads.hostcounters import HostCounters
from nfvlab.workloads.traffic import (
    NFVFLOOD_SOURCE,
    FloodReceiver,
    FloodSender,
    TrafficError,
    TrafficStats,
    build_nfvflood,
    parse_flood_stats,
    stop_and_collect,
)

LO = "127.0.0.1"

# ------------------------------------------------------------------------------------------- build


def test_build_is_cached_by_source_hash(nfvflood: Path, tmp_path: Path) -> None:
    assert nfvflood.is_file() and os.access(nfvflood, os.X_OK)
    again = build_nfvflood(nfvflood.parent)
    assert again == nfvflood
    # a different source gets a different binary
    src = tmp_path / "nfvflood.c"
    src.write_text(NFVFLOOD_SOURCE.read_text() + "\n/* changed */\n")
    other = build_nfvflood(tmp_path / "b", source=src)
    assert other.name != nfvflood.name
    assert not list((tmp_path / "b").glob(".nfvflood-*")), "temporary files left behind"


def test_build_without_compiler(tmp_path: Path) -> None:
    with pytest.raises(TrafficError, match="not found: apt-get install gcc"):
        build_nfvflood(tmp_path, cc="no-such-cc-nfvlab")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_build_failure_shows_compiler_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return nope; }\n")
    with pytest.raises(TrafficError, match="compiling .* failed") as exc:
        build_nfvflood(tmp_path / "out", source=bad)
    assert "nope" in str(exc.value)
    assert not [p for p in (tmp_path / "out").iterdir()], "no binary or temp file after a failed build"


# ------------------------------------------------------------------------------------------- argv


def test_sender_argv() -> None:
    s = FloodSender("/x/nfvflood", "udp", ["198.18.200.2", "198.18.200.6"], 9000, flows=4, rate_mbps=50, duration=1.5)
    assert s.argv() == [
        "/x/nfvflood",
        "send",
        "--proto",
        "udp",
        "--dst",
        "198.18.200.2,198.18.200.6",
        "--port",
        "9000",
        "--flows",
        "4",
        "--size",
        "1400",
        "--rate-mbps",
        "50",
        "--duration",
        "1.5",
    ]
    assert FloodSender("b", "tcp", "198.18.0.1", 1).dst == ("198.18.0.1",)


def test_receiver_argv() -> None:
    r = FloodReceiver("nf", "tcp", 9001, bind="198.18.200.2", duration=2)
    assert r.argv() == [
        "nf",
        "recv",
        "--proto",
        "tcp",
        "--port",
        "9001",
        "--bind",
        "198.18.200.2",
        "--duration",
        "2",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"proto": "icmp"},
        {"dst": []},
        {"dst": ["10.0.0.300"]},
        {"port": 0},
        {"flows": 0},
        {"size": 70000},
        {"rate_mbps": 0},
        {"duration": -1},
        {"batch": 65},
    ],
)
def test_sender_validation(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"binary": "nf", "proto": "udp", "dst": [LO], "port": 9000}
    with pytest.raises(ValueError):
        FloodSender(**{**base, **kwargs})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- parsing


def test_parse_stats_line() -> None:
    line = json.dumps(
        {
            "mode": "recv",
            "proto": "udp",
            "packets": 1000,
            "bytes": 1400000,
            "errors": 0,
            "seconds": 2.0,
            "active_seconds": 1.0,
            "drops": 5,
            "new_field": "x",
        }
    )
    st = parse_flood_stats("nfvflood: listening\n" + line + "\n")
    assert st.packets == 1000 and st.drops == 5
    assert st.rate_mbps == pytest.approx(5.6)
    assert st.active_rate_mbps == pytest.approx(11.2)
    assert st.pps == pytest.approx(500)
    assert st.extra == {"new_field": "x"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage\n",
        "{not json}\n",
        '{"packets": 1}\n',
        '{"mode":"send","proto":"udp","packets":"many","bytes":1,"errors":0,"seconds":1}',
    ],
)
def test_parse_stats_garbage(text: str) -> None:
    with pytest.raises(TrafficError):
        parse_flood_stats(text)


def test_zero_seconds_rate_is_zero() -> None:
    st = TrafficStats(mode="send", proto="udp", packets=0, bytes=0, errors=0, seconds=0.0)
    assert st.rate_mbps == 0.0 and st.pps == 0.0


# ------------------------------------------------------------------------------------------- loopback runs


def _run(argv: list[str], timeout: float = 10) -> TrafficStats:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return parse_flood_stats(proc.stdout)


def test_udp_loopback(nfvflood: Path, procs, free_port) -> None:
    port = free_port(socket.SOCK_DGRAM)
    rx = procs.start(FloodReceiver(nfvflood, "udp", port, bind=LO).argv(), wait_listening=True)
    sent = _run(FloodSender(nfvflood, "udp", [LO], port, flows=4, duration=0.5).argv())
    time.sleep(0.1)
    got = stop_and_collect(rx)
    assert sent.mode == "send" and got.mode == "recv"
    assert sent.packets > 0 and sent.bytes == sent.packets * 1400
    assert 0 < got.packets <= sent.packets
    assert got.bytes == got.packets * 1400
    assert got.packets + got.drops <= sent.packets
    assert sent.flow_bytes_min > 0, "every flow must send"


def test_tcp_loopback_all_flows_progress(nfvflood: Path, procs, free_port) -> None:
    port = free_port(socket.SOCK_STREAM)
    rx = procs.start(FloodReceiver(nfvflood, "tcp", port, bind=LO).argv(), wait_listening=True)
    sent = _run(FloodSender(nfvflood, "tcp", [LO], port, flows=8, duration=0.5).argv())
    time.sleep(0.2)
    got = stop_and_collect(rx)
    assert sent.connections == 8 and got.connections == 8
    assert sent.errors == 0
    assert sent.flow_bytes_min > 0
    assert 0 < got.bytes <= sent.bytes
    assert got.packets == got.bytes // 1400


def test_udp_rate_pacing(nfvflood: Path, procs, free_port) -> None:
    port = free_port(socket.SOCK_DGRAM)
    # a big receive buffer so a receiver delayed by other load on this shared machine does not drop
    rx = procs.start(FloodReceiver(nfvflood, "udp", port, bind=LO, rcvbuf=4 << 20).argv(), wait_listening=True)
    sent = _run(FloodSender(nfvflood, "udp", [LO], port, flows=2, rate_mbps=50, duration=1).argv())
    time.sleep(0.1)
    got = stop_and_collect(rx)
    assert sent.rate_mbps == pytest.approx(50, rel=0.3)
    assert sent.packets == pytest.approx(50e6 / 8 / 1400, rel=0.3)
    # what arrived (or overflowed the socket) is what was paced: Mbit over the 1 s run
    assert (got.packets + got.drops) * 1400 * 8 / 1e6 == pytest.approx(50, rel=0.3)
    assert got.packets > 0


def test_pacing_catchup_after_a_stall(nfvflood: Path, procs, free_port) -> None:
    """A sender stopped for 0.3 s makes up the lost time only up to its bucket depth (catchup_ms)."""
    counts = {}
    for catchup in (1000.0, 1.0):
        port = free_port(socket.SOCK_DGRAM)
        rx = procs.start(FloodReceiver(nfvflood, "udp", port, bind=LO, rcvbuf=4 << 20).argv(), wait_listening=True)
        tx = procs.start(FloodSender(nfvflood, "udp", [LO], port, rate_mbps=50, duration=1, catchup_ms=catchup).argv())
        time.sleep(0.3)
        os.kill(tx.pid, signal.SIGSTOP)
        time.sleep(0.3)
        os.kill(tx.pid, signal.SIGCONT)
        tx.wait(timeout=5)  # it stops by itself at 1 s
        counts[catchup] = stop_and_collect(tx).packets
        stop_and_collect(rx)
    expected = 50e6 / 8 / 1400  # 4464 packets in 1 s
    assert counts[1000.0] == pytest.approx(expected, rel=0.15)  # the 0.3 s are made up in a burst
    assert counts[1.0] < 0.85 * expected  # at most 1 ms made up: ~0.3 s of packets are lost


def test_tcp_rate_pacing(nfvflood: Path, procs, free_port) -> None:
    port = free_port(socket.SOCK_STREAM)
    rx = procs.start(FloodReceiver(nfvflood, "tcp", port, bind=LO).argv(), wait_listening=True)
    sent = _run(FloodSender(nfvflood, "tcp", [LO], port, flows=3, rate_mbps=40, duration=1).argv())
    stop_and_collect(rx)
    assert sent.rate_mbps == pytest.approx(40, rel=0.3)


def test_sigterm_prints_stats_promptly(nfvflood: Path, procs, free_port) -> None:
    port = free_port(socket.SOCK_DGRAM)
    # an idle receiver (blocked waiting) and an unbounded sender both stop on SIGTERM
    rx = procs.start(FloodReceiver(nfvflood, "udp", port, bind=LO).argv(), wait_listening=True)
    tx = procs.start(FloodSender(nfvflood, "udp", [LO], port, flows=2).argv())
    time.sleep(0.3)
    t0 = time.monotonic()
    sent = stop_and_collect(tx, timeout=2)
    assert time.monotonic() - t0 < 1.0
    assert tx.returncode == 0 and sent.packets > 0
    time.sleep(0.05)
    t0 = time.monotonic()
    rx.send_signal(signal.SIGINT)
    got = stop_and_collect(rx, timeout=2)
    assert time.monotonic() - t0 < 1.0
    assert rx.returncode == 0 and 0 < got.packets <= sent.packets


def test_idle_receiver_sigterm(nfvflood: Path, procs, free_port) -> None:
    port = free_port(socket.SOCK_STREAM)
    rx = procs.start(FloodReceiver(nfvflood, "tcp", port, bind=LO).argv(), wait_listening=True)
    time.sleep(0.05)
    got = stop_and_collect(rx, timeout=2)
    assert got.packets == 0 and got.connections == 0


def test_udp_to_closed_port_counts_errors(nfvflood: Path, free_port) -> None:
    port = free_port(socket.SOCK_DGRAM)  # nobody listens: ICMP port unreachable -> ECONNREFUSED
    sent = _run(FloodSender(nfvflood, "udp", [LO], port, duration=0.3).argv())
    assert sent.errors > 0
    assert sent.packets > 0


def test_receiver_duration_ends_run(nfvflood: Path, free_port) -> None:
    port = free_port(socket.SOCK_DGRAM)
    t0 = time.monotonic()
    got = _run(FloodReceiver(nfvflood, "udp", port, bind=LO, duration=0.3).argv())
    assert 0.25 < time.monotonic() - t0 < 2
    assert got.seconds == pytest.approx(0.3, abs=0.1)


def test_usage_errors_exit_2(nfvflood: Path) -> None:
    for argv in (
        ["send"],
        ["recv", "--proto", "udp"],
        ["send", "--proto", "udp", "--port", "1", "--dst", "x"],
        ["bogus"],
    ):
        proc = subprocess.run([str(nfvflood), *argv], capture_output=True, text=True, timeout=5)
        assert proc.returncode == 2, argv
        assert proc.stdout == ""
        assert "nfvflood" in proc.stderr


def test_stop_and_collect_reports_failure(nfvflood: Path, procs) -> None:
    tx = procs.start([str(nfvflood), "send", "--proto", "udp", "--dst", LO, "--port", "1", "--size", "0"])
    tx.wait(timeout=5)  # it exits at once on the usage error
    with pytest.raises(TrafficError, match="status 2"):
        stop_and_collect(tx)


# ------------------------------------------------------------------------------------------- veth + netns


def _taskset(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []


@pytest.mark.root
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_flood_over_veth_between_namespaces(nfvflood: Path, veth_pair, procs, proto: str) -> None:
    rx = procs.start(
        veth_pair.exec_b() + FloodReceiver(nfvflood, proto, 9100, bind=veth_pair.addr_b).argv(),
        wait_listening=True,
    )
    sender = FloodSender(nfvflood, proto, [veth_pair.addr_b], 9100, flows=4, duration=0.5)
    counters = HostCounters()
    before = counters.snapshot(0)
    sent = _run(veth_pair.exec_a() + _taskset(0) + sender.argv())
    after = counters.snapshot(0)
    time.sleep(0.1)
    got = stop_and_collect(rx)
    assert sent.packets > 0 and sent.flow_bytes_min > 0
    assert 0 < got.packets <= sent.packets
    assert 0 < got.bytes <= sent.bytes
    # without RPS the veth peer's receive softirq runs on the sending CPU (0)
    d = counters.delta(before, after)
    assert d["net_rx_softirqs"] > 0
    assert all(v >= 0 for v in d.values()), d
