"""Worked cases of Iron's scheduler arithmetic (Fig. 2.7 global refill, Fig. 2.8 local refill).

Units are ms for readability (quota 50 of a 100 ms period, slice 5 ms: the CFS default slice).
"""

from __future__ import annotations

import pytest

from nfvlab.iron.algorithms import (
    GlobalState,
    LocalState,
    charge_credit,
    control_step,
    global_refill,
    local_refill,
)

# ---- Fig 2.7: global refill -------------------------------------------------------------------


def test_global_refill_plain_cfs():
    # no Iron activity, allocation used up: runtime 0 -> quota
    assert global_refill(GlobalState(0, 0), quota=50, idled=False) == GlobalState(50, 0)


def test_global_refill_adds_gained():
    # lines 1-4: a victim that processed 8 ms of another container's softirqs gets them back
    assert global_refill(GlobalState(0, 8), quota=50, idled=False) == GlobalState(58, 0)


def test_global_refill_debt_carried():
    # a receiver overdrew its pool by 20 ms of softirq charges: next period has 30 ms
    assert global_refill(GlobalState(-20, 0), quota=50, idled=False) == GlobalState(30, 0)


def test_global_refill_debt_partly_paid_by_gained():
    assert global_refill(GlobalState(-20, 5), quota=50, idled=False) == GlobalState(35, 0)


def test_global_refill_idle_rule_drops_leftover():
    # lines 5-7: demand-limited container does not accumulate unused runtime (nor unused credit)
    assert global_refill(GlobalState(12, 0), quota=50, idled=True) == GlobalState(50, 0)
    assert global_refill(GlobalState(12, 3), quota=50, idled=True) == GlobalState(50, 0)


def test_global_refill_idle_rule_keeps_debt():
    assert global_refill(GlobalState(-7, 0), quota=50, idled=True) == GlobalState(43, 0)


def test_global_refill_interference_leftover_carried():
    # not idle: positive runtime means interference kept it from using its allocation -> carried
    assert global_refill(GlobalState(12, 0), quota=50, idled=False) == GlobalState(62, 0)


# ---- Fig 2.8: local refill ---------------------------------------------------------------------


def test_charge_credit_cases():
    assert charge_credit(runtime=40, gained=0, cpuusage=6) == (34, 0)  # lines 4-6
    assert charge_credit(runtime=40, gained=4, cpuusage=6) == (38, 0)  # take gained first
    assert charge_credit(runtime=40, gained=9, cpuusage=6) == (40, 3)  # line 8
    assert charge_credit(runtime=40, gained=2, cpuusage=-5) == (40, 7)  # line 11: credit
    assert charge_credit(runtime=40, gained=2, cpuusage=0) == (40, 2)


def test_local_refill_plain_slice():
    # no Iron activity: pull a 5 ms slice (rt_remain 0 -> 5) from runtime 50
    s, amount = local_refill(LocalState(runtime=50, gained=0, cpuusage=0, rt_remain=0), slice_=5)
    assert amount == 5
    assert s == LocalState(runtime=45, gained=0, cpuusage=0, rt_remain=5)


def test_local_refill_charge_then_slice():
    # rt_remain -1 (overran), charge 3 ms of softirq work, 1 ms of it paid by gained
    s, amount = local_refill(LocalState(runtime=20, gained=1, cpuusage=3, rt_remain=-1), slice_=5)
    # runtime 20 - (3-1) = 18; min_amount = 5 - (-1) = 6; amount = 6
    assert amount == 6
    assert s == LocalState(runtime=12, gained=0, cpuusage=0, rt_remain=5)


def test_local_refill_credit():
    s, amount = local_refill(LocalState(runtime=10, gained=0, cpuusage=-4, rt_remain=0), slice_=5)
    assert amount == 5
    assert s == LocalState(runtime=5, gained=4, cpuusage=0, rt_remain=5)


def test_local_refill_exhausted_runtime_uses_gained():
    # lines 14-18: runtime is 0 but 3 ms of credit accrued: it becomes runtime, then a slice of it
    s, amount = local_refill(LocalState(runtime=0, gained=3, cpuusage=0, rt_remain=0), slice_=5)
    assert amount == 3
    assert s == LocalState(runtime=0, gained=0, cpuusage=0, rt_remain=3)
    # more credit than a slice: only min_amount is refilled, the rest stays in gained
    s, amount = local_refill(LocalState(runtime=0, gained=9, cpuusage=0, rt_remain=0), slice_=5)
    assert amount == 5
    assert s == LocalState(runtime=0, gained=4, cpuusage=0, rt_remain=5)


def test_local_refill_throttles_when_debt():
    # charged past the pool: runtime negative, no credit -> amount 0: the cgroup is throttled
    s, amount = local_refill(LocalState(runtime=2, gained=0, cpuusage=7, rt_remain=0), slice_=5)
    assert amount == 0
    assert s == LocalState(runtime=-5, gained=0, cpuusage=0, rt_remain=0)


def test_local_then_global_sequence():
    # one period of a receiver: quota 50, charged 20 ms outside its context in slices, 50 ms run
    st = LocalState(runtime=50, gained=0, cpuusage=0, rt_remain=0)
    pulled = 0
    charges = [0, 5, 5, 5, 5, 0, 0, 0, 0, 0]
    for c in charges:
        st = LocalState(st.runtime, st.gained, c, 0)  # the slice was consumed: rt_remain 0
        st, amount = local_refill(st, slice_=5)
        pulled += amount
    # 50 - 20 charged = 30 ms of slices handed out, then runtime 0
    assert pulled == 30 and st.runtime == 0
    g = global_refill(GlobalState(st.runtime, st.gained), quota=50, idled=False)
    assert g == GlobalState(50, 0)


# ---- the user-space controller step ------------------------------------------------------------


def step(**kw):
    base = dict(quota=50, periods=1, alloc=50, used=50, carry=0, gained=0, cpuusage=0, idled=False,
                min_quota=1, max_quota=100)
    base.update(kw)
    return control_step(**base)


def test_step_victim_credited():
    # victim ran its 50 ms, 10 of which were the receiver's softirqs: next period 60
    d = step(cpuusage=-10)
    assert (d.quota, d.carry, d.gained, d.force_drop) == (60, 0, 0, False)


def test_step_receiver_charged():
    # receiver ran 50 ms and 30 ms of its packets ran elsewhere: 20 next period
    d = step(cpuusage=30)
    assert (d.quota, d.carry, d.force_drop) == (20, 0, False)


def test_step_receiver_within_allocation_not_charged_twice():
    # ran 20 of 50 (demand-limited), 10 ms charged: fits in its pool, idle rule drops leftover
    d = step(used=20, cpuusage=10, idled=True)
    assert (d.quota, d.carry) == (50, 0)


def test_step_debt_beyond_allocation_carries_and_forces_drop():
    d = step(cpuusage=70)  # pool 0 - 70 -> runtime -20: write the minimum, carry the rest
    assert d.quota == 1 and d.carry == -21 and d.force_drop
    d2 = step(alloc=1, used=1, carry=d.carry)  # next period: no new charges
    assert d2.quota == 29 and d2.carry == 0 and not d2.force_drop


def test_step_multi_period_interval():
    d = step(periods=2, alloc=100, used=100, cpuusage=-20)
    assert d.quota == 60 and d.carry == 0


def test_step_credit_cap():
    d = step(cpuusage=-500)
    assert d.quota == 100  # max_quota
    assert d.carry == 0  # credit beyond 2x quota is not accumulated


@pytest.mark.parametrize("used,idled,expect", [(30, True, 50), (30, False, 70)])
def test_step_idle_rule(used, idled, expect):
    assert step(used=used, idled=idled).quota == expect
