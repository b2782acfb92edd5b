"""Scope-aware partitioning (§3.3.1): for a vertex whose logical spec says `scope: auto`, the manager
sets the splitters upstream of it to the NF's coarsest scope (no state shared across its instances),
reads the per-downstream load from the splitters' `stats` counters over a window of packets, and
moves to progressively finer scopes until the load is even (max/mean <= 1 + tolerance). When no
scope is even it stays at the finest. The final scope is given in common to every upstream splitter.

Moving a split while traffic flows moves flows between instances; the state handover that keeps that
safe (R1-R3) is issue 12's. The loop's decisions are logged with their counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from nfvlab.chc.dag import NF_SCOPES, LogicalChain
from nfvlab.chc.dagrun import RunningChain


@dataclass(frozen=True)
class Step:
    vertex: str
    scope: str
    counts: list[int]  # packets per downstream instance over the window
    imbalance: float  # max / mean; 1.0 is perfectly even
    even: bool


def imbalance(counts: list[int]) -> float:
    total = sum(counts)
    return max(counts) * len(counts) / total if total else float("inf")


def choose_scope(vertex: str, scopes: tuple[str, ...], measure: Callable[[str], list[int]],
                 tolerance: float = 0.25) -> tuple[str, list[Step]]:
    """`scopes` fine -> coarse (as NFs declare them); tries coarse -> fine, stops at the first even one."""
    steps: list[Step] = []
    for scope in reversed(scopes):
        counts = measure(scope)
        x = imbalance(counts)
        steps.append(Step(vertex, scope, counts, x, x <= 1 + tolerance))
        if steps[-1].even:
            return scope, steps
    return scopes[0], steps  # nothing even: the finest scope spreads load the most


def window_measure(running: RunningChain, vertex: str, window: int,
                   timeout_s: float = 30.0) -> Callable[[str], list[int]]:
    """Sets every splitter upstream of `vertex` to a scope, then sums their per-instance counts once
    `window` packets went through them (or the root has finished and traffic stopped)."""
    splitters = running.dag.upstream_of(vertex)

    def measure(scope: str) -> list[int]:
        for s in splitters:  # set_rule zeroes the splitter's counters
            running.set_split(s, scope)
        deadline, last = time.monotonic() + timeout_s, -1
        while True:
            per = [running.split_counts(s.owner, s.kind) for s in splitters]
            counts = [sum(c) for c in zip(*per, strict=True)]
            total = sum(counts)
            if total >= window or time.monotonic() > deadline:
                return counts
            if not running.root_running() and total == last:  # the trace ended inside the window
                return counts
            last = total
            time.sleep(0.02)

    return measure


def manager(chain: LogicalChain, window: int = 400, tolerance: float = 0.25) -> Callable[[RunningChain], None]:
    """The loop for every `scope: auto` vertex of `chain`, as a dagrun.run_chain manager."""
    auto = [v for v in chain.path() + chain.off_path() if chain.vertices[v].scope == "auto"]

    def run(running: RunningChain) -> None:
        for v in auto:
            scope, steps = choose_scope(v, NF_SCOPES[chain.vertices[v].nf], window_measure(running, v, window),
                                        tolerance)
            for s in running.dag.upstream_of(v):
                running.set_split(s, scope)
            running.log += [asdict(s) for s in steps] + [{"vertex": v, "chosen": scope}]

    return run
