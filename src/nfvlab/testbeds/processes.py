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
from typing import IO, Any

from nfvlab import state
from nfvlab.testbeds import cgroups
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

    def wait_with_usage(self, timeout: float) -> tuple[int, float]:
        """Wait for the exit like wait(), and return (exit code, CPU seconds it used: user + system,
        from wait4). Raises subprocess.TimeoutExpired after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                self._close()
                return self.popen.returncode, usage.ru_utime + usage.ru_stime
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.popen.args, timeout)
            time.sleep(0.005)

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


# Every process gets SIGKILL when the harness dies, even by SIGKILL (the parent-death signal is kept
# across exec), so no interferer (a sysbench of up to 1200 s) outlives a killed run. Set by util-linux's
# setpriv rather than a preexec_fn: that would force fork() over vfork(), and the child's copy-on-write
# faults before exec would run outside the container's cgroup.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL"]


def _start(name: str, argv: list[str], log_dir: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / f"{name}.out", "w")  # noqa: SIM115 - closed by Proc
    err = open(log_dir / f"{name}.err", "w")  # noqa: SIM115
    try:
        popen = subprocess.Popen([*DIE_WITH_PARENT, *argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    except OSError:
        out.close()
        err.close()
        raise
    state.record("process", pid=popen.pid, start=state.process_start_time(popen.pid), name=name)
    return Proc(name, popen, log_dir / f"{name}.out", log_dir / f"{name}.err", (out, err))


# The exit status of the launcher shell when reading /proc/self/cgroup back shows the join failed.
JOIN_FAILED_EXIT = 97
# Generous: with vanilla Linux flooded at the peer's maximum rate the launcher was seen still outside
# its cgroups after 5 s (twice on 2026-12-02, cause not pinned down); the victim's time is sysbench's own.
VERIFY_TIMEOUT_S = 30.0


class NotInContainer(RuntimeError):
    """A process started in a container is not in its cgroups or its network namespace."""

    reason = "not_in_container"


def _in_cgroup_and_netns(cgroup: CgroupPaths, netns: str, argv: list[str]) -> list[str]:
    """Join the cgroups first (so not one instruction runs outside them), read the membership back
    (exit JOIN_FAILED_EXIT if it did not take), then exec in the netns."""
    join = cgroups.shell_join_and_verify(cgroup, JOIN_FAILED_EXIT)
    return ["sh", "-c", f"{join}; exec {shlex.join(netns_exec(netns, argv))}"]


def netns_inode(netns: str) -> int:
    return os.stat(f"/run/netns/{netns}").st_ino


def not_in(pid: int, cgroup: CgroupPaths, netns: str) -> list[str]:
    """Why pid is not inside (cgroup, netns): empty when it is in both."""
    problems = cgroups.not_joined(cgroup, pid)
    if os.stat(f"/proc/{pid}/ns/net").st_ino != netns_inode(netns):
        problems.append(f"network namespace is not {netns}")
    return problems


def _exit_status_without_reaping(pid: int) -> int | None:
    """The exit code of an exited child, leaving it waitable (WNOWAIT); None while it runs."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return 0  # already reaped by its Popen: it has exited
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def wait_inside(proc: Proc, cgroup: CgroupPaths, netns: str, timeout_s: float = VERIFY_TIMEOUT_S) -> None:
    """Return once the started process is in its cgroups and netns (the launcher joins, then execs
    `ip netns exec`); raise NotInContainer if the join failed or it is not there in time. A process
    that already exited cleanly passed the launcher's own read-back check."""
    deadline = time.monotonic() + timeout_s
    problems: list[str] = []
    while time.monotonic() < deadline:
        rc = _exit_status_without_reaping(proc.pid)  # the caller may still want wait4's rusage
        if rc is not None:
            if rc == JOIN_FAILED_EXIT:
                raise NotInContainer(f"{proc.name}: joining its cgroups failed: {proc.stderr()[-300:].strip()}")
            return
        try:
            problems = not_in(proc.pid, cgroup, netns)
        except OSError:  # exited between poll() and the read
            continue
        if not problems:
            return
        time.sleep(0.002)
    with contextlib.suppress(OSError):
        if not (problems := not_in(proc.pid, cgroup, netns)):
            return  # it got there as the deadline passed
    raise NotInContainer(f"{proc.name} (pid {proc.pid}) is not inside its container after {timeout_s:.0f} s: "
                         + "; ".join(problems))


def start_in_container(c: Container, name: str, argv: list[str], log_dir: Path, verify: bool = True) -> Proc:
    """Start argv in container c; with ``verify`` (default) return only once it runs inside (stopped
    and NotInContainer raised otherwise). A container on another node (nfvlab.testbeds.containers)
    is started by that node, unverified here (the driver checks the cgroup's CPU time instead)."""
    if getattr(c, "node", None) is not None:
        from nfvlab.testbeds.testbed import start_in_node_container

        return start_in_node_container(c, name, argv, log_dir)
    proc = _start(name, _in_cgroup_and_netns(c.cgroup, c.netns, argv), log_dir)
    if verify:
        try:
            wait_inside(proc, c.cgroup, c.netns)
        except BaseException:
            proc.stop(grace_s=0.5)
            raise
    return proc


def start_all_in_containers(jobs: list[tuple[Container, str, list[str]]], log_dir: Path) -> list[Proc]:
    """start_in_container for several (container, name, argv) at once: every launcher is started
    before the first is verified, so their cgroup joins overlap instead of queueing (eight CPU-bound
    neighbours per victim run: 0.3 s a run one after the other). All are stopped if one fails."""
    started: list[Proc] = []
    try:
        for c, name, argv in jobs:
            started.append(start_in_container(c, name, argv, log_dir, verify=False))
        for (c, _, _), proc in zip(jobs, started, strict=True):
            if getattr(c, "node", None) is None:  # another node's container is not verified here
                wait_inside(proc, c.cgroup, c.netns)
    except BaseException:
        stop_all(started)
        raise
    return started


def popen_in(cgroup: CgroupPaths, netns: str, argv: list[str], name: str = "tool", **popen_kw: Any) -> subprocess.Popen:
    """Like start_in_container, for tools and tests that want Popen's own pipes: journaled, joined and
    read back by the launcher (it exits JOIN_FAILED_EXIT otherwise), dies with the harness."""
    popen = subprocess.Popen([*DIE_WITH_PARENT, *_in_cgroup_and_netns(cgroup, netns, argv)], **popen_kw)
    state.record("process", pid=popen.pid, start=state.process_start_time(popen.pid), name=name)
    return popen


def stop_popen(popen: subprocess.Popen, timeout_s: float = 3.0) -> None:
    """SIGTERM by pid, SIGKILL after timeout_s."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout_s)


def start_on_peer(peer: Peer, name: str, argv: list[str], log_dir: Path) -> Proc:
    if getattr(peer, "node", None) is not None:  # the peer is another node of an ssh testbed
        from nfvlab.testbeds.testbed import start_on_node_peer

        return start_on_node_peer(peer, name, argv, log_dir)
    if peer.cgroup is None:
        return _start(name, ["taskset", "-c", str(peer.cpu), *netns_exec(peer.netns, argv)], log_dir)
    return _start(name, _in_cgroup_and_netns(peer.cgroup, peer.netns, argv), log_dir)


def stop_all(procs: list[Proc], grace_s: float = 3.0) -> None:
    for p in procs:
        if not isinstance(p, Proc):  # another node's process: its pid means nothing here
            p.signal(signal.SIGTERM)
        elif p.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.stop(grace_s=max(0.1, deadline - time.monotonic()))
