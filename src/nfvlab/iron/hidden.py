"""The hidden per-IRQ cost, derived from the victim's own lost time at the run's interrupt density.

The tracepoints bracket the interrupt handler and the softirqs, not the interrupt's entry/exit path
nor (in a VM) the vCPU's exit and re-entry for each interrupt delivered: that time is lost by the
interrupted task, yet no counter shows it. Instead of one constant fitted per machine
(``nfvlab.iron.calibrate``), a repetition measures it on its own victim:

* the baseline run (sysbench neighbours, almost no interrupts) gives the job's CPU time:
  ``job = victim CPU - softirq and hard-IRQ time in its context`` (cpuacct includes both: this kernel
  has no IRQ_TIME_ACCOUNTING);
* a probe run of the same job (scaled to ``probe_events``) next to the same traffic, with Iron
  enforcing, gives the victim's CPU with interrupts; what it lost beyond the visible softirq and
  hard-IRQ time, divided by the hard IRQs taken in its context, is the hidden cost per IRQ at this
  density;
* the network run then uses it (``IronRuntime.set_hidden_cost``), and its own ledger gives the same
  quantity again after the fact (``check``), so every row says how right the value was.

Pure arithmetic here; the driver takes the samples (``VictimCost``) around its runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nfvlab.testbeds.model import Container
from nfvlab.workloads.hostcounters import cgroup_cpu_usage_s

# A derived cost outside this range is a measurement failure (noise, too few IRQs), not a cost.
MAX_COST_NS = 50_000
MIN_IRQS = 200  # fewer IRQs than this in the victim's context: nothing to derive (cost 0 is harmless)


@dataclass(frozen=True)
class VictimCost:
    """Cumulative counters of the victim at one moment."""

    cpu_ns: float  # cpuacct usage of its cgroup
    softirq_ns: float  # softirq time in its context (BPF naive_ns)
    irq_ns: float  # hard-IRQ time in its context, including the hidden cost Iron assumed
    irqs: float
    timer_irqs: float
    gained_ns: float  # Iron's credit so far
    irq_extra_ns: int  # what Iron assumed while these accrued (for the visible part)
    timer_extra_ns: int


def sample(victim: Container, iron: Any) -> VictimCost:
    s = iron.stats()
    v = victim.name
    return VictimCost(cpu_ns=cgroup_cpu_usage_s(victim.cgroup.cpuacct) * 1e9, softirq_ns=s.get(f"{v}.naive_ns", 0.0),
                      irq_ns=s.get(f"{v}.irq_ns", 0.0), irqs=s.get(f"{v}.irqs", 0.0),
                      timer_irqs=s.get(f"{v}.timer_irqs", 0.0), gained_ns=s.get(f"{v}.gained_ns", 0.0),
                      irq_extra_ns=iron.irq_extra_ns,
                      timer_extra_ns=iron.timer_extra_ns)


@dataclass(frozen=True)
class RunCost:
    """One victim run: its CPU, the visible time it absorbed, and its hard IRQs."""

    cpu_ns: float
    visible_ns: float
    irqs: float

    @property
    def job_ns(self) -> float:
        """The job's CPU if the run had no hidden cost (true for the baseline up to a few IRQs)."""
        return self.cpu_ns - self.visible_ns


def run_cost(a: VictimCost, b: VictimCost) -> RunCost:
    irqs, timers = b.irqs - a.irqs, b.timer_irqs - a.timer_irqs
    assumed = (irqs - timers) * b.irq_extra_ns + timers * b.timer_extra_ns
    visible = (b.softirq_ns - a.softirq_ns) + (b.irq_ns - a.irq_ns) - assumed
    return RunCost(cpu_ns=b.cpu_ns - a.cpu_ns, visible_ns=visible, irqs=irqs)


def hidden_per_irq(base: RunCost, loaded: RunCost, job_scale: float = 1.0) -> float:
    """Hidden ns per hard IRQ of ``loaded`` (a run of ``job_scale`` times the baseline's job):
    NaN when there is too little to measure or the result is no cost (noise)."""
    if loaded.irqs < MIN_IRQS:
        return math.nan
    job = base.job_ns * job_scale
    h = (loaded.cpu_ns - job - loaded.visible_ns) / loaded.irqs
    return h if 0 <= h <= MAX_COST_NS else math.nan
