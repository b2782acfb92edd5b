"""Kernel counters for one CPU: the softirq cost that no container is charged for.

Dissertation §2.1.3 (Fig 2.2) plots the CPU time of ``ksoftirqd`` on the victim's core; the
interference is softirq work (NET_RX/NET_TX) done on that core. :meth:`HostCounters.snapshot`
reads, for one CPU:

* ``/proc/softirqs``: NET_RX and NET_TX softirq *counts* on that CPU;
* ``/proc/stat``: that CPU's times (user, system, idle, irq, softirq, ...) in USER_HZ ticks;
* ``/proc/<pid>/stat`` of ``ksoftirqd/<cpu>``: its utime + stime;

and :meth:`HostCounters.delta` turns two snapshots into a flat ``dict[str, float]`` (counts and
seconds) ready to be a row of the results table. :func:`cgroup_cpu_usage_s` reads a cgroup's CPU
usage (v1 ``cpuacct.usage`` or v2 ``cpu.stat``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "STAT_FIELDS",
    "CounterSnapshot",
    "HostCounters",
    "HostCountersError",
    "cgroup_cpu_usage_s",
    "delta",
]

# /proc/stat per-CPU columns, in order (proc(5))
STAT_FIELDS: tuple[str, ...] = (
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guest_nice",
)


class HostCountersError(RuntimeError):
    """A counter file is missing or has an unexpected format."""


@dataclass(frozen=True)
class CounterSnapshot:
    """Raw counters of one CPU at one moment (``monotonic_s`` from ``time.monotonic()``)."""

    cpu: int
    monotonic_s: float
    net_rx_softirqs: int
    net_tx_softirqs: int
    stat_ticks: dict[str, int]
    ksoftirqd_pid: int
    ksoftirqd_ticks: int
    user_hz: int


class HostCounters:
    """Reads the counters from a proc root (``/proc`` by default; tests may point elsewhere)."""

    def __init__(self, proc_root: Path | str = "/proc") -> None:
        self.proc = Path(proc_root)
        self.user_hz = os.sysconf("SC_CLK_TCK")
        self._ksoftirqd: dict[int, int] = {}

    # -- individual readers ---------------------------------------------------------------------

    def softirqs(self) -> dict[str, list[int]]:
        """``/proc/softirqs`` as ``{"NET_RX": [cpu0, cpu1, ...], ...}``."""
        path = self.proc / "softirqs"
        lines = _read(path).splitlines()
        if not lines or not lines[0].split() or not lines[0].split()[0].startswith("CPU"):
            raise HostCountersError(f"{path}: unexpected header {lines[:1]!r}")
        ncpu = len(lines[0].split())
        table: dict[str, list[int]] = {}
        for line in lines[1:]:
            name, _, rest = line.partition(":")
            if not rest:
                continue
            try:
                table[name.strip()] = [int(x) for x in rest.split()[:ncpu]]
            except ValueError as exc:
                raise HostCountersError(f"{path}: bad line {line!r}") from exc
        return table

    def stat_cpu_ticks(self, cpu: int) -> dict[str, int]:
        """The ``cpuN`` line of ``/proc/stat`` as ``{field: ticks}`` (USER_HZ ticks)."""
        path = self.proc / "stat"
        key = f"cpu{cpu}"
        for line in _read(path).splitlines():
            parts = line.split()
            if parts and parts[0] == key:
                try:
                    return {name: int(v) for name, v in zip(STAT_FIELDS, parts[1:], strict=False)}
                except ValueError as exc:
                    raise HostCountersError(f"{path}: bad line {line!r}") from exc
        raise HostCountersError(f"{path}: no line for {key} (is CPU {cpu} online?)")

    def find_ksoftirqd(self, cpu: int) -> int:
        """pid of the ``ksoftirqd/<cpu>`` kernel thread (cached)."""
        if cpu in self._ksoftirqd:
            return self._ksoftirqd[cpu]
        want = f"ksoftirqd/{cpu}"
        for entry in self.proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue  # the process went away
            if comm == want:
                self._ksoftirqd[cpu] = int(entry.name)
                return int(entry.name)
        raise HostCountersError(f"no {want} thread in {self.proc}")

    def pid_cpu_ticks(self, pid: int) -> int:
        """utime + stime of a process or thread in USER_HZ ticks (``/proc/<pid>/stat`` 14, 15)."""
        path = self.proc / str(pid) / "stat"
        text = _read(path)
        # comm may contain spaces and parentheses: the fields start after the last ')'
        fields = text[text.rfind(")") + 2 :].split()
        try:
            # fields[0] is field 3 (state), so utime (14) is fields[11], stime (15) fields[12]
            return int(fields[11]) + int(fields[12])
        except (IndexError, ValueError) as exc:
            raise HostCountersError(f"{path}: unexpected format {text[:120]!r}") from exc

    # -- snapshot / delta -----------------------------------------------------------------------

    def snapshot(self, cpu: int) -> CounterSnapshot:
        """Read every counter of ``cpu`` now."""
        if cpu < 0:
            raise ValueError(f"cpu must be >= 0, got {cpu}")
        soft = self.softirqs()
        for name in ("NET_RX", "NET_TX"):
            if name not in soft or cpu >= len(soft[name]):
                raise HostCountersError(f"{self.proc / 'softirqs'}: no {name} column for CPU {cpu}")
        pid = self.find_ksoftirqd(cpu)
        return CounterSnapshot(
            cpu=cpu,
            monotonic_s=time.monotonic(),
            net_rx_softirqs=soft["NET_RX"][cpu],
            net_tx_softirqs=soft["NET_TX"][cpu],
            stat_ticks=self.stat_cpu_ticks(cpu),
            ksoftirqd_pid=pid,
            ksoftirqd_ticks=self.pid_cpu_ticks(pid),
            user_hz=self.user_hz,
        )

    @staticmethod
    def delta(a: CounterSnapshot, b: CounterSnapshot) -> dict[str, float]:
        """Counters accrued from ``a`` to ``b`` (same CPU):

        ``net_rx_softirqs``, ``net_tx_softirqs`` (counts), ``stat_<field>_s`` for every
        ``/proc/stat`` column (seconds, e.g. ``stat_softirq_s``, ``stat_irq_s``),
        ``ksoftirqd_cpu_s`` (seconds) and ``wall_s``.
        """
        if a.cpu != b.cpu:
            raise ValueError(f"snapshots are of different CPUs ({a.cpu} and {b.cpu})")
        if a.ksoftirqd_pid != b.ksoftirqd_pid:
            raise HostCountersError(f"ksoftirqd/{a.cpu} changed pid between snapshots (CPU hotplug?)")
        hz = float(a.user_hz)
        out: dict[str, float] = {
            "wall_s": b.monotonic_s - a.monotonic_s,
            "net_rx_softirqs": float(b.net_rx_softirqs - a.net_rx_softirqs),
            "net_tx_softirqs": float(b.net_tx_softirqs - a.net_tx_softirqs),
        }
        for name in STAT_FIELDS:
            if name in a.stat_ticks and name in b.stat_ticks:
                out[f"stat_{name}_s"] = (b.stat_ticks[name] - a.stat_ticks[name]) / hz
        out["ksoftirqd_cpu_s"] = (b.ksoftirqd_ticks - a.ksoftirqd_ticks) / hz
        return out


def delta(a: CounterSnapshot, b: CounterSnapshot) -> dict[str, float]:
    """Module-level alias of :meth:`HostCounters.delta`."""
    return HostCounters.delta(a, b)


def cgroup_cpu_usage_s(path: Path | str) -> float:
    """Total CPU time used by the cgroup at ``path``, in seconds.

    cgroup v1: ``cpuacct.usage`` (nanoseconds) in a cpuacct hierarchy directory
    (e.g. ``/sys/fs/cgroup/cpuacct/<group>``); cgroup v2: ``usage_usec`` of ``cpu.stat``.
    """
    p = Path(path)
    v1 = p / "cpuacct.usage"
    if v1.is_file():
        try:
            return int(_read(v1).strip()) / 1e9
        except ValueError as exc:
            raise HostCountersError(f"{v1}: not an integer") from exc
    v2 = p / "cpu.stat"
    if v2.is_file():
        for line in _read(v2).splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                try:
                    return int(value) / 1e6
                except ValueError as exc:
                    raise HostCountersError(f"{v2}: bad usage_usec line {line!r}") from exc
        raise HostCountersError(f"{v2}: no usage_usec (is this a cgroup v2 directory?)")
    if (p / "cpu.cfs_quota_us").is_file():
        raise HostCountersError(
            f"{p} is a cgroup v1 'cpu' directory without cpuacct files; pass the same group's directory "
            "in the cpuacct hierarchy (e.g. /sys/fs/cgroup/cpuacct/<group>)"
        )
    raise HostCountersError(f"{p}: neither cpuacct.usage (cgroup v1) nor cpu.stat (cgroup v2) found")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise HostCountersError(f"cannot read {path}: {exc}") from exc
