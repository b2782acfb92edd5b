"""Fixtures for Iron's tests: a two-container local testbed of its own names (prefix ``nfvlab-ti``,
198.18.100.0/24) under the machine-wide testbed lock, always torn down; helpers to send UDP from the
peer namespace on CPU 0. Iron's calibration is set explicitly (0) through the environment: these
tests check mechanics, not the charged amounts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from nfvlab.testbeds.local import LocalTestbed, TestbedBusy
from nfvlab.testbeds.model import Topology


def _need_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, cgroups, BPF)")
    for tool in ("clang", "bpftool", "ip"):
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")):
            pytest.skip(f"{tool} not installed")
    if not os.path.isdir("/sys/fs/cgroup/cpu") or not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("needs cgroup v1 cpu controller and kernel BTF")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")


PREFIX, SUBNET = "nfvlab-ti", "198.18.100.0/24"
LOCK_WAIT_S = float(os.environ.get("NFVLAB_TEST_TESTBED_WAIT_S", "300"))


@pytest.fixture
def fixture_topo(request: pytest.FixtureRequest, monkeypatch) -> Iterator[tuple[LocalTestbed, Topology]]:
    _need_root_tools()
    monkeypatch.setenv("NFVLAB_IRON_IRQ_EXTRA_NS", "0")
    fx = LocalTestbed(prefix=PREFIX, subnet=SUBNET, wait_s=LOCK_WAIT_S)
    try:
        topo = fx.up(["victim", "interferer"])
    except TestbedBusy:
        pytest.skip("the local testbed stayed busy (another developer's run)")
    request.addfinalizer(fx.down)
    yield fx, topo


SENDER = """
import socket, sys, time
dst, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d = b"x" * 1400
n = 0
end = time.monotonic() + secs
while time.monotonic() < end:
    for _ in range(64):
        try:
            s.sendto(d, (dst, port))
            n += 1
        except OSError:
            pass
print(n)
"""


@pytest.fixture
def send_udp():
    return _send_udp


def _send_udp(fx: LocalTestbed, dst: str, port: int, secs: float) -> int:
    """Flood dst:port from the peer namespace (CPU 0) for secs; return the number of datagrams sent."""
    p = fx.run_peer([sys.executable, "-c", SENDER, dst, str(port), str(secs)], stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=secs + 10)
    return int(out.strip() or 0)
