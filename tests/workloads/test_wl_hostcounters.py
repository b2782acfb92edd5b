"""Host counters: parsing on a synthetic /proc, real snapshots, deltas, NET_RX rising under traffic,
and cgroup CPU usage (v1 cpuacct.usage, v2 cpu.stat)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from nfvlab.workloads.hostcounters import (
    HostCounters,
    HostCountersError,
    cgroup_cpu_usage_s,
    delta,
)
from nfvlab.workloads.traffic import FloodReceiver, FloodSender, parse_flood_stats, stop_and_collect

HZ = os.sysconf("SC_CLK_TCK")


def _fake_proc(root: Path, *, net_rx: int, net_tx: int, softirq: int, irq: int, ksoft: tuple[int, int]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "softirqs").write_text(
        "                    CPU0       CPU1\n"
        "          HI:          0          0\n"
        f"      NET_TX:         10 {net_tx:10d}\n"
        f"      NET_RX:         20 {net_rx:10d}\n"
    )
    (root / "stat").write_text(
        "cpu  100 0 100 1000 0 0 0 0 0 0\n"
        "cpu0 50 0 50 500 0 0 0 0 0 0\n"
        f"cpu1 50 0 50 500 0 {irq} {softirq} 0 0 0\n"
        "intr 0\n"
    )
    for pid, comm in ((22, "ksoftirqd/1"), (14, "ksoftirqd/0"), (7, "evil) (name")):
        d = root / str(pid)
        d.mkdir(exist_ok=True)
        (d / "comm").write_text(comm + "\n")
        utime, stime = ksoft if pid == 22 else (1, 1)
        (d / "stat").write_text(f"{pid} ({comm}) S 2 0 0 0 -1 69238880 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 20 0 0\n")


def test_delta_on_synthetic_proc(tmp_path: Path) -> None:
    _fake_proc(tmp_path, net_rx=100, net_tx=5, softirq=10, irq=2, ksoft=(3, 4))
    hc = HostCounters(tmp_path)
    a = hc.snapshot(1)
    assert a.ksoftirqd_pid == 22 and a.ksoftirqd_ticks == 7
    assert a.net_rx_softirqs == 100 and a.net_tx_softirqs == 5
    _fake_proc(tmp_path, net_rx=350, net_tx=9, softirq=10 + 2 * HZ, irq=2 + HZ, ksoft=(3 + HZ, 4 + HZ))
    d = delta(a, hc.snapshot(1))
    assert d["net_rx_softirqs"] == 250
    assert d["net_tx_softirqs"] == 4
    assert d["stat_softirq_s"] == pytest.approx(2.0)
    assert d["stat_irq_s"] == pytest.approx(1.0)
    assert d["ksoftirqd_cpu_s"] == pytest.approx(2.0)
    assert d["stat_user_s"] == 0
    assert d["wall_s"] >= 0


def test_comm_with_parentheses(tmp_path: Path) -> None:
    _fake_proc(tmp_path, net_rx=0, net_tx=0, softirq=0, irq=0, ksoft=(0, 0))
    assert HostCounters(tmp_path).pid_cpu_ticks(7) == 2


def test_missing_or_bad_files(tmp_path: Path) -> None:
    hc = HostCounters(tmp_path)
    with pytest.raises(HostCountersError, match="cannot read"):
        hc.snapshot(0)
    _fake_proc(tmp_path, net_rx=0, net_tx=0, softirq=0, irq=0, ksoft=(0, 0))
    with pytest.raises(HostCountersError, match="NET_RX column for CPU 5"):
        hc.snapshot(5)
    (tmp_path / "softirqs").write_text("garbage\n")
    with pytest.raises(HostCountersError, match="unexpected header"):
        hc.snapshot(1)


def test_snapshots_of_different_cpus_do_not_mix(tmp_path: Path) -> None:
    _fake_proc(tmp_path, net_rx=0, net_tx=0, softirq=0, irq=0, ksoft=(0, 0))
    hc = HostCounters(tmp_path)
    with pytest.raises(ValueError, match="different CPUs"):
        hc.delta(hc.snapshot(0), hc.snapshot(1))


def test_real_snapshot_and_nonnegative_delta() -> None:
    hc = HostCounters()
    for cpu in range(min(os.cpu_count() or 1, 2)):
        a = hc.snapshot(cpu)
        with open("/proc/self/comm") as f:
            f.read()
        b = hc.snapshot(cpu)
        d = hc.delta(a, b)
        assert set(d) >= {
            "net_rx_softirqs",
            "net_tx_softirqs",
            "stat_softirq_s",
            "stat_irq_s",
            "ksoftirqd_cpu_s",
        }
        assert all(v >= 0 for v in d.values()), d
        assert Path(f"/proc/{a.ksoftirqd_pid}/comm").read_text().strip() == f"ksoftirqd/{cpu}"


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset not installed")
def test_net_rx_rises_while_receiving(nfvflood: Path, procs, free_port) -> None:
    # On loopback (and veth) the receive softirq runs on the sending CPU: pin the sender to CPU 0.
    cpu = 0
    port = free_port(socket.SOCK_DGRAM)
    rx = procs.start(FloodReceiver(nfvflood, "udp", port, bind="127.0.0.1").argv(), wait_listening=True)
    hc = HostCounters()
    a = hc.snapshot(cpu)
    out = subprocess.run(
        ["taskset", "-c", str(cpu), *FloodSender(nfvflood, "udp", ["127.0.0.1"], port, duration=0.3).argv()],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    b = hc.snapshot(cpu)
    got = stop_and_collect(rx)
    assert parse_flood_stats(out.stdout).packets > 0 and got.packets > 0
    d = hc.delta(a, b)
    assert d["net_rx_softirqs"] > 0
    assert all(v >= 0 for v in d.values()), d


def test_cgroup_usage_synthetic(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "cpuacct.usage").write_text("2500000000\n")
    assert cgroup_cpu_usage_s(v1) == pytest.approx(2.5)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert cgroup_cpu_usage_s(v2) == pytest.approx(1.5)
    cpu_only = tmp_path / "cpu"
    cpu_only.mkdir()
    (cpu_only / "cpu.cfs_quota_us").write_text("-1\n")
    (cpu_only / "cpu.stat").write_text("nr_periods 0\nnr_throttled 0\nthrottled_time 0\n")
    with pytest.raises(HostCountersError, match="usage_usec"):
        cgroup_cpu_usage_s(cpu_only)
    (cpu_only / "cpu.stat").unlink()
    with pytest.raises(HostCountersError, match="cpuacct hierarchy"):
        cgroup_cpu_usage_s(cpu_only)
    with pytest.raises(HostCountersError, match="neither"):
        cgroup_cpu_usage_s(tmp_path)


@pytest.mark.parametrize("path", ["/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"])
def test_cgroup_usage_real(path: str) -> None:
    p = Path(path)
    if not ((p / "cpuacct.usage").is_file() or "usage_usec" in _maybe_read(p / "cpu.stat")):
        pytest.skip(f"{path} has no CPU usage file on this machine")
    assert cgroup_cpu_usage_s(p) > 0


def _maybe_read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""
