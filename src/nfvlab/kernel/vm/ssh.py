"""The guest as a node of the testbed layer: an SshNode over qemu's user-mode hostfwd on 127.0.0.1.

``run``/``start``/``put``/``get`` are SshNode's (fabric). Added here: ``wait`` (until sshd answers
during boot) and ``pull`` (a whole results tree, nested, by rsync with the same key and port:
``Node.get_tree`` copies one flat directory). The guest's host key changes with every image and the
connection never leaves loopback, so no known_hosts is kept (fabric's in-memory AutoAddPolicy).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from nfvlab.testbeds.node import NodeError, SshNode


class VmNode(SshNode):
    def __init__(self, port: int, key: Path, name: str = "vm", user: str = "root", host: str = "127.0.0.1"):
        super().__init__(name, host, user=user, port=port, key=key, connect_timeout_s=5.0)

    def wait(self, timeout: float) -> float:
        """Seconds until `true` succeeds over ssh; TimeoutError after `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if self.run("true", timeout=15, check=False).ok:
                    return time.monotonic() - started
            except NodeError:  # refused / banner timeout while the guest boots; run() closed the connection
                pass
            time.sleep(2)
        raise TimeoutError(f"no ssh on {self.address}:{self.port} after {timeout:.0f} s")

    def pull(self, remote_dir: str, local_dir: Path) -> None:
        local_dir.mkdir(parents=True, exist_ok=True)
        opts = ["-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-p", str(self.port)]
        subprocess.run(["rsync", "-a", "-e", " ".join(["ssh", *opts]),
                        f"{self.user}@{self.address}:{remote_dir.rstrip('/')}/", f"{local_dir}/"],
                       check=True, capture_output=True)
