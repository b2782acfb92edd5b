"""Emulated ssh nodes for CI: N network namespaces on this machine, each running its own sshd.

    controller (root ns, 198.18.64.1) --[nfvlab-rn-br]-- veth -- nfvlab-rn-n1 (198.18.64.11, sshd)
                                                     \\-- veth -- nfvlab-rn-n2 (198.18.64.12, sshd) ...

Each node's sshd is Debian's openssh-server with its own sshd_config, host key, pid file and an
authorized key generated for this test run. sshd runs under ``ip netns exec``, which gives the node a
/sys of its own namespace (so /sys/class/net shows the node's NIC, as on a real host); the cgroup v1/v2
hierarchies are mounted again inside that mount namespace, so containers built over ssh land in the
machine's real cgroups. Everything is removed by :meth:`EmulatedNodes.down` (sshd killed by pid,
namespaces, veths and the bridge deleted), also when setup fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

PREFIX = "nfvlab-rn"
SUBNET = "198.18.64"  # this helper's sub-range of the benchmarking block
CONTROLLER_IP = f"{SUBNET}.1"
BRIDGE = f"{PREFIX}-br"
SSHD = "/usr/sbin/sshd"
SFTP = "/usr/lib/openssh/sftp-server"


class EmulationError(RuntimeError):
    pass


@dataclass
class EmulatedNode:
    name: str  # e.g. "n1"
    netns: str  # nfvlab-rn-n1
    host_ifname: str  # veth end on the bridge
    address: str
    port: int
    sshd_pid: int | None = None


def _sh(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    if check and out.returncode != 0:
        raise EmulationError(f"{shlex.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def _cgroup_remounts() -> str:
    """Shell that mounts this machine's cgroup hierarchies again under a fresh /sys (same options, so
    the same hierarchies: a cgroup created over ssh is a real cgroup of this machine)."""
    cmds = ["mount -t tmpfs -o mode=755 cgroup_root /sys/fs/cgroup"]
    for line in Path("/proc/self/mounts").read_text().splitlines():
        dev, mnt, fstype, opts, *_ = line.split()
        if not mnt.startswith("/sys/fs/cgroup/") and mnt != "/sys/fs/cgroup":
            continue
        if fstype == "cgroup":
            keep = ",".join(o for o in opts.split(",") if o not in ("rw", "relatime", "nosuid", "nodev", "noexec"))
            cmds += [f"mkdir -p {mnt}", f"mount -t cgroup -o {keep} cgroup {mnt}"]
        elif fstype == "cgroup2":
            if mnt == "/sys/fs/cgroup":  # unified-only machine: the tmpfs is not needed
                cmds = [f"mount -t cgroup2 none {mnt}"]
                break
            cmds += [f"mkdir -p {mnt}", f"mount -t cgroup2 none {mnt}"]
    return " && ".join(cmds)


class EmulatedNodes:
    """``with EmulatedNodes(work_dir, n=3) as nodes:`` -> nodes.inventory_path is an ssh inventory."""

    def __init__(self, work_dir: Path, n: int = 3, roles: list[list[str]] | None = None,
                 cores: list[int] | None = None):
        if n < 1 or n > 50:
            raise ValueError("between 1 and 50 emulated nodes")
        self.work = Path(work_dir)
        self.nodes = [EmulatedNode(f"n{i}", f"{PREFIX}-n{i}", f"{PREFIX}-n{i}h", f"{SUBNET}.{10 + i}", 22)
                      for i in range(1, n + 1)]
        self.roles = roles or [["victim_host", "nf_host"], ["traffic_generator"], ["store"]][:n]
        while len(self.roles) < n:
            self.roles.append(["nf_host"])
        # the victim host's containers on core 1, the other nodes (peer, store) on core 0 (as the local testbed)
        self.cores = cores or [1] + [0] * (n - 1)
        self.key = self.work / "id_ed25519"
        self.known_hosts = self.work / "known_hosts"
        self.inventory_path = self.work / "inventory.yaml"

    def __enter__(self) -> EmulatedNodes:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- setup ----------------------------------------------------------------------------------
    def up(self) -> None:
        if os.geteuid() != 0:
            raise EmulationError("emulated ssh nodes need root (namespaces, sshd)")
        if not Path(SSHD).exists():
            raise EmulationError(f"{SSHD} missing: apt-get install openssh-server (deps/apt.txt)")
        self.work.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nfvlab-rn-ci", "-f", str(self.key)])
        _sh(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _sh(["ip", "addr", "add", f"{CONTROLLER_IP}/24", "dev", BRIDGE])
        _sh(["ip", "link", "set", BRIDGE, "up"])
        remount = _cgroup_remounts()
        known = []
        for node in self.nodes:
            _sh(["ip", "netns", "add", node.netns])
            _sh(["ip", "link", "add", node.host_ifname, "type", "veth", "peer", "name", f"{node.host_ifname}x"])
            _sh(["ip", "link", "set", node.host_ifname, "master", BRIDGE, "up"])
            _sh(["ip", "link", "set", f"{node.host_ifname}x", "netns", node.netns])
            ns = ["ip", "netns", "exec", node.netns]
            _sh([*ns, "ip", "link", "set", f"{node.host_ifname}x", "name", "eth0"])
            _sh([*ns, "ip", "addr", "add", f"{node.address}/24", "dev", "eth0"])
            _sh([*ns, "ip", "link", "set", "eth0", "up"])
            _sh([*ns, "ip", "link", "set", "lo", "up"])
            known.append(self._start_sshd(node, remount))
        self.known_hosts.write_text("".join(known))
        for node in self.nodes:
            self._wait_port(node)
        self.write_inventory()

    def _start_sshd(self, node: EmulatedNode, remount: str) -> str:
        d = self.work / node.name
        d.mkdir(exist_ok=True)
        hostkey = d / "ssh_host_ed25519_key"
        _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{node.name}-host", "-f", str(hostkey)])
        auth = d / "authorized_keys"
        shutil.copy(self.key.with_suffix(".pub"), auth)
        auth.chmod(0o600)
        pidfile = d / "sshd.pid"
        config = d / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {node.address}",
            f"Port {node.port}",
            f"HostKey {hostkey}",
            f"PidFile {pidfile}",
            f"AuthorizedKeysFile {auth}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the work dir lives under /tmp
            "MaxSessions 50",
            "MaxStartups 50:30:100",
            f"Subsystem sftp {SFTP}",
            "", ]))
        log = d / "sshd.log"
        # -D: stay in the foreground so its pid is ours; -e: log to stderr (our log file).
        script = f"{remount} && exec {SSHD} -D -e -f {config}"
        with open(log, "w") as lf:
            popen = subprocess.Popen(["ip", "netns", "exec", node.netns, "sh", "-c", script],
                                     stdout=lf, stderr=lf, stdin=subprocess.DEVNULL, start_new_session=True)
        node.sshd_pid = popen.pid
        self._popens = getattr(self, "_popens", {})
        self._popens[node.name] = popen
        pub = (hostkey.with_suffix(".pub")).read_text().split()
        return f"{node.address} {pub[0]} {pub[1]}\n"

    def _wait_port(self, node: EmulatedNode, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            popen = self._popens[node.name]
            if popen.poll() is not None:
                log = (self.work / node.name / "sshd.log").read_text()
                raise EmulationError(f"sshd of {node.name} exited {popen.returncode}: {log[-500:]}")
            with contextlib.suppress(OSError), socket.create_connection((node.address, node.port), timeout=0.5):
                return
            time.sleep(0.1)
        raise EmulationError(f"sshd of {node.name} does not answer on {node.address}:{node.port}")

    def write_inventory(self) -> None:
        doc = {
            "name": "emulated",
            "defaults": {"user": "root", "key": str(self.key), "known_hosts": str(self.known_hosts),
                         "python": "/usr/bin/python3", "name_prefix": f"{PREFIX}-", "shared_host": True,
                         "connect_timeout_s": 30,  # a loaded CI machine forks sshd slowly
                         "workdir": str(self.work / "remote")},
            "nodes": [
                {"name": n.name, "address": n.address, "port": n.port, "roles": self.roles[i],
                 "experiment_nic": {"name": "eth0", "address": f"{n.address}/24"},
                 "cores": [self.cores[i]],
                 "container_subnet": f"{SUBNET}.{128 + 16 * i}/28",
                 # shared filesystem: node-specific files go under a per-node directory
                 "workdir": str(self.work / "remote" / n.name)}
                for i, n in enumerate(self.nodes)
            ],
        }
        self.inventory_path.write_text(yaml.safe_dump(doc, sort_keys=False))

    # --- teardown -------------------------------------------------------------------------------
    def down(self) -> None:
        """Kill each sshd (and what its sessions left) by pid, then delete namespaces, veths, bridge."""
        for node in self.nodes:
            popen = getattr(self, "_popens", {}).get(node.name)
            if popen is not None and popen.poll() is None:
                # sshd's per-connection processes are in sessions of their own: end them by pid first,
                # or they outlive the listener (orphaned, in a deleted namespace)
                for pid in _children(popen.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(popen.pid, signal.SIGKILL)
                    popen.wait(5)
            node.sshd_pid = None
        for node in self.nodes:
            _kill_netns_pids(node.netns)
            _sh(["ip", "link", "del", node.host_ifname], check=False)
            _sh(["ip", "netns", "del", node.netns], check=False)
        # containers that sessions created (nfvlab-rn-<node>-*) and did not remove
        for entry in Path("/run/netns").glob(f"{PREFIX}-*") if Path("/run/netns").exists() else []:
            _kill_netns_pids(entry.name)
            _sh(["ip", "netns", "del", entry.name], check=False)
            with contextlib.suppress(OSError):
                entry.unlink()
        _sh(["ip", "link", "del", BRIDGE], check=False)


def _children(pid: int) -> list[int]:
    """Every descendant of pid (from /proc/*/stat ppid)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = (d / "stat").read_text()
                parent[int(d.name)] = int(text[text.rfind(")") + 2:].split()[1])
    out, frontier = [], [pid]
    while frontier:
        kids = [c for c, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def _kill_netns_pids(netns: str) -> None:
    """Processes still in a namespace we created (started by our sshd sessions): end them by pid."""
    out = _sh(["ip", "netns", "pids", netns], check=False)
    for pid in out.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


if __name__ == "__main__":  # python tests/remote/sshnodes.py --clean: remove what a killed test run left
    import sys

    if sys.argv[1:] == ["--clean"]:
        EmulatedNodes(Path(tempfile.gettempdir()), n=50).down()
    else:
        print(__doc__)
