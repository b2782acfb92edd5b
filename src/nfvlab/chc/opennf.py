"""The OpenNF-style controller of the strongly consistent shared-state baseline (§3.6.3 R3), run in
its own container of a LocalDeployment: instances started with ``--opennf ADDRESS`` send it every
packet's shared updates; it applies them at all instances in one global order and releases the
sender after every ACK (chc/include/chc/replica.h has the protocol)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nfvlab.chc.chain import ChainError
from nfvlab.chc.deploy import LocalDeployment
from nfvlab.testbeds.processes import Proc

PORT = 7100


@dataclass
class Controller:
    address: str
    proc: Proc
    summary: dict = field(default_factory=dict)  # filled when the controller has stopped


@contextlib.contextmanager
def controller(dep: LocalDeployment, bin_dir: Path, instances: int, tag: str) -> Iterator[Controller]:
    """A controller for `instances` instances; stopped (SIGTERM, its JSON summary read) on exit."""
    box = dep.containers.get(f"{tag}-opennf") or dep.add(f"{tag}-opennf")
    address = f"{box.ip}:{PORT}"
    proc = dep.start(box, f"{tag}-opennf-ctl-{time.monotonic_ns()}", [
        str(bin_dir / "chc-opennf-ctl"), "--listen", address, "--instances", str(instances)])
    deadline = time.monotonic() + 10
    while '"listening"' not in proc.stdout():
        if not proc.running() or time.monotonic() > deadline:
            proc.stop()
            raise ChainError(f"chc-opennf-ctl did not start: {proc.stderr()[-800:]}")
        time.sleep(0.02)
    ctl = Controller(address, proc)
    try:
        yield ctl
    finally:
        status = proc.stop()
        lines = [ln for ln in proc.stdout().splitlines() if ln.startswith('{"instances"')]
        if lines:
            ctl.summary = json.loads(lines[-1])
        elif status not in (0, None):
            raise ChainError(f"chc-opennf-ctl failed ({status}): {proc.stderr()[-800:]}")
