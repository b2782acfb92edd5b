"""The controller's step on fake BPF counters and a fake cgroup directory (deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfvlab.iron.bpf import STAT_FIELDS
from nfvlab.iron.controller import Controller
from nfvlab.testbeds.model import CgroupPaths, Container

MS = 1_000_000


class FakeBPF:
    def __init__(self) -> None:
        self.totals: dict[int, dict[str, int]] = {}
        self.budgets: dict[int, dict] = {}

    def stats(self, slot: int) -> dict[str, int]:
        return dict(self.totals.setdefault(slot, dict.fromkeys(STAT_FIELDS, 0)))

    def add(self, slot: int, **kw: int) -> None:
        t = self.totals.setdefault(slot, dict.fromkeys(STAT_FIELDS, 0))
        for k, v in kw.items():
            t[k] += v

    def set_budget(self, slot: int, **kw) -> None:
        self.budgets[slot] = kw


def make_container(tmp: Path, name: str, index: int, quota_us: int = 50_000, version: int = 1) -> Container:
    d = tmp / name
    d.mkdir()
    if version == 1:
        (d / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
        (d / "cpu.cfs_period_us").write_text("100000\n")
        (d / "cpu.stat").write_text("nr_periods 0\nnr_throttled 0\nthrottled_time 0\n")
        (d / "cpuacct.usage").write_text("0\n")
    else:
        (d / "cpu.max").write_text(f"{quota_us} 100000\n")
        (d / "cpu.stat").write_text("usage_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n")
    cg = CgroupPaths(version=version, cpu=d, cpuset=d, cpuacct=d)
    return Container(name=name, index=index, role="x", netns=name, host_ifname=f"{name}-h", ns_ifname="eth0",
                     ip=f"198.18.100.{10 + index}", cpu=1, period_us=100_000, quota_us=quota_us, cgroup=cg)


def throttled(c: Container, n: int) -> None:
    f = c.cgroup.cpu / "cpu.stat"
    lines = dict(line.split() for line in f.read_text().splitlines())
    lines["nr_throttled"] = str(int(lines["nr_throttled"]) + n)
    f.write_text("".join(f"{k} {v}\n" for k, v in lines.items()))


def use_cpu(c: Container, ns: int) -> None:
    """The group ran ``ns`` more of CPU time (cpuacct.usage / cpu.stat usage_usec)."""
    if c.cgroup.version == 1:
        f = c.cgroup.cpuacct / "cpuacct.usage"
        f.write_text(f"{int(f.read_text()) + ns}\n")
        return
    f = c.cgroup.cpu / "cpu.stat"
    lines = dict(line.split() for line in f.read_text().splitlines())
    lines["usage_usec"] = str(int(lines["usage_usec"]) + ns // 1000)
    f.write_text("".join(f"{k} {v}\n" for k, v in lines.items()))


def quota(c: Container) -> int:
    if c.cgroup.version == 1:
        return int((c.cgroup.cpu / "cpu.cfs_quota_us").read_text())
    return int((c.cgroup.cpu / "cpu.max").read_text().split()[0])


def step(ctl: Controller, slot: int) -> None:
    ct = next(c for c in ctl.cts if c.slot == slot)
    ct.periods = ctl.k
    ctl._step(ct)


@pytest.mark.parametrize("version", [1, 2])
def test_victim_credited_receiver_charged(tmp_path, version):
    victim = make_container(tmp_path, "v", 0, version=version)
    recv = make_container(tmp_path, "r", 1, version=version)
    bpf = FakeBPF()
    ctl = Controller(bpf, [victim, recv], pre_throttle_pct=10)
    # one period: both throttled after running 50 ms; 8 ms of r's packets ran in v's context,
    # 12 ms more ran in ksoftirqd (charged to r, credited to no one)
    bpf.add(0, run_ns=50 * MS, gained_ns=8 * MS)
    use_cpu(victim, 50 * MS)
    bpf.add(1, run_ns=50 * MS, charged_ns=20 * MS)
    use_cpu(recv, 50 * MS)
    throttled(victim, 1)
    throttled(recv, 1)
    step(ctl, 0)
    step(ctl, 1)
    assert quota(victim) == 58_000
    assert quota(recv) == 30_000
    assert bpf.budgets[1]["thresh_ns"] == 27 * MS  # pre-throttle: 10 % below the 30 ms allocation
    assert not bpf.budgets[1]["force"]
    ctl.restore()
    assert quota(victim) == 50_000 and quota(recv) == 50_000


def test_debt_beyond_allocation_forces_drop_and_carries(tmp_path):
    recv = make_container(tmp_path, "r", 1)
    bpf = FakeBPF()
    ctl = Controller(bpf, [recv])
    bpf.add(1, run_ns=50 * MS, charged_ns=80 * MS)
    use_cpu(recv, 50 * MS)
    throttled(recv, 1)
    step(ctl, 1)
    assert quota(recv) == 1000  # kernel minimum
    assert bpf.budgets[1]["force"]
    # next period: ran its 1 ms, no new charges: remaining debt 50-80-1 = -31 -> 19 ms
    bpf.add(1, run_ns=1 * MS)
    use_cpu(recv, 1 * MS)
    throttled(recv, 1)
    step(ctl, 1)
    assert quota(recv) == 19_000
    assert not bpf.budgets[1]["force"]


def test_idle_receiver_charges_fit_in_unused_allocation(tmp_path):
    recv = make_container(tmp_path, "r", 1)
    bpf = FakeBPF()
    ctl = Controller(bpf, [recv])
    bpf.add(1, run_ns=10 * MS, sleeps=40, charged_ns=15 * MS)  # demand-limited, not throttled
    use_cpu(recv, 10 * MS)
    step(ctl, 1)
    assert quota(recv) == 50_000


def test_naive_attribution_ignores_charges(tmp_path):
    recv = make_container(tmp_path, "r", 1)
    bpf = FakeBPF()
    ctl = Controller(bpf, [recv], attribution="naive")
    bpf.add(1, run_ns=50 * MS, charged_ns=20 * MS, naive_ns=5 * MS)
    use_cpu(recv, 50 * MS)
    throttled(recv, 1)
    step(ctl, 1)
    assert quota(recv) == 50_000


def test_two_period_control_interval(tmp_path):
    victim = make_container(tmp_path, "v", 0)
    bpf = FakeBPF()
    ctl = Controller(bpf, [victim], k=2)
    bpf.add(0, run_ns=100 * MS, gained_ns=10 * MS)
    use_cpu(victim, 100 * MS)
    throttled(victim, 2)
    step(ctl, 0)
    assert quota(victim) == 55_000  # 10 ms credit spread over the 2 periods


def test_unlimited_container_not_controlled(tmp_path):
    free = make_container(tmp_path, "f", 0, quota_us=-1)
    ctl = Controller(FakeBPF(), [free])
    assert ctl.cts == []


@pytest.mark.parametrize("version", [1, 2])
def test_in_period_step_applies_credit_and_charge_before_the_boundary(tmp_path, version):
    victim = make_container(tmp_path, "v", 0, version=version)
    recv = make_container(tmp_path, "r", 1, version=version)
    bpf = FakeBPF()
    ctl = Controller(bpf, [victim, recv], mid_step_ms=10)
    now = 1_000_000_000
    for ct in ctl.cts:  # phase known, the period started just now
        ct.next_boundary = now + 100 * MS
    v, r = ctl.cts
    # 30 ms into the period: v ran 20 ms of which 6 ms were r's packets; r ran 30 ms and was charged 6
    bpf.add(0, run_ns=20 * MS, gained_ns=6 * MS)
    bpf.add(1, run_ns=30 * MS, charged_ns=6 * MS)
    use_cpu(victim, 20 * MS)
    use_cpu(recv, 30 * MS)
    ctl._mid_step(v, now + 30 * MS)
    ctl._mid_step(r, now + 30 * MS)
    assert quota(victim) == 36_000  # 50 + 6 credit - 20 used: the pool now holds what is left
    assert quota(recv) == 14_000  # 50 - 6 charge - 30 used
    # 10 ms later, nothing new: no further writes (the pools are right)
    use_cpu(victim, 5 * MS)
    (victim.cgroup.cpu / ("cpu.cfs_quota_us" if version == 1 else "cpu.max")).write_text(
        "36000\n" if version == 1 else "36000 100000\n")
    ctl._mid_step(v, now + 40 * MS)
    assert v.mid_writes == 1
    # r is charged past its allocation: its pool is emptied (kernel minimum)
    bpf.add(1, charged_ns=20 * MS)
    ctl._mid_step(r, now + 50 * MS)
    assert quota(recv) == 1000
    # the boundary step sees the whole period and rewrites the quota for the next one: v used its raised
    # allocation (50 + 6), so it starts afresh at 50; r ran 31 ms and was charged 26: 7 ms of debt
    bpf.add(0, run_ns=36 * MS)
    bpf.add(1, run_ns=1 * MS)
    use_cpu(victim, 31 * MS)
    use_cpu(recv, 1 * MS)
    throttled(victim, 1)
    throttled(recv, 1)
    step(ctl, 0)
    step(ctl, 1)
    assert quota(victim) == 50_000 and quota(recv) == 43_000
    assert v.mid_written_ns is None and r.mid_written_ns is None


def test_no_in_period_steps_near_the_boundary(tmp_path):
    victim = make_container(tmp_path, "v", 0)
    bpf = FakeBPF()
    ctl = Controller(bpf, [victim], mid_step_ms=10)
    (v,) = ctl.cts
    v.next_boundary = 100 * MS
    v.next_mid = 96 * MS
    bpf.add(0, gained_ns=6 * MS)
    ctl._mid_step(v, 96 * MS)
    assert v.next_mid is None and v.mid_writes == 0 and quota(victim) == 50_000


def test_used_time_comes_from_the_cgroup_counter_not_sched_switch(tmp_path):
    victim = make_container(tmp_path, "v", 0)
    bpf = FakeBPF()
    ctl = Controller(bpf, [victim])
    # a run that began in the previous period ended in this one: sched_switch books all of it here
    bpf.add(0, run_ns=117 * MS, gained_ns=10 * MS)
    use_cpu(victim, 60 * MS)  # what the group really used in this period (its 50 + the 10 credited)
    throttled(victim, 1)
    step(ctl, 0)
    assert quota(victim) == 50_000  # no phantom debt
