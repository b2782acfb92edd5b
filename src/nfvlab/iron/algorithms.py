"""Iron's scheduler arithmetic (dissertation §2.2.2), as pure functions.

* :func:`global_refill` is Fig. 2.7 (Alg. 2.7): the global runtime refill at a period's end.
* :func:`local_refill` is Fig. 2.8 (Alg. 2.8): the local refill, with ``cpuusage`` (positive: charge
  unaccounted network cycles, negative: credit work done for another container) and ``gained``.
* :func:`charge_credit` is lines 3-13 of Alg. 2.8 on their own; the user-space controller applies
  them once per control period to the kernel pool's leftover, then Alg. 2.7.

All quantities are integers in one time unit (the controller uses ns). Each function returns a new
state and never mutates its input; line numbers refer to the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class GlobalState:
    runtime: int  # global pool of the cgroup (negative: debt carried into the next period)
    gained: int  # credit for softirq work done on behalf of other containers


@dataclass(frozen=True)
class LocalState:
    runtime: int  # global pool (as in GlobalState)
    gained: int
    cpuusage: int  # pending local charge (>0) or credit (<0)
    rt_remain: int  # the core-local runtime left


def global_refill(s: GlobalState, quota: int, idled: bool) -> GlobalState:
    """Alg. 2.7. ``idled``: the cgroup did not use its allocation because its demand was lower."""
    runtime, gained = s.runtime, s.gained
    if gained > 0:  # 1
        runtime = runtime + gained  # 2
        gained = 0  # 3
    if idled and runtime > 0:  # 5
        runtime = 0  # 6
    runtime = quota + runtime  # 8
    return GlobalState(runtime, gained)  # 9: set_timer(now + period) is the caller's


def charge_credit(runtime: int, gained: int, cpuusage: int) -> tuple[int, int]:
    """Alg. 2.8 lines 3-12: charge ``cpuusage`` (taking from ``gained`` first) or credit it."""
    if cpuusage > 0:  # 3
        if cpuusage > gained:  # 4
            runtime = runtime - (cpuusage - gained)  # 5
            gained = 0  # 6
        else:
            gained = gained - cpuusage  # 8
    else:
        gained = gained + abs(cpuusage)  # 11
    return runtime, gained


def local_refill(s: LocalState, slice_: int) -> tuple[LocalState, int]:
    """Alg. 2.8. Returns the new state (cpuusage reset to 0) and ``amount`` moved to rt_remain."""
    amount = 0  # 1
    min_amount = slice_ - s.rt_remain  # 2
    runtime, gained = charge_credit(s.runtime, s.gained, s.cpuusage)  # 3-12
    # 13: cpuusage <- 0
    if runtime == 0 and gained > 0:  # 14 (as printed: exactly 0)
        refill = min(min_amount, gained)  # 15
        runtime = refill  # 16
        gained = gained - refill  # 17
    if runtime > 0:  # 19
        amount = min(runtime, min_amount)  # 20
        runtime = runtime - amount  # 21
    rt_remain = s.rt_remain + amount  # 23
    return replace(s, runtime=runtime, gained=gained, cpuusage=0, rt_remain=rt_remain), amount


@dataclass(frozen=True)
class Decision:
    quota: int  # runtime per CFS period to write for the next control interval
    carry: int  # part of the computed runtime that could not be written (debt below min / credit above max)
    gained: int
    force_drop: bool  # the debt takes the whole allocation: drop all of the container's packets
    runtime: int  # Alg. 2.7's refilled runtime for the whole interval


def control_step(*, quota: int, periods: int, alloc: int, used: int, carry: int, gained: int,
                 cpuusage: int, idled: bool, min_quota: int, max_quota: int,
                 max_credit: int | None = None) -> Decision:
    """One control interval of the user-space Iron controller.

    The kernel enforced ``alloc`` (sum of the quotas written for the ``periods`` CFS periods that
    ended) and the container ran ``used`` of it; ``carry`` is what the last step could not write.
    The pool's leftover ``alloc - used + carry`` is Alg. 2.7's ``runtime`` at the period end before
    Iron's charges; Alg. 2.8 lines 3-12 apply ``cpuusage`` (charged - gained, this interval), then
    Alg. 2.7 refills for the next interval (``quota`` per period times ``periods``). Positive runtime
    carried is capped at ``max_credit`` (default: one interval's quota) so an oversubscribed core
    cannot grow it without bound.
    """
    runtime = alloc - used + carry
    runtime, gained = charge_credit(runtime, gained, cpuusage)
    g = global_refill(GlobalState(runtime, gained), quota * periods, idled)
    want = g.runtime
    cap = quota * periods * 2 if max_credit is None else quota * periods + max_credit
    want = min(want, cap)
    per = want // periods if want >= 0 else -((-want) // periods)
    q = max(min_quota, min(max_quota, per))
    return Decision(quota=q, carry=want - q * periods, gained=g.gained, force_drop=want <= min_quota * periods,
                    runtime=g.runtime)
