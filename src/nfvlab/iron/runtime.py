"""IronRuntime: switch Iron on for the duration of an experiment.

    with IronRuntime(topology, drop="xdp", pre_throttle_pct=0.0) as iron:
        ... run the workloads ...
    totals = iron.stats()

``__enter__`` compiles (cached), loads and configures the BPF object, attaches the accounting
programs, attaches the drop program to every container's namespace-side veth and starts the
controller thread; ``__exit__`` always stops the thread, restores the quotas, detaches and unloads
everything (also on exceptions, and also when ``__enter__`` itself fails half-way).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Literal

from nfvlab.failures import PointFailed
from nfvlab.testbeds.model import Topology

from .bpf import MAX_SLOTS, UNOWNED, IronBPF
from .calibration import Calibration, current
from .cgroup import CfsFiles
from .controller import Controller

log = logging.getLogger(__name__)

DEFAULT_CONTROL_PERIODS = 1  # control period = one CFS period (see docs/iron.md for the measurement)
# Per hard IRQ cost that no tracepoint brackets (interrupt entry/exit, and in a VM the exit/entry of
# the vCPU), added to H; local timer interrupts have their own value. They come from the machine's
# current calibration (nfvlab.iron.calibration: measured, or the NFVLAB_IRON_*_EXTRA_NS override);
# a missing or stale calibration raises CalibrationStale instead of charging 0. Pass
# ``calibration=Calibration.explicit(...)`` for a deliberate choice. See docs/iron.md.


class IronError(RuntimeError):
    pass


class IronControllerError(IronError, PointFailed):
    """The controller thread died (an exception) or stopped before it was told to: the repetition
    ran without charging and crediting, so it is no result (nfvlab.failures)."""

    def __init__(self, message: str):
        PointFailed.__init__(self, "controller_error", message)


class IronRuntime:
    def __init__(self, topology: Topology, drop: Literal["xdp", "tc", "none"] = "xdp",
                 pre_throttle_pct: float = 0.0, control_period_ms: float | None = None,
                 attribution: Literal["iron", "naive"] = "iron", build_dir: Path | None = None,
                 calibration: Calibration | None = None) -> None:
        if drop not in ("xdp", "tc", "none"):
            raise ValueError(f"drop must be xdp, tc or none, not {drop!r}")
        if attribution not in ("iron", "naive"):
            raise ValueError(f"attribution must be iron or naive, not {attribution!r}")
        if len(topology.containers) > MAX_SLOTS:
            raise ValueError(f"Iron supports at most {MAX_SLOTS} containers")
        self.topology = topology
        self.drop = drop
        self.pre_throttle_pct = float(pre_throttle_pct)
        self.attribution = attribution
        self.build_dir = build_dir
        period_us = max((c.period_us for c in topology.containers), default=100_000)
        if control_period_ms is None:
            self.k = DEFAULT_CONTROL_PERIODS
        else:
            # quota writes must land on period boundaries: round to a whole number of CFS periods
            self.k = max(1, round(control_period_ms * 1000 / period_us))
        self.control_period_ms = self.k * period_us / 1000
        self.bpf: IronBPF | None = None
        self.controller: Controller | None = None
        self._t0: float | None = None
        self._t1: float | None = None
        self._stat0: dict[str, dict[str, int]] = {}
        self._final: dict[str, float] | None = None
        self._ctl_error: BaseException | None = None
        self._ctl_stopped = False
        self.prog_ids: dict[str, int] = {}  # kernel ids of the loaded programs (name -> id)
        # the fitted input every charge depends on: recorded by the runner in every row (nfvlab.stamps)
        self.calibration = calibration or current(build_dir)
        self.irq_extra_ns, self.timer_extra_ns = self.calibration.irq_extra_ns, self.calibration.timer_extra_ns

    # ---------------------------------------------------------------------------------------------
    def __enter__(self) -> IronRuntime:
        try:
            self._start()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._teardown()
        if exc_type is None:  # nothing else went wrong: a controller that failed meanwhile fails the run
            self.check_controller()

    def check_controller(self) -> None:
        """Raise IronControllerError if the controller thread died or stopped on its own (while running
        and after exit). Drivers call it through stats(); __exit__ calls it too."""
        if self._ctl_error is not None:
            raise IronControllerError(f"the Iron controller thread died: {self._ctl_error!r}")
        if self._ctl_stopped:
            raise IronControllerError("the Iron controller thread stopped before the measurement ended")
        ctl = self.controller
        if ctl is None:
            return
        if ctl.error is not None:
            raise IronControllerError(f"the Iron controller thread died: {ctl.error!r}")
        if not ctl.stop_ev.is_set() and (ctl.thread is None or not ctl.thread.is_alive()):
            raise IronControllerError("the Iron controller thread stopped before the measurement ended")

    def _start(self) -> None:
        topo = self.topology
        bpf = self.bpf = IronBPF(self.build_dir)
        bpf.load()
        cpus = {c.cpu for c in topo.containers}
        bpf.configure(cpu_mask=sum(1 << c for c in cpus), naive=self.attribution == "naive",
                      nslots=max(c.index for c in topo.containers) + 1, irq_extra_ns=self.irq_extra_ns,
                      timer_extra_ns=self.timer_extra_ns)
        for c in topo.containers:
            bpf.add_slot(c.index, c.name, c.ip, c.netns, Path(c.cgroup.cpu))
        self.prog_ids = bpf.prog_ids()
        bpf.attach_tracing()
        for c in topo.containers:
            if self.drop == "xdp":
                bpf.attach_xdp(c.netns, c.ns_ifname)
            elif self.drop == "tc":
                bpf.attach_tc_ingress(c.netns, c.ns_ifname)
        bpf.write_meta({"drop": self.drop, "attribution": self.attribution,
                        "pre_throttle_pct": self.pre_throttle_pct, "control_period_ms": self.control_period_ms,
                        "cpus": sorted(cpus), "started": time.time()})
        self._stat0 = {c.name: CfsFiles(c.cgroup).stat() for c in topo.containers}
        other = set(range(os.cpu_count() or 1)) - cpus
        self.controller = Controller(bpf, topo.containers, k=self.k, attribution=self.attribution,
                                     pre_throttle_pct=self.pre_throttle_pct, cpus=other or None)
        self._t0 = time.monotonic()
        self.controller.start()

    def _teardown(self) -> None:
        ctl, bpf = self.controller, self.bpf
        if ctl is not None and ctl.thread is not None and not ctl.thread.is_alive() and not ctl.stop_ev.is_set():
            self._ctl_stopped = True  # it ended without being told to (an error or not)
        try:
            if ctl is not None:
                ctl.stop()
        finally:
            try:
                if bpf is not None and bpf.obj is not None:
                    self._t1 = time.monotonic()
                    try:
                        self._final = self._collect()
                    except Exception as e:  # noqa: BLE001 - stats are best effort at teardown
                        log.warning("iron: final stats failed: %s", e)
            finally:
                try:
                    if ctl is not None:
                        ctl.restore()
                finally:
                    if bpf is not None:
                        bpf.close()
                    self.controller = None
                    self.bpf = None
        if ctl is not None and ctl.error is not None:
            self._ctl_error = ctl.error
            log.error("iron controller had failed: %r", ctl.error)

    # ---------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Totals since ``__enter__`` (the final values once the runtime exited).

        Per container ``<name>.<key>`` for charged_ns, gained_ns, own_ns, rx_packets, tx_packets,
        rx_cost_ns, ovh_ns, naive_ns, run_ns, drops, throttled_ns, quota_mean_us, forced_steps; sums
        over the containers as ``<key>_total`` (charged_ns_total, gained_ns_total, drops_total, ...);
        ``unowned.*`` (packets of no container), ``controller.steps``, ``controller.step_us_mean``
        and ``elapsed_s``. Raises IronControllerError when the controller thread died or stopped:
        totals of a run without control are no result.
        """
        self.check_controller()
        if self.bpf is not None and self.bpf.obj is not None:
            return self._collect()
        if self._final is not None:
            return dict(self._final)
        raise IronError("IronRuntime was never entered")

    def _collect(self) -> dict[str, float]:
        assert self.bpf is not None
        out: dict[str, float] = {}
        ctl = self.controller
        by_slot = {ct.slot: ct for ct in ctl.cts} if ctl else {}
        steps = 0
        for c in self.topology.containers:
            s = self.bpf.stats(c.index)
            st = CfsFiles(c.cgroup).stat()
            base = self._stat0.get(c.name, {})
            pre = c.name
            out[f"{pre}.charged_ns"] = s["charged_ns"]
            out[f"{pre}.gained_ns"] = s["gained_ns"]
            out[f"{pre}.own_ns"] = s["own_ns"]
            out[f"{pre}.rx_packets"] = s["rx_pkts"]
            out[f"{pre}.tx_packets"] = s["tx_pkts"]
            out[f"{pre}.rx_cost_ns"] = s["rx_cost_ns"]
            out[f"{pre}.tx_cost_ns"] = s["tx_cost_ns"]
            out[f"{pre}.ovh_ns"] = s["ovh_ns"]
            out[f"{pre}.naive_ns"] = s["naive_ns"]
            out[f"{pre}.run_ns"] = s["run_ns"]
            out[f"{pre}.drops"] = s["drops"]
            out[f"{pre}.irqs"] = s["irqs"]
            out[f"{pre}.irq_ns"] = s["irq_ns"]
            out[f"{pre}.preempts"] = s["preempts"]
            out[f"{pre}.timer_irqs"] = s["timer_irqs"]
            out[f"{pre}.throttled_ns"] = st.get("throttled_ns", 0) - base.get("throttled_ns", 0)
            ct = by_slot.get(c.index)
            if ct is not None:
                steps += ct.steps
                if ct.history:
                    out[f"{pre}.quota_mean_us"] = sum(h[1] for h in ct.history) / len(ct.history)
                out[f"{pre}.forced_steps"] = ct.forced_steps
                out[f"{pre}.mid_writes"] = ct.mid_writes
                out[f"{pre}.relearns"] = ct.relearns
                errs = sorted(abs(e) for e in ct.lock_err_ns)
                out[f"{pre}.lock_err_p90_us"] = errs[int(0.9 * (len(errs) - 1))] / 1000 if errs else 0.0
                out[f"{pre}.lock_err_max_us"] = errs[-1] / 1000 if errs else 0.0
                out[f"{pre}.late_wakeups"] = ct.late_wakeups
        for key in ("charged_ns", "gained_ns", "own_ns", "rx_packets", "tx_packets", "rx_cost_ns", "drops",
                    "throttled_ns"):
            out[f"{key}_total"] = sum(out[f"{c.name}.{key}"] for c in self.topology.containers)
        u = self.bpf.stats(UNOWNED)
        out["unowned.rx_cost_ns"] = u["rx_cost_ns"]
        out["unowned.tx_cost_ns"] = u["tx_cost_ns"]
        out["unowned.empty_rx_softirqs"] = u["rx_pkts"]
        out["unowned.empty_tx_softirqs"] = u["tx_pkts"]
        out["unowned.irq_ns"] = u["irq_ns"]  # hard-IRQ time of windows without NET packets (charged to no one)
        out["controller.steps"] = steps
        out["controller.step_us_mean"] = (ctl.step_ns_total / steps / 1000) if ctl and steps else 0.0
        end = self._t1 if self._t1 is not None else time.monotonic()
        out["elapsed_s"] = end - self._t0 if self._t0 is not None else 0.0
        return out

    def set_hidden_cost(self, irq_extra_ns: int, timer_extra_ns: int) -> None:
        """Change the per-IRQ hidden cost while running (the online estimate, nfvlab.iron.hidden)."""
        self.irq_extra_ns, self.timer_extra_ns = max(0, int(irq_extra_ns)), max(0, int(timer_extra_ns))
        if self.bpf is not None and self.bpf.obj is not None:
            cpus = {c.cpu for c in self.topology.containers}
            self.bpf.configure(cpu_mask=sum(1 << c for c in cpus), naive=self.attribution == "naive",
                               nslots=max(c.index for c in self.topology.containers) + 1,
                               irq_extra_ns=self.irq_extra_ns, timer_extra_ns=self.timer_extra_ns)

    def victim_history(self) -> list[tuple[float, int, int, int, int]]:
        """The victim's (container 0) controller steps: (wall time, quota µs, charged, gained, used)."""
        ctl = self.controller
        if ctl is None:
            return []
        return next((list(ct.history) for ct in ctl.cts if ct.c.index == 0), [])

    @property
    def controller_error(self) -> BaseException | None:
        """The exception that stopped the controller thread, if any (also after exit)."""
        return self.controller.error if self.controller else self._ctl_error
