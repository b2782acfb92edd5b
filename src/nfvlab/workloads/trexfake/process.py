"""Run the fake TRex server in its own process (as a real TRex is one), on free loopback ports."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field


@dataclass
class FakeTrexProcess:
    """``with FakeTrexProcess(dut_capacity_pps=...) as fake: run_trex(..., fake.server)``."""

    ports: int = 2
    speed_gbps: float = 10.0
    dut_capacity_pps: float | None = None
    rpc_port: int = 0
    async_port: int = 0
    start_timeout_s: float = 20.0
    proc: subprocess.Popen | None = field(default=None, init=False)
    calls: str = field(default="", init=False)

    def __enter__(self) -> FakeTrexProcess:
        argv = [sys.executable, "-m", "nfvlab.workloads.trexfake", "--rpc-port", str(self.rpc_port),
                "--async-port", str(self.async_port), "--ports", str(self.ports), "--speed-gbps", str(self.speed_gbps)]
        if self.dut_capacity_pps is not None:
            argv += ["--dut-capacity-pps", str(self.dut_capacity_pps)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                m = re.match(r"ready rpc=(\d+) async=(\d+)", line)
                if m:
                    self.rpc_port, self.async_port = int(m[1]), int(m[2])
                    return self
            if self.proc.poll() is not None:
                break
        err = self.proc.stderr.read() if self.proc.poll() is not None else ""
        self.__exit__(None, None, None)
        raise RuntimeError(f"fake TRex server did not start: {err.strip()[-1000:]}")

    @property
    def server(self):
        from nfvlab.workloads.trex import TrexServer

        return TrexServer(sync_port=self.rpc_port, async_port=self.async_port, timeout_s=5.0)

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.calls = self.proc.stderr.read() if self.proc.stderr else ""
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
