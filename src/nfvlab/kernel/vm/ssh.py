"""Plain ssh/rsync to the guest over qemu's user-mode hostfwd on 127.0.0.1.

Small on purpose: to move onto the shared SshNode/Testbed layer (helper ``remote-ssh``) once it lands
in main; only `Ssh.run` and `Ssh.pull` are used by the VM testbed.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ssh:
    port: int
    key: Path
    host: str = "127.0.0.1"
    user: str = "root"

    def _opts(self) -> list[str]:
        # The guest's host key changes with every image; the connection never leaves loopback.
        return ["-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]

    def argv(self, command: str) -> list[str]:
        return ["ssh", *self._opts(), "-p", str(self.port), f"{self.user}@{self.host}", command]

    def run(self, command: str, *, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(self.argv(command), capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise subprocess.CalledProcessError(res.returncode, command, res.stdout, res.stderr)
        return res

    def wait(self, timeout: float) -> float:
        """Seconds until `true` succeeds over ssh; TimeoutError after `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if self.run("true", timeout=15, check=False).returncode == 0:
                    return time.monotonic() - started
            except subprocess.TimeoutExpired:
                pass
            time.sleep(2)
        raise TimeoutError(f"no ssh on {self.host}:{self.port} after {timeout:.0f} s")

    def pull(self, remote_dir: str, local_dir: Path) -> None:
        local_dir.mkdir(parents=True, exist_ok=True)
        rsh = " ".join(["ssh", *self._opts(), "-p", str(self.port)])
        subprocess.run(["rsync", "-a", "-e", rsh, f"{self.user}@{self.host}:{remote_dir.rstrip('/')}/",
                        f"{local_dir}/"], check=True, capture_output=True)
