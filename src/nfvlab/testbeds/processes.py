"""Processes the harness starts: inside a container (its cgroups and namespace) or on the peer.

Every process is journaled with its start time, and ended by its pid only."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nfvlab import state
from nfvlab.testbeds.model import CgroupPaths, Container, Peer
from nfvlab.testbeds.network import netns_exec


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    stdout_path: Path
    stderr_path: Path
    _files: tuple[IO, IO]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        rc = self.popen.wait(timeout)
        self._close()
        return rc

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 3.0) -> int:
        """Signal the process by pid; SIGKILL after grace_s. Returns its exit code."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            try:
                return self.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        return self.wait()

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _close(self) -> None:
        for f in self._files:
            if not f.closed:
                f.close()


def _start(name: str, argv: list[str], log_dir: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / f"{name}.out", "w")  # noqa: SIM115 - closed by Proc
    err = open(log_dir / f"{name}.err", "w")  # noqa: SIM115
    try:
        popen = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        out.close()
        err.close()
        raise
    state.record("process", pid=popen.pid, start=state.process_start_time(popen.pid), name=name)
    return Proc(name, popen, log_dir / f"{name}.out", log_dir / f"{name}.err", (out, err))


def _in_cgroup_and_netns(cgroup: CgroupPaths, netns: str, argv: list[str]) -> list[str]:
    """Join the cgroups first (so not one instruction runs outside them), then exec in the netns."""
    targets = sorted({str(p / "cgroup.procs") for p in (cgroup.cpu, cgroup.cpuset, cgroup.cpuacct)})
    joins = "; ".join(f"echo $$ > {shlex.quote(t)}" for t in targets)
    return ["sh", "-c", f"{joins}; exec {shlex.join(netns_exec(netns, argv))}"]


def start_in_container(c: Container, name: str, argv: list[str], log_dir: Path) -> Proc:
    return _start(name, _in_cgroup_and_netns(c.cgroup, c.netns, argv), log_dir)


def start_on_peer(peer: Peer, name: str, argv: list[str], log_dir: Path) -> Proc:
    if peer.cgroup is None:
        return _start(name, ["taskset", "-c", str(peer.cpu), *netns_exec(peer.netns, argv)], log_dir)
    return _start(name, _in_cgroup_and_netns(peer.cgroup, peer.netns, argv), log_dir)


def stop_all(procs: list[Proc], grace_s: float = 3.0) -> None:
    for p in procs:
        if p.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.stop(grace_s=max(0.1, deadline - time.monotonic()))
