"""`nfvlab clean`: remove every namespace, link (and its qdiscs), cgroup, BPF program and process
the harness created, from the creation journal and from the nfvlab naming prefix, and nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from nfvlab import state
from nfvlab.testbeds import cgroups, local, network


def _stop_processes() -> list[str]:
    """End journaled processes by pid, only if the pid still belongs to the process we started."""
    victims = []
    for e in state.entries():
        if e.get("kind") != "process":
            continue
        pid, start = e.get("pid"), e.get("start")
        if pid and start is not None and state.process_start_time(pid) == start:
            victims.append((pid, e.get("name", "?")))
    for pid, _ in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    for pid, _ in victims:
        while state.process_start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if state.process_start_time(pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return [f"process {pid} ({name})" for pid, name in victims]


def _stop_cgroup_tasks() -> list[str]:
    """Anything still inside the harness's cgroups was started by the harness (or its children)."""
    pids: set[int] = set()
    for root in cgroups.harness_roots():
        for procs_file in root.rglob("cgroup.procs") if root.exists() else []:
            with contextlib.suppress(OSError, ValueError):
                pids |= {int(x) for x in procs_file.read_text().split()}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return [f"process {pid} (in an nfvlab cgroup)" for pid in sorted(pids)]


def _unload_bpf() -> list[str]:
    try:
        from nfvlab.iron.cleanup import unload_all
    except ImportError:
        return []
    return [f"bpf {x}" for x in unload_all()]


class CleanRefused(RuntimeError):
    pass


def clean(force: bool = False) -> list[str]:
    """Remove everything. Refuses while a live run holds the local testbed, unless force."""
    lock = local.hold_testbed_lock()
    if lock is None and not force:
        raise CleanRefused(f"a run is using the local testbed ({local.testbed_holder()}): stop it first "
                           "(Ctrl-C tears it down), or use --force")
    try:
        return _clean()
    finally:
        if lock is not None:
            lock.close()


def _clean() -> list[str]:
    removed = _stop_processes()
    removed += _stop_cgroup_tasks()
    removed += _unload_bpf()
    journaled = list(state.entries())
    links = {e["name"] for e in journaled if e.get("kind") == "link"} | set(network.list_links(state.PREFIX))
    for name in sorted(links):
        with contextlib.suppress(Exception):
            if network.delete_link(name):
                removed.append(f"link {name}")
    namespaces = {e["name"] for e in journaled if e.get("kind") == "netns"}
    namespaces |= {n for n in network.netns.listnetns() if n.startswith(state.PREFIX)}
    for ns in sorted(namespaces):
        with contextlib.suppress(Exception):
            if network.delete_netns(ns):
                removed.append(f"netns {ns}")
    for root in cgroups.harness_roots():
        removed += [f"cgroup {p}" for p in cgroups.remove_tree(root)]
    for e in journaled:  # cgroups made outside the standard roots, if any
        if e.get("kind") == "cgroup" and Path(e["path"]).exists():
            removed += [f"cgroup {p}" for p in cgroups.remove_tree(Path(e["path"]))]
    state.reset()
    return removed
