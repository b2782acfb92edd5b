"""The online hidden-cost arithmetic (nfvlab.iron.hidden) and the core split (nfvlab.workloads.coreshare)."""

import math

from nfvlab.iron.hidden import MIN_IRQS, RunCost, VictimCost, hidden_per_irq, run_cost
from nfvlab.workloads.coreshare import Sample, split


def vc(cpu, softirq, irq, irqs, timers=0, gained=0, extra=0, timer_extra=0):
    return VictimCost(cpu, softirq, irq, irqs, timers, gained, extra, timer_extra)


def test_run_cost_removes_the_assumed_hidden_part():
    # 1000 IRQs (100 timers) while Iron assumed 2 us per IRQ and 3 us per timer IRQ
    a = vc(0, 0, 0, 0)
    b = vc(500e6, 40e6, 1e6 + 900 * 2000 + 100 * 3000, 1000, 100, extra=2000, timer_extra=3000)
    rc = run_cost(a, b)
    assert rc.cpu_ns == 500e6
    assert rc.visible_ns == 41e6  # softirq + the handlers' own time
    assert rc.irqs == 1000


def test_hidden_per_irq_is_the_victims_unexplained_time_per_irq():
    base = RunCost(cpu_ns=600e6, visible_ns=1e6, irqs=50)  # job = 599 ms
    loaded = RunCost(cpu_ns=599e6 + 100e6 + 40000 * 7000, visible_ns=100e6, irqs=40000)
    assert math.isclose(hidden_per_irq(base, loaded), 7000)
    # a probe of half the job
    half = RunCost(cpu_ns=299.5e6 + 50e6 + 20000 * 7000, visible_ns=50e6, irqs=20000)
    assert math.isclose(hidden_per_irq(base, half, job_scale=0.5), 7000)


def test_hidden_per_irq_refuses_noise():
    base = RunCost(600e6, 1e6, 50)
    assert math.isnan(hidden_per_irq(base, RunCost(700e6, 100e6, MIN_IRQS - 1)))  # too few IRQs
    assert math.isnan(hidden_per_irq(base, RunCost(650e6, 100e6, 40000)))  # negative: the job got faster


def test_split_accounts_for_every_nanosecond():
    a = Sample(t_ns=0, root_ns=0, ksoftirqd_ns=0, containers_ns={"c0": 0, "c1": 0})
    b = Sample(t_ns=1000, root_ns=900, ksoftirqd_ns=50, containers_ns={"c0": 300, "c1": 400})
    sp = split(a, b)
    assert sp.idle_ns == 100 and sp.foreign_ns == 150
    assert sp.idle_ns + sp.foreign_ns + sp.ksoftirqd_ns + sum(sp.containers_ns.values()) == sp.wall_ns
    assert sp.pct(sp.foreign_ns) == 15.0
