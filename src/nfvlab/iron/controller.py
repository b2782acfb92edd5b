"""The Iron controller: every control period, charge/credit containers through their CFS quota.

Per container and control interval (``k`` CFS periods, default ``k = 1``: the CFS period itself)::

    charged, gained, run   <- BPF maps (deltas)          # nfvlab.iron.bpf
    cpuusage = charged - gained                          # "iron"; 0 for "naive" (CFS already
                                                         #  charged softirqs to the interrupted task)
    Decision = control_step(...)                         # Alg 2.8 lines 3-12, then Alg 2.7
    write cpu.cfs_quota_us / cpu.max = Decision.quota
    budget map: drop threshold = quota * (1 - T%), force drop while debt >= allocation

Why the writes are phase-locked: writing the quota refills the cgroup's runtime and unthrottles it
(``tg_set_cfs_bandwidth``), so a write in the middle of a CFS period hands out a second quota. Each
cgroup has its own period timer phase (measured here: different per cgroup, not aligned to the clock),
so the controller watches ``nr_periods`` in ``cpu.stat`` around each expected boundary (0.2 ms polls
in a 1.5 ms window) and writes right after the timer fired, when the container has used almost nothing
of the fresh period. The same phase goes to the BPF budget so the drop programs' per-period usage
resets together with the kernel's runtime.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from nfvlab.testbeds.model import Container

from .algorithms import control_step
from .bpf import IronBPF
from .cgroup import MIN_QUOTA_US, CfsFiles

log = logging.getLogger(__name__)

POLL_S = 0.0002  # inside a window around an expected boundary
POLL_UNKNOWN_S = 0.0005  # while a cgroup's phase is unknown
LATE_NS = 500_000  # a window's first poll later than this after it opened: the thread woke up late
RT_PRIORITY = 10  # SCHED_FIFO for the controller thread: wake-ups on time even on a loaded core
WINDOW_BEFORE_NS = 1_000_000
WINDOW_AFTER_NS = 5_000_000
# In-period steps (see Controller): how often, and the smallest quota change worth a write.
DEFAULT_MID_STEP_MS = 10.0
MID_STEP_MIN_CHANGE_NS = 500_000


@dataclass
class ContainerCtl:
    c: Container
    slot: int
    cfs: CfsFiles
    period_ns: int
    quota_ns: int  # the container's allocation per CFS period
    orig_quota_us: int
    written_ns: int
    last: dict[str, int]
    last_stat: dict[str, int]
    carry: int = 0
    gained: int = 0
    phase_ns: int | None = None
    next_boundary: int | None = None
    last_nr_periods: int = 0
    in_window: bool = False
    relearns: int = 0
    lock_err_ns: list[int] = field(default_factory=list)  # detection time - expected boundary
    unknown_since: int = 0
    periods: int = 0
    steps: int = 0
    forced_steps: int = 0
    history: list[tuple[float, int, int, int, int]] = field(default_factory=list)  # t, quota, charged, gained, run
    usage0: int = 0  # cgroup CPU usage at the last boundary step
    next_mid: int | None = None  # when the next in-period step is due
    mid_written_ns: int | None = None  # quota written by an in-period step in this period (None: none)
    mid_usage: int = 0  # cgroup CPU usage when it was written
    mid_writes: int = 0
    late_wakeups: int = 0  # boundary windows whose first poll came too late to see the boundary


class Controller:
    def __init__(self, bpf: IronBPF, containers: list[Container], *, k: int = 1,
                 attribution: Literal["iron", "naive"] = "iron", pre_throttle_pct: float = 0.0,
                 cpus: set[int] | None = None, keep_history: int = 10_000,
                 mid_step_ms: float | None = DEFAULT_MID_STEP_MS) -> None:
        self.bpf = bpf
        self.k = max(1, int(k))
        # in-period steps need the period phase and apply to one period at a time (k = 1)
        self.mid_ns = int(mid_step_ms * 1e6) if mid_step_ms and self.k == 1 and attribution == "iron" else 0
        self.attribution = attribution
        self.pre = max(0.0, min(100.0, pre_throttle_pct))
        self.cpus = cpus
        self.keep_history = keep_history
        self.stop_ev = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.step_ns_total = 0
        self.cts: list[ContainerCtl] = []
        for c in containers:
            cfs = CfsFiles(c.cgroup)
            q_us, p_us = cfs.read()
            if q_us <= 0:
                continue  # unlimited: accounted only
            st = bpf.stats(c.index)
            stat = cfs.stat()
            self.cts.append(ContainerCtl(
                c=c, slot=c.index, cfs=cfs, period_ns=p_us * 1000, quota_ns=q_us * 1000, orig_quota_us=q_us,
                written_ns=q_us * 1000, last=st, last_stat=stat, last_nr_periods=stat.get("nr_periods", 0),
                unknown_since=time.monotonic_ns(), usage0=cfs.usage_ns()))
        for ct in self.cts:
            self._set_budget(ct, ct.quota_ns, force=False)

    # ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="iron-controller", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_ev.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None

    def restore(self) -> None:
        for ct in self.cts:
            try:
                ct.cfs.write_quota(ct.orig_quota_us)
            except OSError as e:  # cgroup gone already
                log.debug("iron: restore quota of %s: %s", ct.c.name, e)

    # ---------------------------------------------------------------------------------------------
    def _set_budget(self, ct: ContainerCtl, quota_ns: int, force: bool) -> None:
        thresh = int(quota_ns * (1.0 - self.pre / 100.0))
        self.bpf.set_budget(ct.slot, thresh_ns=thresh, period_ns=ct.period_ns, phase_ns=ct.phase_ns or 0,
                            force=force, active=True)

    def _run(self) -> None:
        if self.cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.cpus)  # this thread only
        try:  # the loop sleeps between polls; FIFO only makes its wake-ups punctual
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
        except (OSError, AttributeError):
            log.debug("iron: controller thread stays SCHED_OTHER")
        try:
            while not self.stop_ev.is_set():
                now = time.monotonic_ns()
                wake = min((self._window_open(ct, now) for ct in self.cts), default=now + 50_000_000)
                for ct in self.cts:
                    if ct.next_mid is not None:
                        if ct.next_mid <= now:
                            self._mid_step(ct, now)
                        if ct.next_mid is not None:
                            wake = min(wake, ct.next_mid)
                now = time.monotonic_ns()
                if wake > now:
                    if self.stop_ev.wait((wake - now) / 1e9):
                        break
                    continue
                precise = False
                for ct in self.cts:
                    if self._window_open(ct, now) <= now:
                        self._poll(ct, now)
                        precise = precise or ct.next_boundary is not None
                time.sleep(POLL_S if precise else POLL_UNKNOWN_S)
        except BaseException as e:  # noqa: BLE001 - reported by IronRuntime
            self.error = e
            log.exception("iron controller failed")

    def _window_open(self, ct: ContainerCtl, now: int) -> int:
        if ct.next_boundary is None:
            return now  # phase unknown: poll until the next period boundary shows it
        return ct.next_boundary - WINDOW_BEFORE_NS

    def _poll(self, ct: ContainerCtl, now: int) -> None:
        n = ct.cfs.nr_periods()
        first_poll = not ct.in_window
        ct.in_window = True
        if n != ct.last_nr_periods:
            ct.periods += n - ct.last_nr_periods if n > ct.last_nr_periods else 1
            ct.last_nr_periods = n
            ct.in_window = False
            if ct.next_boundary is not None and len(ct.lock_err_ns) < 1000:
                ct.lock_err_ns.append(now - ct.next_boundary)
            late = ct.next_boundary is not None and now > ct.next_boundary - WINDOW_BEFORE_NS + LATE_NS
            if ct.next_boundary is not None and first_poll and not late:
                # the boundary came before the window opened: phase unknown again (re-learn it)
                ct.next_boundary, ct.phase_ns, ct.unknown_since = None, None, now
                ct.relearns += 1
            elif first_poll and late:
                ct.next_boundary += ct.period_ns  # we woke up late: keep the phase we had
                ct.late_wakeups += 1
            else:
                boundary = now - int(self._poll_ns(ct) / 2)
                ct.phase_ns = boundary % ct.period_ns
                ct.next_boundary = boundary + ct.period_ns
        elif ct.next_boundary is not None and now > ct.next_boundary + WINDOW_AFTER_NS:
            ct.next_boundary += ct.period_ns  # idle cgroup: its period timer is stopped
            ct.periods += 1
            ct.in_window = False
        elif ct.next_boundary is None and now - ct.unknown_since > ct.period_ns * 3 // 2:
            ct.next_boundary = now + ct.period_ns  # idle with unknown phase: poll sparsely
            ct.periods += 1
            ct.in_window = False
        else:
            return
        if ct.periods >= self.k:
            self._step(ct)
            if self.mid_ns and ct.next_boundary is not None:
                ct.next_mid = now + self.mid_ns

    @staticmethod
    def _poll_ns(ct: ContainerCtl) -> int:
        return int((POLL_S if ct.next_boundary is not None else POLL_UNKNOWN_S) * 1e9)

    def _step(self, ct: ContainerCtl) -> None:
        t0 = time.monotonic_ns()
        periods, ct.periods = ct.periods, 0
        cur = self.bpf.stats(ct.slot)
        d = {k: cur[k] - ct.last.get(k, 0) for k in cur}
        ct.last = cur
        stat = ct.cfs.stat()
        # CPU time used in the interval, from the cgroup's own counter: sched_switch's run_ns books a
        # run when it ends, so a run across the boundary would land whole in one interval (seen: 117 ms
        # "used" in a 100 ms period, then a victim throttled for a debt it never had)
        usage = ct.cfs.usage_ns()
        used = usage - ct.usage0
        d_thr = stat.get("nr_throttled", 0) - ct.last_stat.get("nr_throttled", 0)
        ct.last_stat = stat
        idled = d_thr == 0 and (d["sleeps"] > 0 or d["run_ns"] == 0)  # demand-limited
        cpuusage = d["charged_ns"] - d["gained_ns"] if self.attribution == "iron" else 0
        dec = control_step(
            quota=ct.quota_ns, periods=periods, alloc=ct.written_ns * periods, used=used,
            carry=ct.carry, gained=ct.gained, cpuusage=cpuusage, idled=idled,
            min_quota=MIN_QUOTA_US * 1000, max_quota=ct.period_ns * (os.cpu_count() or 1))
        ct.carry, ct.gained = dec.carry, dec.gained
        q_us = max(MIN_QUOTA_US, dec.quota // 1000)
        if q_us * 1000 != ct.written_ns or ct.mid_written_ns is not None:
            ct.cfs.write_quota(q_us)
            ct.written_ns = q_us * 1000
        ct.mid_written_ns = None
        ct.usage0 = usage
        self._set_budget(ct, ct.written_ns, dec.force_drop)
        ct.steps += 1
        ct.forced_steps += int(dec.force_drop)
        if len(ct.history) < self.keep_history:
            ct.history.append((time.time(), q_us, d["charged_ns"], d["gained_ns"], used))
        self.step_ns_total += time.monotonic_ns() - t0

    def _mid_step(self, ct: ContainerCtl, now: int) -> None:
        """Apply this period's charges and credits so far within the period (Alg. 2.8's local refill
        does it per slice in the kernel; a boundary-only step would pay a victim back one period late
        and let the interferers keep the time meanwhile).

        The period's allocation becomes ``written - (charged - gained)``; the kernel pool is set to what
        is left of it (writing the quota sets the pool to the written value without moving the period
        timer). The boundary step is unchanged: it computes the next quota from the whole period's
        charges, so nothing is applied twice.
        """
        if ct.next_boundary is None or now + self.mid_ns // 2 >= ct.next_boundary - WINDOW_BEFORE_NS:
            ct.next_mid = None  # the boundary step comes next
            return
        ct.next_mid = now + self.mid_ns
        cur = self.bpf.stats(ct.slot)
        net = (cur["charged_ns"] - ct.last.get("charged_ns", 0)) - (cur["gained_ns"] - ct.last.get("gained_ns", 0))
        usage = ct.cfs.usage_ns()
        want = ct.written_ns - net - (usage - ct.usage0)  # what the pool should hold now
        if ct.mid_written_ns is None:
            pool = ct.written_ns - (usage - ct.usage0)
        else:
            pool = ct.mid_written_ns - (usage - ct.mid_usage)
        if abs(want - pool) < MID_STEP_MIN_CHANGE_NS or (want <= 0 and pool <= 0):
            return  # the kernel pool is about right (or the group is out of runtime either way)
        q = max(MIN_QUOTA_US * 1000, min(ct.period_ns * (os.cpu_count() or 1), want))
        ct.cfs.write_quota(q // 1000)
        ct.mid_written_ns = q // 1000 * 1000
        ct.mid_usage = usage
        ct.mid_writes += 1
