"""What the CHC experiments on generated traces share: the trace written into the topology's work
folder, a LocalDeployment with one redis-server for the whole topology, and an empty store before
every run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from nfvlab.chc import traces
from nfvlab.chc.deploy import LocalDeployment


@dataclass
class TraceDeployment:
    dep: LocalDeployment
    store_addresses: list[str]
    info: traces.TraceInfo

    @property
    def pcap(self) -> Path:
        return self.info.path

    @property
    def packets(self) -> int:
        return self.info.packets

    def flush_stores(self) -> None:
        """Every run starts from an empty store."""
        for addr in self.store_addresses:
            host, port = addr.rsplit(":", 1)
            redis.Redis(host=host, port=int(port)).flushall()


@contextlib.contextmanager
def trace_deployment(work: Path, spec: traces.TraceSpec) -> Iterator[TraceDeployment]:
    info = traces.generate(spec, work / "trace.pcap")
    with LocalDeployment(work / "deploy") as dep:
        store = dep.start_store(1)
        yield TraceDeployment(dep, store.addresses, info)
