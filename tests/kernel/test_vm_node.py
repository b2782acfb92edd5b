"""The VM's ssh is an SshNode (VmNode): checked against a real sshd of this test on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from nfvlab.kernel.vm.ssh import VmNode

SSHD = Path("/usr/sbin/sshd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(proc: subprocess.Popen, port: int, timeout_s: float = 10.0) -> None:
    """Until sshd accepts on the port; if it exits first, fail with what it said."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited {proc.returncode} before listening: {proc.stderr.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"sshd not listening on 127.0.0.1:{port} after {timeout_s:.0f} s")


@pytest.fixture
def sshd(tmp_path: Path):
    if not SSHD.is_file() or os.geteuid() != 0:
        pytest.skip("needs openssh-server's sshd and root (sshd switches to the logged-in user)")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    (keys / "authorized_keys").write_text((keys / "user.pub").read_text())
    port = _free_port()
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {keys / 'host'}\n"
                   f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPidFile {tmp_path / 'sshd.pid'}\n"
                   "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                   "PermitRootLogin prohibit-password\nSubsystem sftp /usr/lib/openssh/sftp-server\n")
    # sshd refuses to start without its privilege-separation directory, which only its service
    # unit creates; a fresh machine never ran the service
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE, text=True)
    _wait_listening(proc, port)
    try:
        yield port, keys / "user"
    finally:
        proc.send_signal(signal.SIGTERM)  # our own sshd, by pid
        proc.wait(10)


def test_vm_node_waits_runs_and_pulls_a_tree(sshd, tmp_path: Path) -> None:
    port, key = sshd
    node = VmNode(port=port, key=key)
    try:
        assert node.wait(30) < 30
        res = node.run("echo hello; echo oops >&2; exit 3", check=False)
        assert (res.returncode, res.stdout, res.stderr) == (3, "hello\n", "oops\n")
        remote = tmp_path / "guest-results"
        (remote / "p000_point").mkdir(parents=True)
        (remote / "p000_point" / "row.json").write_text("{}")
        (remote / "provenance.json").write_text("{\"latest\": {}}")
        local = tmp_path / "back"
        node.pull(str(remote), local)  # nested: Node.get_tree copies one flat directory only
        assert (local / "p000_point" / "row.json").read_text() == "{}"
        assert (local / "provenance.json").is_file()
    finally:
        node.close()


def test_vm_node_wait_times_out_when_nothing_answers() -> None:
    node = VmNode(port=_free_port(), key=Path("/nonexistent"))
    with pytest.raises(TimeoutError, match="no ssh on 127.0.0.1"):
        node.wait(3)
