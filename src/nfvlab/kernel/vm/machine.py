"""One VM of the testbed: a recipe's bzImage + the Debian image under qemu, ssh on 127.0.0.1.

The network is qemu's user-mode stack with ``restrict=on``: the guest reaches neither the host nor
anything outside; only the ssh port forwarded to 127.0.0.1 comes in. The image is used with
``snapshot=on``, so every VM starts from the same disk. vCPU i is pinned to host core i.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from nfvlab.testbeds.node import NodeError

from ..build import BuildResult
from ..qemu import accel_args, qemu_binary
from .rootfs import ssh_key
from .ssh import VmNode
from .stock import StockKernel

PREFIX = "nfvlab-kv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Qmp:
    """Just enough of the QEMU Machine Protocol: one command, one answer."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self._read()  # greeting
        self.command("qmp_capabilities")

    def _read(self) -> dict:
        while True:
            msg = json.loads(self.file.readline())
            if "event" not in msg:
                return msg

    def command(self, name: str, **arguments) -> dict:
        self.file.write(json.dumps({"execute": name, "arguments": arguments}).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"qmp {name}: {reply['error']}")
        return reply.get("return", {})

    def close(self) -> None:
        self.sock.close()


class VM:
    def __init__(self, built: BuildResult | StockKernel, image: Path, *, cpus: int = 2, memory_mb: int = 2048,
                 kvm: bool = True, pin: bool = True):
        self.built, self.image, self.cpus, self.memory_mb, self.kvm, self.pin = built, image, cpus, memory_mb, kvm, pin
        self.proc: subprocess.Popen | None = None
        self.ssh: VmNode | None = None
        self.accel = ""
        self.pinned: dict[int, int] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{PREFIX}-vm-")
        self.console = Path(self._tmp.name) / "console.log"

    def start(self, boot_timeout: float | None = None) -> float:
        """Boot; returns seconds until ssh answered."""
        port = free_port()
        self.accel, accel = accel_args(self.kvm)
        qmp_path = str(Path(self._tmp.name) / "qmp.sock")
        # nice like the builds: a TCG guest keeps both host cores busy
        args = ["nice", "-n", "10", qemu_binary(), *accel, "-name", f"{PREFIX}-vm,process={PREFIX}-vm", "-M", "pc",
                "-m", str(self.memory_mb), "-smp", str(self.cpus), "-kernel", str(self.built.bzimage),
                *(["-initrd", str(self.built.initrd)] if isinstance(self.built, StockKernel) else []),
                "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1",
                "-drive", f"file={self.image},if=virtio,format=raw,snapshot=on",
                "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
                "-device", "virtio-net-pci,netdev=n0", "-display", "none", "-monitor", "none",
                "-serial", f"file:{self.console}", "-qmp", f"unix:{qmp_path},server=on,wait=off",
                "-no-reboot", "-nodefaults"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        for _ in range(100):
            if Path(qmp_path).exists() or self.proc.poll() is not None:
                break
            time.sleep(0.1)
        if self.proc.poll() is not None:
            raise RuntimeError(f"qemu exited: {self.proc.stderr.read().decode(errors='replace')}")
        qmp = Qmp(qmp_path)
        try:
            threads = [c["thread-id"] for c in qmp.command("query-cpus-fast")]
        finally:
            qmp.close()
        if self.pin:
            host_cpus = sorted(os.sched_getaffinity(0))
            for i, tid in enumerate(threads):
                core = host_cpus[i % len(host_cpus)]
                os.sched_setaffinity(tid, {core})
                self.pinned[i] = core
        self.ssh = VmNode(port=port, key=ssh_key())
        timeout = boot_timeout or (120 if self.accel == "kvm" else 600)
        try:
            return self.ssh.wait(timeout)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            if self.ssh:
                with contextlib.suppress(NodeError):  # the guest drops the connection as it goes down
                    self.ssh.run("systemctl poweroff", timeout=10, check=False)
                self.ssh.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own qemu's session only
                self.proc.wait(10)
        self._tmp.cleanup()

    def __enter__(self) -> VM:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
