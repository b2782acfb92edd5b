"""Experiment kind `chc-store-throughput`: offloaded ops per second through CHC's C++ client
(chc-store-bench: FCALL chc_incr, GET, FCALL chc_set with `depth` ops in flight) against
redis-benchmark sending the same command at the same pipelining depth over one connection, on one
redis-server, N standalone servers (client-side partitioning by object, one client process per
server's share run in parallel is not used: one client drives all N) or a 3-master Redis Cluster.
The paper's store reached ~5.1M ops/s on a dedicated 8-core server; here the client and the
servers share 2 busy cores, so the absolute numbers are noisy and lower.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nfvlab.chc import store as chc_store
from nfvlab.chc.driver import ChcDriver
from nfvlab.experiments.registry import ExperimentKind


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreParams(Strict):
    layout: Literal["single", "standalone3", "cluster3"]


class WorkloadParams(Strict):
    op: Literal["incr", "get", "set"]
    depth: int = Field(16, ge=1, le=1024)
    ops: int = Field(200_000, ge=1000)
    keys: int = Field(1000, ge=1)


class Params(Strict):
    store: StoreParams
    workload: WorkloadParams


METRICS = ("ops_per_s", "redis_benchmark_ops_per_s", "ratio_to_redis_benchmark")


def topology_key(p: Params) -> tuple:
    return (p.store.layout,)


@dataclass
class Setup:
    store: chc_store.Store
    layout: str


def redis_benchmark_argv(addr: str, w: WorkloadParams) -> list[str]:
    host, port = addr.rsplit(":", 1)
    key = "chc:{v1:bench__rand_int__}"
    cmd = {"incr": ["FCALL", "chc_incr", "1", key, "0", "1", "1"], "get": ["GET", key],
           "set": ["FCALL", "chc_set", "1", key, "0", "1", "v"]}[w.op]
    return ["redis-benchmark", "-h", host, "-p", port, "-c", "1", "-P", str(w.depth), "-n", str(w.ops),
            "-r", str(w.keys), "-q", *cmd]


def parse_redis_benchmark(text: str) -> float:
    """`-q` output: '<cmd>: 123456.78 requests per second, p50=...'."""
    found = re.findall(r"([\d.]+) requests per second", text)
    if not found:
        raise RuntimeError(f"no rate in redis-benchmark output: {text[-300:]!r}")
    return float(found[-1])


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[Setup]:
        work = self.work_dir(f"store-{p.store.layout}")
        if p.store.layout == "cluster3":
            s = chc_store.start_cluster(3, work)
        else:
            s = chc_store.start_standalone(3 if p.store.layout == "standalone3" else 1, work)
        with s:
            yield Setup(s, p.store.layout)

    def measure(self, s: Setup, p: Params, raw: Path) -> dict[str, Any]:
        w = p.workload
        for srv in s.store.servers:
            srv.client().flushall()
        argv = [str(self.bin_dir / "chc-store-bench"), "--store", ",".join(s.store.addresses), "--op", w.op,
                "--ops", str(w.ops), "--depth", str(w.depth), "--keys", str(w.keys)]
        if s.layout == "cluster3":
            argv.append("--cluster")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "chc-store-bench.out").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"chc-store-bench failed: {done.stderr[-500:]}")
        ours = json.loads(done.stdout.strip().splitlines()[-1])["ops_per_s"]
        ref = float("nan")
        if s.layout == "single":  # redis-benchmark talks to one server only
            b = subprocess.run(redis_benchmark_argv(s.store.addresses[0], w), capture_output=True, text=True,
                               timeout=600)
            (raw / "redis-benchmark.out").write_text(b.stdout + b.stderr)
            ref = parse_redis_benchmark(b.stdout)
        return {"ops_per_s": ours, "redis_benchmark_ops_per_s": ref,
                "ratio_to_redis_benchmark": ours / ref if ref == ref else float("nan")}


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="chc-store-throughput",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
)
