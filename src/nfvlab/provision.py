"""Provisioning an ssh testbed with the playbooks in playbooks/, through ansible-runner.

``nfvlab provision testbed/ssh-example.yaml [--playbook site|base|nic-tuning|trex|chc|kernel] [--check]``

The nfvlab inventory becomes an Ansible inventory (groups = roles, host vars = node dir, NIC, cores);
ansible-runner runs the playbook over ssh (the venv's ansible on PATH, the node's python as
``ansible_python_interpreter``); its events drive a rich progress display; the per-host stats come
back so callers (and the idempotency test) can assert ``changed == 0`` on a second run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from nfvlab.testbeds.inventory import Inventory, InventoryError, load_inventory

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
CHC_SOURCE = REPO / "chc"  # the data plane the chc role builds on NF hosts
CHC_FUNCTIONS = REPO / "src" / "nfvlab" / "chc" / "chc_functions.lua"
PLAYBOOK_NAMES = ("site", "base", "nic-tuning", "trex", "chc", "kernel")


class ProvisionError(RuntimeError):
    pass


@dataclass
class PlaybookResult:
    playbook: str
    status: str  # ansible-runner's: successful | failed | timeout | canceled
    rc: int
    stats: dict[str, dict[str, int]]  # stat -> {host: count}, as ansible-runner reports them
    failures: list[str]

    def total(self, stat: str) -> int:
        return sum((self.stats.get(stat) or {}).values())

    @property
    def changed(self) -> int:
        return self.total("changed")

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0


def ansible_inventory(inv: Inventory) -> dict[str, Any]:
    """The nfvlab inventory in Ansible's YAML inventory form."""
    d = inv.defaults
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    ssh_args = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(d.connect_timeout_s)}"]
    if d.known_hosts:
        ssh_args += ["-o", f"UserKnownHostsFile={Path(d.known_hosts).expanduser()}", "-o", "StrictHostKeyChecking=yes"]
    else:
        ssh_args += ["-o", "StrictHostKeyChecking=accept-new"]
    for n in inv.nodes:
        key = n.key or d.key
        hv: dict[str, Any] = {
            "ansible_host": n.address,
            "ansible_port": n.port or d.port,
            "ansible_user": n.user or d.user,
            "ansible_python_interpreter": d.python,
            "ansible_ssh_common_args": shlex.join(ssh_args),
            "nfvlab_node_dir": str(n.workdir or d.workdir / n.name),
            "nfvlab_nic": n.experiment_nic.name,
            "nfvlab_address": n.experiment_nic.address,
            "nfvlab_cores": n.cores,
            "nfvlab_shared_host": d.shared_host,
        }
        if key:
            hv["ansible_ssh_private_key_file"] = str(Path(key).expanduser())
        hosts[n.name] = hv
        for role in n.roles:
            groups.setdefault(role, {"hosts": {}})["hosts"][n.name] = {}
    return {"all": {"hosts": hosts, "children": groups}}


def build_wheel(out_dir: Path) -> Path:
    """The nfvlab wheel the base role installs on each node (built from this checkout, no network)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                          "-w", str(out_dir), str(REPO)], capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    wheels = sorted(out_dir.glob("nfvlab-*.whl"))
    if res.returncode != 0 or not wheels:
        raise ProvisionError(f"cannot build the nfvlab wheel: {res.stderr.strip()[-800:]}")
    return wheels[-1]


def chc_source_tarball(out_dir: Path) -> tuple[Path, str]:
    """chc/ (the C++ data plane's sources) as a reproducible .tar.gz for the chc role, and its sha256:
    same sources, same bytes (sorted members, zero times and owners), so a second provisioning run
    copies and builds nothing."""
    import gzip
    import hashlib
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in CHC_SOURCE.rglob("*") if p.is_file()):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(CHC_SOURCE)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as f:
                tar.addfile(info, f)
    data = gzip.compress(raw.getvalue(), mtime=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "chc-src.tar.gz"
    out.write_bytes(data)
    return out, hashlib.sha256(data).hexdigest()


class _Progress:
    """ansible-runner events -> one rich progress line per task, with per-host outcome counts."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.task = progress.add_task("starting", total=None) if progress else None
        self.counts = {"ok": 0, "changed": 0, "skipped": 0, "failed": 0, "unreachable": 0}
        self.failures: list[str] = []

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "playbook_on_task_start":
            self._show(f"{data.get('play', '')}: {data.get('task', '')}")
        elif kind in ("runner_on_ok", "runner_item_on_ok"):
            if kind == "runner_on_ok":
                self.counts["changed" if data.get("res", {}).get("changed") else "ok"] += 1
        elif kind == "runner_on_skipped":
            self.counts["skipped"] += 1
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            if kind == "runner_on_failed" and data.get("ignore_errors"):
                return True
            self.counts["failed" if kind == "runner_on_failed" else "unreachable"] += 1
            res = data.get("res", {})
            msg = res.get("msg") or res.get("stderr") or res.get("stdout") or ""
            self.failures.append(f"{data.get('host')}: {data.get('task')}: {str(msg).strip()[-400:]}")
        self._show(None)
        return True

    def _show(self, description: str | None) -> None:
        if self.progress is None:
            return
        c = self.counts
        tail = f"  ok={c['ok']} changed={c['changed']} skipped={c['skipped']} failed={c['failed']}"
        if description is not None:
            self._desc = description
        self.progress.update(self.task, description=f"{getattr(self, '_desc', '')}{tail}")


def run_playbook(inventory: Inventory | Path | str, playbook: str = "site", check: bool = False,
                 extravars: dict[str, Any] | None = None,
                 wheel: Path | None = None, console: Console | None = None, quiet: bool = False,
                 timeout_s: int = 1800) -> PlaybookResult:
    import ansible_runner

    inv = inventory if isinstance(inventory, Inventory) else load_inventory(inventory)
    book = PLAYBOOKS / f"{playbook}.yml"
    if not book.is_file():
        raise ProvisionError(f"no playbook {book} (choose one of {', '.join(PLAYBOOK_NAMES)})")
    venv_bin = Path(sys.executable).parent
    extra = dict(extravars or {})
    if wheel is not None:
        extra |= {"nfvlab_wheel_dir": str(wheel.parent), "nfvlab_version": wheel.name.split("-")[1]}
    with tempfile.TemporaryDirectory(prefix="nfvlab-ansible-") as pdd:
        if playbook in ("site", "chc"):  # the chc role builds the data plane on the NF hosts
            tar, sha = chc_source_tarball(Path(pdd) / "chc")
            extra |= {"nfvlab_chc_tar": str(tar), "nfvlab_chc_sha256": sha, "nfvlab_chc_functions": str(CHC_FUNCTIONS)}
        inv_path = Path(pdd) / "inventory" / "hosts.yml"
        inv_path.parent.mkdir()
        inv_path.write_text(yaml.safe_dump(ansible_inventory(inv), sort_keys=False))
        envvars = {
            # the venv's ansible-playbook and ansible modules, then the system tools
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
            "ANSIBLE_PIPELINING": "True",  # one ssh exec per task, no remote temp files to copy
            "ANSIBLE_HOST_KEY_CHECKING": "True",  # ansible-runner turns it off otherwise
            "ANSIBLE_GATHERING": "explicit",
            "ANSIBLE_FORKS": str(max(5, len(inv.nodes))),
            "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_LOCAL_TEMP": str(Path(pdd) / "tmp"),
            # ssh masters of this run only: a master left from an earlier run to the same address (an
            # emulated node since torn down) would take the new connections and hang them
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(Path(pdd) / "cp"),
        }
        cmdline = "--check --diff" if check else None
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        console = console or Console(stderr=True)
        with Progress(*columns, console=console, transient=True, disable=quiet) as progress:
            handler = _Progress(None if quiet else progress)
            r = ansible_runner.run(private_data_dir=pdd, playbook=str(book), inventory=str(inv_path),
                                   extravars=extra, envvars=envvars, cmdline=cmdline, quiet=True,
                                   event_handler=handler, timeout=timeout_s, project_dir=str(PLAYBOOKS))
        _stop_ssh_masters(Path(pdd) / "cp")
        stats = r.stats or {}
        result = PlaybookResult(playbook, r.status, r.rc, {k: v for k, v in stats.items() if isinstance(v, dict)},
                                handler.failures)
        if not result.ok and not result.failures:
            out = r.stdout.read() if hasattr(r.stdout, "read") else ""
            result.failures.append(out[-1500:])
        return result


def _stop_ssh_masters(cp_dir: Path) -> None:
    """End the run's ControlPersist masters now rather than 60 s later."""
    for sock in cp_dir.glob("*") if cp_dir.is_dir() else []:
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "nfvlab-master"], capture_output=True,
                       timeout=15, stdin=subprocess.DEVNULL, check=False)


# --- CLI ----------------------------------------------------------------------------------------

def cmd_provision(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    try:
        inv = load_inventory(args.inventory)
    except InventoryError as e:
        err.print(f"[red]{escape(str(e))}[/]")
        return 2
    extra = dict(kv.split("=", 1) for kv in args.extra or [])
    with tempfile.TemporaryDirectory(prefix="nfvlab-wheel-") as d:
        wheel = build_wheel(Path(d)) if args.playbook in ("site", "base") else None
        res = run_playbook(inv, args.playbook, check=args.check, extravars=extra, wheel=wheel, console=err)
    hosts = sorted({h for per in res.stats.values() for h in per})
    for h in hosts:
        counts = " ".join(f"{s}={res.stats.get(s, {}).get(h, 0)}" for s in ("ok", "changed", "skipped", "failures"))
        print(f"{h}: {counts}")
    for f in res.failures:
        err.print(f"[red]failed[/] {f}")
    print(f"{args.playbook}: {res.status}, {res.changed} changed")
    return 0 if res.ok else 1


def register(sub: Any) -> None:
    s = sub.add_parser("provision", help="prepare the nodes of an ssh testbed with the Ansible playbooks")
    s.add_argument("inventory", type=Path, help="testbed/*.yaml")
    s.add_argument("--playbook", choices=PLAYBOOK_NAMES, default="site")
    s.add_argument("--check", action="store_true", help="Ansible check mode: report, change nothing")
    s.add_argument("-e", "--extra", action="append", metavar="KEY=VALUE", help="extra variable for the playbook")
    s.set_defaults(func=cmd_provision)
