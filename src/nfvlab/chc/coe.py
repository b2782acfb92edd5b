"""The chain-output-equivalence (COE) checker (issue 12, part 6; dissertation §3.4).

A chain run under a fault is compared with an ideal run of the same trace: one instance, no fault,
the same model. Equivalence means
  * state: every NF state object in the store is identical after both runs (instance ids masked);
  * outputs: no clock delivered twice, none delivered that the ideal run did not deliver, the same
    frame bytes per clock, per-flow order kept (clocks of one flow arrive increasing), and none missing
    beyond what the fault explains: a killed instance may lose the outputs of packets it had already
    asked the root to delete (the delete request leaves before the output, §3.4.4) -- at most one
    output batch, and only packets routed to the killed instance;
  * decisions: each NF's report (counters, alerts, blocks, mappings it reports) equals the ideal's.

After a root failover the new root's clocks start past a gap (it continues at the persisted clock +
the persist period, never at a clock the old root used). Clock values are labels -- no output byte
and no state object holds one -- so the new root's clocks are shifted back by the gap before the
comparison. A failover root that reused clocks (a gap below zero) is compared as it is: its packets
collide with the old root's in the clock log and at the sink, which the comparison must catch.

Seeds: `fault_for_seed` derives the fault (kind, instance, packet index, delay) from a seed, so
`nfvlab chc fault --seed N` reproduces any run of the suite.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import dpkt

from nfvlab.chc.fault_kinds import SUITE_KINDS
from nfvlab.chc.faults import Fault, RunResult

OUTPUT_BATCH = 32  # chc-nf sends one batch of delete requests, then the batch's outputs
COUNTER_MASK = (1 << 56) - 1  # the clock's packet counter (the root id is in the top 8 bits)


@dataclass
class Verdict:
    ok: bool
    problems: list[str] = field(default_factory=list)
    numbers: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        head = "PASS" if self.ok else "FAIL"
        nums = " ".join(f"{k}={v}" for k, v in self.numbers.items())
        return "\n".join([f"{head} {nums}", *(f"  - {p}" for p in self.problems)])


def fault_for_seed(seed: int, packets: int, instances: int = 1, kinds: tuple[str, ...] = SUITE_KINDS) -> Fault:
    """The suite's fault for `seed`: a kind, an instance, a packet index in the middle 80 % of the trace
    and (for delays) 20-300 ms."""
    rng = random.Random(seed)
    kind = rng.choice(kinds)
    return Fault(kind=kind, instance=rng.randint(1, instances), at_packet=rng.randint(packets // 10, packets * 9 // 10),
                 delay_ms=float(rng.randint(20, 300)))


def _flow(frame: bytes) -> tuple:
    """Direction-independent 5-tuple of an input frame (the per-flow order is that of the input)."""
    ip = dpkt.ethernet.Ethernet(frame).data
    if not isinstance(ip, dpkt.ip.IP) or not hasattr(ip.data, "sport"):
        return ("other",)
    a, b = (ip.src, ip.data.sport), (ip.dst, ip.data.dport)
    return (ip.p, *sorted([a, b]))


def relabeled_outputs(run: RunResult) -> list[tuple[int, bytes]]:
    """The run's outputs with a failover root's clocks shifted back by the gap it left."""
    if run.clock_gap is None or run.clock_gap[1] < run.clock_gap[0]:
        return run.outputs
    old, start = run.clock_gap
    return [(c - (start - old) if c & COUNTER_MASK > start else c, f) for c, f in run.outputs]


def check(ideal: RunResult, run: RunResult, inputs: dict[int, bytes], killed_clocks: set[int] | None = None) -> Verdict:
    """Compare `run` (under its fault) with `ideal`. inputs: clock -> the root's input frame.
    killed_clocks: the clocks the root routed to a killed instance (None: all of them)."""
    problems: list[str] = []
    ideal_out = dict(ideal.outputs)
    outputs = relabeled_outputs(run)
    seen: dict[int, int] = {}
    for clock, _ in outputs:
        seen[clock] = seen.get(clock, 0) + 1
    dups = {c: n for c, n in seen.items() if n > 1}
    if dups:
        problems.append(f"{sum(n - 1 for n in dups.values())} duplicate outputs (clocks {sorted(dups)[:5]} ...)")
    extra = sorted(set(seen) - set(ideal_out))
    if extra:
        problems.append(f"{len(extra)} outputs the ideal run did not emit (clocks {extra[:5]})")
    missing = sorted(set(ideal_out) - set(seen))
    explained: list[int] = []
    if run.fault.kind.startswith("kill-nf"):
        explained = [c for c in missing if killed_clocks is None or c in killed_clocks]
    unexplained = [c for c in missing if c not in set(explained)]
    if len(explained) > OUTPUT_BATCH:  # more than the one batch in flight at the kill
        unexplained += explained[OUTPUT_BATCH:]
        explained = explained[:OUTPUT_BATCH]
    if unexplained:
        problems.append(f"{len(unexplained)} outputs missing that the fault does not explain "
                        f"(clocks {unexplained[:5]})")
    differ = [c for c, f in outputs if c in ideal_out and ideal_out[c] != f]
    if differ:
        problems.append(f"{len(set(differ))} outputs differ from the ideal run's bytes "
                        f"(clocks {sorted(set(differ))[:5]})")
    last: dict[tuple, int] = {}
    reordered = 0
    for clock, _ in outputs:
        flow = _flow(inputs[clock]) if clock in inputs else ("?",)
        if clock < last.get(flow, -1):
            reordered += 1
        last[flow] = max(clock, last.get(flow, -1))
    if reordered:
        problems.append(f"{reordered} outputs out of per-flow order")
    state_diff = sorted(k for k in set(ideal.state) | set(run.state) if ideal.state.get(k) != run.state.get(k))
    if state_diff:
        shown = "; ".join(f"{k}: ideal {ideal.state.get(k)!r:.60} vs {run.state.get(k)!r:.60}" for k in state_diff[:4])
        problems.append(f"{len(state_diff)} state objects differ: {shown}")
    ideal_rep = ideal.reports[0] if ideal.reports else {}
    for i, rep in enumerate(run.reports):
        if rep != ideal_rep:
            problems.append(f"instance {i + 1}'s decisions differ: {rep} vs ideal {ideal_rep}")
    numbers = {"outputs": len(run.outputs), "ideal_outputs": len(ideal_out),
               "duplicates": sum(n - 1 for n in dups.values()),
               "missing_explained": len(explained), "missing": len(unexplained), "state_objects": len(ideal.state),
               "state_diff": len(state_diff), "sink_suppressed": int(run.sink.get("duplicates", 0)),
               "store_repeats": int(run.sink.get("store_duplicates", 0)),
               "replayed": int(run.root.get("replayed", 0))}
    if run.clock_gap is not None:
        numbers["clock_gap"] = run.clock_gap[1] - run.clock_gap[0]
        if run.root.get("persist_every"):  # a failover root that recovered its clock from the store
            numbers["root_clock_read_us"] = round(float(run.root["clock_read_us"]))
            numbers["root_recovery_us"] = round(float(run.root["recovery_us"]))
    return Verdict(not problems, problems, numbers)
