"""Nodes: the machines a testbed is made of (Mininet's Node, but a whole host).

A node runs commands, starts and stops processes (by pid), moves files, and builds containers on
itself (nfvlab.testbeds.containers). ``LocalNode`` is this machine (subprocess); ``SshNode`` is a
host reached over ssh through fabric. Every call has a timeout, no call reads stdin, and every
failure names the node and the command.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

DEFAULT_TIMEOUT_S = 60.0


class NodeError(RuntimeError):
    """A command on a node failed or timed out; the message names both."""

    def __init__(self, node: str, command: str, detail: str):
        super().__init__(f"node {node}: `{command}` {detail}")
        self.node = node
        self.command = command


@dataclass(frozen=True)
class CommandResult:
    node: str
    command: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class NodeProc(Protocol):
    """A process a node started: what drivers use (``processes.Proc`` is the local one)."""

    name: str

    @property
    def pid(self) -> int: ...
    def running(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 3.0) -> int: ...
    def stdout(self) -> str: ...
    def stderr(self) -> str: ...


def _command_text(cmd: list[str] | str) -> str:
    return cmd if isinstance(cmd, str) else shlex.join(cmd)


@dataclass
class Node(ABC):
    name: str
    roles: tuple[str, ...] = ()
    cores: tuple[int, ...] = ()
    experiment_nic: str | None = None  # the NIC the experiment's containers attach to
    workdir: Path = Path("/var/lib/nfvlab")  # node-side directory for logs and files
    name_prefix: str = "nfvlab-"  # names of namespaces/cgroups this node's containers get
    extra: dict[str, Any] = field(default_factory=dict)

    @abstractmethod
    def run(self, cmd: list[str] | str, timeout: float = DEFAULT_TIMEOUT_S, check: bool = True) -> CommandResult:
        """Run a command (argv, or a shell string) to completion; check=True raises NodeError on exit != 0."""

    @abstractmethod
    def start(self, name: str, argv: list[str], log_dir: Path) -> NodeProc:
        """Start argv in the background (own session, stdin /dev/null), stdout/stderr to
        ``log_dir/<name>.out|.err`` on the node."""

    @abstractmethod
    def put(self, local: Path, remote: Path, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Copy a file from this machine onto the node."""

    @abstractmethod
    def get(self, remote: Path, local: Path, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Copy a file from the node onto this machine."""

    def close(self) -> None:  # noqa: B027 - optional for nodes without a connection
        pass

    def read_text(self, path: Path | str, timeout: float = DEFAULT_TIMEOUT_S) -> str:
        return self.run(["cat", str(path)], timeout=timeout).stdout

    def kill(self, pid: int, sig: int = signal.SIGTERM) -> bool:
        """Signal a process by pid; False when it is already gone."""
        return self.run(["kill", f"-{int(sig)}", str(pid)], check=False, timeout=15).ok

    def alive(self, pid: int) -> bool:
        return self.run(["kill", "-0", str(pid)], check=False, timeout=15).ok

    def get_tree(self, remote_dir: Path, local_dir: Path, timeout: float = DEFAULT_TIMEOUT_S) -> list[Path]:
        """Every regular file under remote_dir (flat listing) copied into local_dir."""
        out = self.run(["find", str(remote_dir), "-maxdepth", "1", "-type", "f"], check=False, timeout=timeout)
        copied = []
        for line in out.stdout.splitlines():
            src = Path(line.strip())
            if src.name:
                dst = Path(local_dir) / src.name
                self.get(src, dst, timeout)
                copied.append(dst)
        return copied

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def __str__(self) -> str:
        return self.name


# --- this machine -------------------------------------------------------------------------------

class LocalNode(Node):
    """This machine. Processes go through nfvlab.testbeds.processes (journaled, ended by pid)."""

    def run(self, cmd: list[str] | str, timeout: float = DEFAULT_TIMEOUT_S, check: bool = True) -> CommandResult:
        text = _command_text(cmd)
        try:
            out = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise NodeError(self.name, text, f"timed out after {timeout:g} s") from e
        except OSError as e:
            raise NodeError(self.name, text, f"could not start: {e}") from e
        res = CommandResult(self.name, text, out.returncode, out.stdout, out.stderr)
        if check and not res.ok:
            raise NodeError(self.name, text, f"exited {res.returncode}: {res.stderr.strip()[-400:]}")
        return res

    def start(self, name: str, argv: list[str], log_dir: Path) -> NodeProc:
        from nfvlab.testbeds import processes

        return processes._start(name, argv, Path(log_dir))

    def put(self, local: Path, remote: Path, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        import shutil

        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        if Path(local).resolve() != Path(remote).resolve():
            shutil.copyfile(local, remote)

    def get(self, remote: Path, local: Path, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.put(remote, local, timeout)


# --- a host over ssh ----------------------------------------------------------------------------

@dataclass
class SshProc:
    """A process started on an SshNode: its pid there and its log files there."""

    node: SshNode
    name: str
    remote_pid: int
    stdout_path: Path  # on the node
    stderr_path: Path
    exit_path: Path  # the wrapper writes the exit code here
    usage_path: Path  # ... and the command's CPU time (`times`) here
    _rc: int | None = None

    @property
    def pid(self) -> int:
        return self.remote_pid

    def running(self) -> bool:
        return self._rc is None and self.node.alive(self.remote_pid)

    def _exit_code(self) -> int | None:
        res = self.node.run(["cat", str(self.exit_path)], check=False, timeout=15)
        text = res.stdout.strip()
        return int(text) if res.ok and text.lstrip("-").isdigit() else None

    def wait(self, timeout: float | None = None) -> int:
        if self._rc is not None:
            return self._rc
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            rc = self._exit_code()
            if rc is not None:
                self._rc = rc
                return rc
            if not self.node.alive(self.remote_pid):
                # killed by a signal before the wrapper could write: report it like Popen does
                self._rc = self._exit_code() if self._exit_code() is not None else -signal.SIGKILL
                return self._rc
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"{self.node.name}:{self.name}", timeout)
            time.sleep(delay)
            delay = min(0.5, delay * 1.5)

    def wait_with_usage(self, timeout: float) -> tuple[int, float]:
        """Like processes.Proc.wait_with_usage: (exit code, CPU seconds user + system of the command)."""
        rc = self.wait(timeout)
        return rc, parse_times(self.node.run(["cat", str(self.usage_path)], check=False, timeout=15).stdout)

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 3.0) -> int:
        """Signal the process by pid on its node; SIGKILL after grace_s."""
        if self._rc is None and self.node.alive(self.remote_pid):
            self.node.kill(self.remote_pid, sig)
            try:
                return self.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.node.kill(self.remote_pid, signal.SIGKILL)
        return self.wait(10)

    def stdout(self) -> str:
        return self.node.read_text(self.stdout_path)

    def stderr(self) -> str:
        return self.node.read_text(self.stderr_path)


class SshNode(Node):
    """A host reached over ssh through fabric (paramiko): key auth, host key checked when a
    known_hosts file is given, a timeout on every call, never stdin."""

    def __init__(self, name: str, address: str, user: str = "root", port: int = 22, key: Path | None = None,
                 known_hosts: Path | None = None, connect_timeout_s: float = 10.0, **kw: Any):
        super().__init__(name, **kw)
        self.address = address
        self.user = user
        self.port = port
        self.key = key
        self.known_hosts = known_hosts
        self.connect_timeout_s = connect_timeout_s
        self._conn = None

    @property
    def connection(self):  # fabric.Connection, opened on first use
        if self._conn is None:
            import paramiko
            from fabric import Connection

            kwargs: dict[str, Any] = {"look_for_keys": self.key is None, "allow_agent": False,
                                      "banner_timeout": self.connect_timeout_s,
                                      "auth_timeout": self.connect_timeout_s}
            if self.key is not None:
                kwargs["key_filename"] = str(self.key)
            conn = Connection(self.address, user=self.user, port=self.port, connect_kwargs=kwargs,
                              connect_timeout=self.connect_timeout_s)
            if self.known_hosts is not None:
                conn.client.load_host_keys(str(self.known_hosts))
                conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def run(self, cmd: list[str] | str, timeout: float = DEFAULT_TIMEOUT_S, check: bool = True) -> CommandResult:
        from invoke.exceptions import CommandTimedOut

        text = _command_text(cmd)
        t0 = time.monotonic()
        try:
            # in_stream=False sends nothing, but the remote stdin would stay open: give it /dev/null
            out = self.connection.run(f"{{ {text}\n}} </dev/null", hide=True, warn=True, timeout=timeout,
                                      in_stream=False, pty=False)
        except CommandTimedOut as e:
            raise NodeError(self.name, text, f"timed out after {timeout:g} s") from e
        except Exception as e:  # connection refused, auth failed, host key rejected, ...
            self.close()
            raise NodeError(self.name, text, f"could not run over ssh ({self.user}@{self.address}:{self.port}): "
                            f"{type(e).__name__}: {e}") from e
        if out.exited in (-1, None) and time.monotonic() - t0 >= timeout:
            # invoke's timer thread kills the command by closing the channel; when that close itself
            # fails (EOFError, the transport already gone) the run returns exit -1, not CommandTimedOut
            raise NodeError(self.name, text, f"timed out after {timeout:g} s")
        res = CommandResult(self.name, text, out.exited, out.stdout, out.stderr)
        if check and not res.ok:
            raise NodeError(self.name, text, f"exited {res.returncode}: {res.stderr.strip()[-400:]}")
        return res

    def start(self, name: str, argv: list[str], log_dir: Path) -> SshProc:
        log_dir = Path(log_dir)
        out, err, ex, usage = (log_dir / f"{name}.{s}" for s in ("out", "err", "exit", "usage"))
        # `times` after the command: the CPU time of the shell's children (user, system) = the command's
        inner = (f"{shlex.join(argv)} >{shlex.quote(str(out))} 2>{shlex.quote(str(err))} </dev/null; rc=$?; "
                 f"times >{usage}; echo $rc >{ex}")
        # setsid: the process outlives this ssh session, in its own session, and prints its pid.
        # The wrapper shell is the pid we track; it execs nothing so that it can record the exit code.
        # (Separate statements: `a && b & c` would background a subshell that holds the ssh channel.)
        script = (f"mkdir -p {shlex.quote(str(log_dir))} && rm -f {shlex.quote(str(ex))} || exit 1\n"
                  f"setsid sh -c {shlex.quote(inner)} >/dev/null 2>&1 </dev/null &\necho $!")
        res = self.run(script, timeout=30)
        pid = int(res.stdout.strip().splitlines()[-1])
        return SshProc(self, name, pid, out, err, ex, usage)

    def kill(self, pid: int, sig: int = signal.SIGTERM) -> bool:
        """The wrapper shell and the command under it: signal the whole session (setsid made the
        wrapper its leader, so the session id is the pid we started)."""
        script = f"pkill -{int(sig)} -s {int(pid)}; kill -{int(sig)} {int(pid)}"
        return self.run(script, check=False, timeout=15).ok

    def put(self, local: Path, remote: Path, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.run(["mkdir", "-p", str(Path(remote).parent)], timeout=timeout)
        try:
            self.connection.put(str(local), str(remote))
        except Exception as e:
            raise NodeError(self.name, f"put {local} {remote}", f"failed: {e}") from e

    def get(self, remote: Path, local: Path, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.connection.get(str(remote), str(local))
        except Exception as e:
            raise NodeError(self.name, f"get {remote} {local}", f"failed: {e}") from e


def parse_times(text: str) -> float:
    """CPU seconds of the children from the shell builtin `times` ("0m1.230s 0m0.010s" on line 2)."""
    lines = text.strip().splitlines()
    if len(lines) < 2:
        return float("nan")
    total = 0.0
    for field_ in lines[1].split():
        m, _, sec = field_.rstrip("s").partition("m")
        total += 60 * float(m) + float(sec)
    return total


def run_parallel(nodes: list[Node], cmd: list[str] | str, timeout: float = DEFAULT_TIMEOUT_S,
                 check: bool = True) -> dict[str, CommandResult]:
    """The same command on every node at once (fabric's ThreadingGroup, with our errors): results by
    node name; with check, the first failure is raised after all have finished."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        futures = {n.name: pool.submit(n.run, cmd, timeout, False) for n in nodes}
        results = {name: f.result() for name, f in futures.items()}
    if check:
        for res in results.values():
            if not res.ok:
                raise NodeError(res.node, res.command, f"exited {res.returncode}: {res.stderr.strip()[-400:]}")
    return results
