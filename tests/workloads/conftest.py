"""Fixtures for the workloads tests: the nfvflood binary, tracked processes, a veth pair between two
network namespaces (``nfvlab-tw-*``, 198.18.200.0/30) that is always deleted afterwards."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nfvlab.workloads.traffic import build_nfvflood

_ns_counter = itertools.count()


@pytest.fixture(scope="session")
def nfvflood(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    return build_nfvflood(tmp_path_factory.mktemp("nfvflood-build"))


class Procs:
    """Processes a test started; anything still running at teardown is killed by pid."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], *, wait_listening: bool = False) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        if wait_listening:
            assert proc.stderr is not None
            line = proc.stderr.readline()  # nfvflood says "listening on ..." once bound
            assert "listening" in line, f"receiver did not start: {line!r} {proc.stderr.read()!r}"
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                proc.communicate(timeout=5)


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.cleanup()


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[int], int]:
    """``free_port(socket.SOCK_DGRAM | SOCK_STREAM)``: a port nobody on loopback uses right now."""
    return _free_port


@dataclass(frozen=True)
class VethPair:
    ns_a: str
    ns_b: str
    addr_a: str = "198.18.200.1"
    addr_b: str = "198.18.200.2"

    def exec_a(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns_a]

    def exec_b(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns_b]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@pytest.fixture
def veth_pair() -> Iterator[VethPair]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 not installed")
    tag = f"nfvlab-tw-{os.getpid()}-{next(_ns_counter)}"
    pair = VethPair(ns_a=f"{tag}-a", ns_b=f"{tag}-b")
    created: list[str] = []
    try:
        for ns in (pair.ns_a, pair.ns_b):
            _ip("netns", "add", ns)
            created.append(ns)
        _ip(
            "link",
            "add",
            "tw0",
            "netns",
            pair.ns_a,
            "type",
            "veth",
            "peer",
            "name",
            "tw1",
            "netns",
            pair.ns_b,
        )
        for ns, dev, addr in ((pair.ns_a, "tw0", pair.addr_a), (pair.ns_b, "tw1", pair.addr_b)):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield pair
    finally:
        for ns in reversed(created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
