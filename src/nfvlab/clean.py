"""`nfvlab clean`: remove every namespace, link (and its qdiscs), cgroup, BPF program and process
the harness created, from the creation journal and from the nfvlab naming prefix, and nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
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
    """Anything still inside the harness's cgroups was started by the harness (or its children): kill
    it all before removing them (cgroup.kill on v2; freeze, kill, thaw on v1, freezer first)."""
    pids: set[int] = set()
    for root in cgroups.harness_roots():
        pids |= cgroups.kill_tasks(root)
    return [f"process {pid} (in an nfvlab cgroup)" for pid in sorted(pids)]


def _unload_bpf() -> list[str]:
    try:
        from nfvlab.iron.cleanup import unload_all
    except ImportError:
        return []
    return [f"bpf {x}" for x in unload_all()]


class CleanRefused(RuntimeError):
    pass


def clean(force: bool = False, prefix: str | None = None) -> list[str]:
    """Remove everything. Refuses while a live run holds the local testbed, unless force. Raises
    CleanIncomplete (after trying every step and releasing the lock) if something could not go.

    ``prefix`` limits clean to one testbed prefix's objects (LocalTestbed(prefix=...)): the tasks in
    and the cgroups under nfvlab/<prefix>/, its namespaces and links; journal, BPF and journaled
    processes are left alone (for tests on a shared machine)."""
    lock = local.hold_testbed_lock()
    if lock is None and not force:
        raise CleanRefused(f"a run is using the local testbed ({local.testbed_holder()}): stop it first "
                           "(Ctrl-C tears it down), or use --force")
    try:
        return _clean() if prefix is None else _clean_prefix(local.LocalConfig(prefix=prefix))
    finally:
        if lock is not None:
            lock.close()


def _clean_prefix(cfg: local.LocalConfig) -> list[str]:
    removed: list[str] = []
    failed: list[str] = []
    tops = [root / cfg.cgroup_run for root in cgroups.harness_roots()]
    for top in tops:
        try:
            removed += [f"process {pid} (in an nfvlab cgroup)" for pid in sorted(cgroups.kill_tasks(top))]
        except Exception as e:  # noqa: BLE001
            failed.append(f"tasks in {top}: {e}")
    for name in local.owned_links(cfg):
        with contextlib.suppress(Exception):
            if network.delete_link(name):
                removed.append(f"link {name}")
    for ns in local.owned_netns(cfg):
        with contextlib.suppress(Exception):
            if network.delete_netns(ns):
                removed.append(f"netns {ns}")
    for top in tops:
        try:
            removed += [f"cgroup {p}" for p in cgroups.remove_tree(top)]
        except Exception as e:  # noqa: BLE001
            failed.append(f"cgroup {top}: {e}")
    if failed:
        raise CleanIncomplete(removed, failed)
    return removed


class CleanIncomplete(RuntimeError):
    """Some objects could not be removed (every other step ran; the lock was released)."""

    def __init__(self, removed: list[str], failed: list[str]):
        self.removed, self.failed = removed, failed
        super().__init__("clean could not remove: " + "; ".join(failed))


def _clean() -> list[str]:
    removed: list[str] = []
    failed: list[str] = []

    def step(what: str, fn: Callable[[], list[str]]) -> None:
        try:
            removed.extend(fn())
        except Exception as e:  # noqa: BLE001 - each step runs whatever the others did
            failed.append(f"{what}: {e}")

    step("journaled processes", _stop_processes)
    step("tasks in nfvlab cgroups", _stop_cgroup_tasks)
    step("bpf", _unload_bpf)
    journaled = list(state.entries())
    links: set[str] = {e["name"] for e in journaled if e.get("kind") == "link"}
    step("list links", lambda: links.update(network.list_links(state.PREFIX)) or [])
    for name in sorted(links):
        step(f"link {name}", lambda name=name: [f"link {name}"] if network.delete_link(name) else [])
    namespaces: set[str] = {e["name"] for e in journaled if e.get("kind") == "netns"}
    step("list netns", lambda: namespaces.update(n for n in network.netns.listnetns()
                                                 if n.startswith(state.PREFIX)) or [])
    for ns in sorted(namespaces):
        step(f"netns {ns}", lambda ns=ns: [f"netns {ns}"] if network.delete_netns(ns) else [])
    for root in cgroups.harness_roots():
        step(f"cgroup {root}", lambda root=root: [f"cgroup {p}" for p in cgroups.remove_tree(root)])
    for e in journaled:  # cgroups made outside the standard roots, if any
        if e.get("kind") == "cgroup" and Path(e["path"]).exists():
            step(f"cgroup {e['path']}", lambda e=e: [f"cgroup {p}" for p in cgroups.remove_tree(Path(e["path"]))])
    if failed:
        raise CleanIncomplete(removed, failed)  # the journal stays: a second clean tries again
    state.reset()
    return removed
