"""Load, attach, read and unload Iron's BPF object (``bpf/iron.bpf.c``).

Everything nfvlab pins lives under ``/sys/fs/bpf/nfvlab/iron-<pid>-<n>/`` (maps and links), with a JSON
description of the slots in ``/run/nfvlab/iron/iron-<pid>-<n>.json``, so ``nfvlab iron status`` can read
the charges of a running experiment and :func:`nfvlab.iron.cleanup.unload_all` can remove what a
crashed run left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import libbpf as lb
from .build import build

log = logging.getLogger(__name__)
_instances = itertools.count()

BPFFS = Path("/sys/fs/bpf")
PIN_ROOT = BPFFS / "nfvlab"
META_ROOT = Path("/run/nfvlab/iron")
MAX_SLOTS = 32
UNOWNED = MAX_SLOTS

# exits before entries, so that no entry is seen without its exit being traced
TRACING_PROGS = [
    "iron_sched_switch", "iron_rx_skb", "iron_tx_skb", "iron_softirq_exit", "iron_softirq_entry",
    "iron_irq_exit", "iron_irq_entry", "iron_hrtimer_entry",
]
# x86 vector tracepoints: hard-IRQ overhead of the timer and IPIs (the RPS IPI is call_function_single)
OPTIONAL_TRACING_PROGS = [
    "iron_timer_exit", "iron_timer_entry", "iron_cfs_exit", "iron_cfs_entry", "iron_cf_exit",
    "iron_cf_entry", "iron_resched_exit", "iron_resched_entry", "iron_irqwork_exit", "iron_irqwork_entry",
]
MAP_NAMES = ["iron_cfg", "netns_slot", "ip_slot", "cg_slot", "ct_stats", "budget_cfg", "budget_use", "cpu_state"]


NETWORK_TIMERS = ("qdisc_watchdog", "tcp_pace_kick")  # hrtimer callbacks Iron attributes (iron.bpf.c)


@functools.cache  # /proc/kallsyms is ~0.1 s to scan; the kernel's text does not move while we run
def kernel_symbols(names: tuple[str, ...]) -> dict[str, int]:
    """Addresses of kernel text symbols from /proc/kallsyms (root sees real addresses); absent: none."""
    want, out = set(names), {}
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] in want and parts[1] in "tT" and parts[2] not in out:
                out[parts[2]] = int(parts[0], 16)
    return out


class IronCfg(ctypes.Structure):
    _fields_ = [("cpu_mask", ctypes.c_uint64), ("naive", ctypes.c_uint32), ("nslots", ctypes.c_uint32),
                ("irq_extra_ns", ctypes.c_uint32), ("timer_extra_ns", ctypes.c_uint32),
                ("fn_qdisc_watchdog", ctypes.c_uint64), ("fn_tcp_pace_kick", ctypes.c_uint64)]


class CtStats(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "charged_ns", "gained_ns", "own_ns", "rx_pkts", "tx_pkts", "rx_cost_ns", "tx_cost_ns", "ovh_ns",
        "drops", "naive_ns", "run_ns", "sleeps", "irqs", "irq_ns", "preempts", "timer_irqs")]


STAT_FIELDS = [f[0] for f in CtStats._fields_]


class BudgetCfg(ctypes.Structure):
    _fields_ = [("thresh_ns", ctypes.c_int64), ("period_ns", ctypes.c_uint64), ("phase_ns", ctypes.c_uint64),
                ("force", ctypes.c_uint32), ("active", ctypes.c_uint32)]


class BudgetUse(ctypes.Structure):
    _fields_ = [("period_idx", ctypes.c_uint64), ("used_ns", ctypes.c_int64)]


def ensure_bpffs() -> None:
    if not os.path.ismount(BPFFS):
        BPFFS.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "bpf", "bpf", str(BPFFS)], check=True)


def ip_key(ip: str) -> ctypes.c_uint32:
    """IPv4 address as the u32 the kernel sees (network byte order in memory)."""
    return ctypes.c_uint32(int.from_bytes(socket.inet_aton(ip), "little"))


def sum_percpu(vals: ctypes.Array) -> dict[str, int]:
    out = dict.fromkeys(STAT_FIELDS, 0)
    for v in vals:
        for f in STAT_FIELDS:
            out[f] += getattr(v, f)
    return out


@dataclass
class Slot:
    slot: int
    name: str
    ip: str
    netns: str | None
    cgroup_cpu: str | None


class MapReader:
    """Read Iron's maps by fd (own object) or by pin path (another process's object)."""

    def __init__(self, fds: dict[str, int]) -> None:
        self.fds = fds
        self.ncpu = lb.possible_cpus()

    @classmethod
    def from_pins(cls, pin_dir: Path) -> MapReader:
        return cls({n: lb.obj_get(pin_dir / n) for n in ("ct_stats", "budget_cfg", "budget_use")})

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}

    def stats(self, slot: int) -> dict[str, int]:
        vals = (CtStats * self.ncpu)()
        lb.map_lookup(self.fds["ct_stats"], ctypes.c_uint32(slot), vals)
        return sum_percpu(vals)

    def budget(self, slot: int) -> tuple[BudgetCfg, BudgetUse]:
        bc, bu = BudgetCfg(), BudgetUse()
        lb.map_lookup(self.fds["budget_cfg"], ctypes.c_uint32(slot), bc)
        lb.map_lookup(self.fds["budget_use"], ctypes.c_uint32(slot), bu)
        return bc, bu


class IronBPF:
    """One loaded instance of iron.bpf.o: maps configured, programs attached, links pinned."""

    def __init__(self, build_dir: Path | None = None, tag: str | None = None) -> None:
        self.obj_path = build(build_dir)
        self.tag = tag or f"iron-{os.getpid()}-{next(_instances)}"
        self.pin_dir = PIN_ROOT / self.tag
        self.meta_path = META_ROOT / f"{self.tag}.json"
        self.obj: int | None = None
        self.links: list[tuple[str, int | None, int | None]] = []  # (pin path, libbpf link ptr, raw fd)
        self.map_fds: dict[str, int] = {}
        self.slots: list[Slot] = []
        self.reader: MapReader | None = None
        self.meta: dict = {}

    # -- load / unload -------------------------------------------------------------------------
    def load(self) -> None:
        ensure_bpffs()
        L = lb.lib()
        if self.pin_dir.exists():
            shutil.rmtree(self.pin_dir, ignore_errors=True)
        try:
            self.pin_dir.mkdir(parents=True)
        except FileNotFoundError:  # another instance's close removed the empty root in between
            self.pin_dir.mkdir(parents=True)
        self.obj = lb.check_ptr(L.bpf_object__open_file(str(self.obj_path).encode(), None),
                                f"open {self.obj_path}")
        lb.check(L.bpf_object__load(self.obj), "bpf_object__load (see libbpf messages above)")
        for name in MAP_NAMES:
            m = lb.check_ptr(L.bpf_object__find_map_by_name(self.obj, name.encode()), f"map {name}")
            self.map_fds[name] = lb.check(L.bpf_map__fd(m), f"fd of map {name}")
            if name != "cpu_state":
                lb.check(L.bpf_map__pin(m, str(self.pin_dir / name).encode()), f"pin map {name}")
        self.reader = MapReader(dict(self.map_fds))  # shares the object's fds (closed with the object)

    def prog_ids(self) -> dict[str, int]:
        """Kernel ids of this object's programs (to tell them apart from other instances')."""
        out = {}
        for name in [*TRACING_PROGS, *OPTIONAL_TRACING_PROGS, "iron_xdp", "iron_tc"]:
            fd = lb.lib().bpf_program__fd(self._prog(name))
            if fd >= 0:
                out[name] = lb.prog_id(fd)
        return out

    def _prog(self, name: str) -> int:
        return lb.check_ptr(lb.lib().bpf_object__find_program_by_name(self.obj, name.encode()), f"prog {name}")

    def _pin_link(self, link: int, pin_name: str) -> None:
        path = self.pin_dir / pin_name
        lb.check(lb.lib().bpf_link__pin(link, str(path).encode()), f"pin link {pin_name}")
        self.links.append((str(path), link, None))

    def attach_tracing(self) -> list[str]:
        attached = []
        for name in TRACING_PROGS + OPTIONAL_TRACING_PROGS:
            try:
                link = lb.check_ptr(lb.lib().bpf_program__attach(self._prog(name)), f"attach {name}")
            except lb.LibbpfError as e:
                if name in OPTIONAL_TRACING_PROGS:
                    log.warning("iron: optional tracepoint program %s not attached: %s", name, e)
                    continue
                raise
            self._pin_link(link, f"link_{name}")
            attached.append(name)
        return attached

    def attach_xdp(self, netns: str | None, ifname: str) -> None:
        with lb.InNetns(netns):
            ifindex = socket.if_nametoindex(ifname)
            link = lb.check_ptr(lb.lib().bpf_program__attach_xdp(self._prog("iron_xdp"), ifindex),
                                f"attach xdp to {netns}/{ifname}")
        self._pin_link(link, f"link_xdp_{netns or 'root'}_{ifname}")

    def attach_tc_ingress(self, netns: str | None, ifname: str) -> None:
        prog_fd = lb.lib().bpf_program__fd(self._prog("iron_tc"))
        with lb.InNetns(netns):
            ifindex = socket.if_nametoindex(ifname)
            fd = lb.link_create(prog_fd, ifindex, lb.BPF_TCX_INGRESS)
        path = self.pin_dir / f"link_tcx_{netns or 'root'}_{ifname}"
        lb.obj_pin(fd, path)
        self.links.append((str(path), None, fd))

    def close(self) -> None:
        """Detach every link, unpin everything, close the object. Safe to call twice."""
        errors = []
        L = lb.lib()
        for path, link, fd in reversed(self.links):
            try:
                if link is not None:
                    L.bpf_link__destroy(link)
                elif fd is not None:
                    with contextlib.suppress(OSError):
                        lb.link_detach(fd)
                    os.close(fd)
            except OSError as e:  # pragma: no cover - best effort
                errors.append(f"{path}: {e}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.links = []
        if self.obj is not None:
            L.bpf_object__close(self.obj)
            self.obj = None
        self.map_fds = {}
        self.reader = None
        shutil.rmtree(self.pin_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last instance leaves no empty root behind (busy: others')
            PIN_ROOT.rmdir()
        with contextlib.suppress(FileNotFoundError):
            self.meta_path.unlink()
        if errors:
            log.warning("iron: errors while unloading: %s", errors)

    # -- configuration -------------------------------------------------------------------------
    def configure(self, cpu_mask: int, naive: bool, nslots: int = MAX_SLOTS, irq_extra_ns: int = 0,
                  timer_extra_ns: int | None = None) -> None:
        """Accounted CPUs, attribution, how many slots (0..nslots-1) will be used, and the per hard
        IRQ cost the tracepoints cannot see (added to each hard IRQ's H; ``timer_extra_ns`` for local
        timer interrupts, default the same as the others)."""
        timer_extra_ns = irq_extra_ns if timer_extra_ns is None else timer_extra_ns
        fns = kernel_symbols(NETWORK_TIMERS)
        lb.map_update(self.map_fds["iron_cfg"], ctypes.c_uint32(0),
                      IronCfg(cpu_mask, int(naive), max(0, min(MAX_SLOTS, nslots)), max(0, int(irq_extra_ns)),
                              max(0, int(timer_extra_ns)),
                              fns.get("qdisc_watchdog", 0), fns.get("tcp_pace_kick", 0)))

    def add_slot(self, slot: int, name: str, ip: str, netns: str | None, cgroup_cpu: Path | None) -> None:
        if not 0 <= slot < MAX_SLOTS:
            raise ValueError(f"at most {MAX_SLOTS} containers")
        val = ctypes.c_uint32(slot)
        lb.map_update(self.map_fds["ip_slot"], ip_key(ip), val)
        if netns:
            ino = os.stat(f"/run/netns/{netns}").st_ino
            lb.map_update(self.map_fds["netns_slot"], ctypes.c_uint32(ino), val)
        if cgroup_cpu is not None:
            ino = os.stat(cgroup_cpu).st_ino
            lb.map_update(self.map_fds["cg_slot"], ctypes.c_uint64(ino), val)
        self.slots.append(Slot(slot, name, ip, netns, str(cgroup_cpu) if cgroup_cpu else None))

    def set_budget(self, slot: int, *, thresh_ns: int, period_ns: int, phase_ns: int, force: bool,
                   active: bool = True) -> None:
        lb.map_update(self.map_fds["budget_cfg"], ctypes.c_uint32(slot),
                      BudgetCfg(int(thresh_ns), int(period_ns), int(phase_ns), int(force), int(active)))

    def write_meta(self, extra: dict) -> None:
        META_ROOT.mkdir(parents=True, exist_ok=True)
        self.meta = {"pid": os.getpid(), "pin_dir": str(self.pin_dir), "object": str(self.obj_path),
                     "slots": [s.__dict__ for s in self.slots], **extra}
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.meta, indent=1))
        tmp.replace(self.meta_path)

    def stats(self, slot: int) -> dict[str, int]:
        assert self.reader is not None
        return self.reader.stats(slot)
