"""The CHC state store: real redis-servers, standalone (N instances, client-side partitioning by object)
or a Redis Cluster, each with CHC's Functions library loaded.

One redis-server per store instance: its own port on loopback (16379-16479, or inside a namespace),
its own directory, persistence off. Every server is journaled so `nfvlab clean` ends it after a crash.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import redis

from nfvlab import state


def _port_range() -> range:
    """Loopback ports for test/bench servers; NFVLAB_CHC_REDIS_PORTS="LOW-HIGH" moves them (one range
    per checkout, so parallel checkouts never race for the same port)."""
    text = os.environ.get("NFVLAB_CHC_REDIS_PORTS", "")
    if not text:
        return range(16379, 16480)
    low, _, high = text.partition("-")
    return range(int(low), int(high) + 1)


PORT_RANGE = _port_range()
FUNCTIONS_LUA = "chc_functions.lua"


class StoreError(RuntimeError):
    pass


def functions_source() -> str:
    return resources.files("nfvlab.chc").joinpath(FUNCTIONS_LUA).read_text()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_ports(n: int, host: str = "127.0.0.1", ports: range = PORT_RANGE) -> list[int]:
    """n ports of the range nobody listens on now (a cluster also needs port + 10000 for its bus)."""
    found = [p for p in ports if _port_free(host, p) and _port_free(host, p + 10000)]
    if len(found) < n:
        raise StoreError(f"need {n} free ports in {ports.start}-{ports.stop - 1} on {host}, found {len(found)}")
    return found[:n]


@dataclass
class RedisServer:
    """One redis-server process on host:port with its own directory."""

    port: int
    workdir: Path
    host: str = "127.0.0.1"
    cluster: bool = False
    # Wraps the server's argv, e.g. to run it inside a container (cgroup + namespace).
    launcher: Callable[[list[str]], list[str]] | None = None
    popen: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        # Absolute paths: redis-server enters --dir before it opens the log file.
        self.workdir = self.workdir.resolve()
        args = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port), "--bind", self.host, "--dir", str(self.workdir),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
            "--logfile", str(self.workdir / "redis.log"),
        ]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(self.workdir / "nodes.conf")]
        return self.launcher(args) if self.launcher else args

    def start(self, timeout_s: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.popen = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        state.record("process", pid=self.popen.pid, start=state.process_start_time(self.popen.pid),
                     name=f"nfvlab-chc-redis-{self.port}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise StoreError(f"redis-server on port {self.port} exited: {self.log_tail()}")
            with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                if self.client().ping():
                    return
            time.sleep(0.05)
        raise StoreError(f"redis-server on port {self.port} did not answer within {timeout_s} s")

    def client(self, **kw) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=5, **kw)

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join((self.workdir / "redis.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """End our server by its pid (SIGTERM, then SIGKILL)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def load_functions(client: redis.Redis, dedup: bool = True) -> None:
    """Load (or replace) CHC's Functions library on one server. dedup=False switches the clock log's
    duplicate suppression off (the COE checker's negative control; docs/chc.md "Correctness")."""
    src = functions_source()
    if not dedup:
        if "local DEDUP = true" not in src:
            raise StoreError("the Functions library has no DEDUP switch")
        src = src.replace("local DEDUP = true", "local DEDUP = false", 1)
    client.function_load(src, replace=True)


@dataclass
class Store:
    """A started store: its servers and how clients find an object's server."""

    mode: str  # "standalone" | "cluster"
    servers: list[RedisServer]
    workdir: Path
    _owns_workdir: bool = False

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.servers]

    def client_for(self, key: str) -> redis.Redis:
        """The server holding key: slot owner in a cluster; partition index for N standalone servers
        (the same slot-range rule as the C++ client, so both agree on every key)."""
        if self.mode == "cluster":
            return redis.RedisCluster(host=self.servers[0].host, port=self.servers[0].port)
        return self.servers[partition_of(key, len(self.servers))].client()

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def key_slot(key: str) -> int:
    """Redis Cluster's slot of a key (CRC16/XMODEM of its hash tag, mod 16384)."""
    from redis.crc import key_slot as _slot

    return _slot(key.encode())


def partition_of(key: str, n: int) -> int:
    """Standalone partitioning: the 16384 slots split into n equal ranges, one per server."""
    return key_slot(key) * n // 16384


def _new_workdir(workdir: Path | None) -> tuple[Path, bool]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir, False
    return Path(tempfile.mkdtemp(prefix="nfvlab-chc-store-")), True


def start_standalone(n: int = 1, workdir: Path | None = None, ports: list[int] | None = None) -> Store:
    """n independent redis-servers, each with the Functions library."""
    wd, owned = _new_workdir(workdir)
    ports = ports or free_ports(n)
    store = Store("standalone", [RedisServer(p, wd / f"redis-{p}") for p in ports], wd, owned)
    try:
        for s in store.servers:
            s.start()
            load_functions(s.client())
    except BaseException:
        store.stop()
        raise
    return store


def start_cluster(masters: int = 3, workdir: Path | None = None, timeout_s: float = 30.0) -> Store:
    """A Redis Cluster of `masters` masters (no replicas) on loopback, created with
    `redis-cli --cluster create`, the Functions library loaded on every master."""
    if masters < 3:
        raise StoreError("a Redis Cluster needs at least 3 masters")
    wd, owned = _new_workdir(workdir)
    store = Store("cluster", [RedisServer(p, wd / f"redis-{p}", cluster=True) for p in free_ports(masters)], wd, owned)
    try:
        for s in store.servers:
            s.start()
        out = subprocess.run(["redis-cli", "--cluster", "create", *store.addresses, "--cluster-replicas", "0",
                              "--cluster-yes"], capture_output=True, text=True, timeout=timeout_s)
        if out.returncode != 0:
            raise StoreError(f"redis-cli --cluster create failed: {out.stdout[-400:]} {out.stderr[-400:]}")
        deadline = time.monotonic() + timeout_s
        while not all(s.client().cluster("info")["cluster_state"] == "ok" for s in store.servers):
            if time.monotonic() > deadline:
                raise StoreError("cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        for s in store.servers:
            load_functions(s.client())
    except BaseException:
        store.stop()
        raise
    return store
