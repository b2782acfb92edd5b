"""The host's noise floor for a penalty factor: the victim's baseline against itself (an A/A test).

    python -m nfvlab.iron.noisefloor experiments/iron-udp-receiver-pair.yaml \\
        --where send_rate_mbps=inf --where mode=ebpf [--pairs 20] [--scale quick] [--json out.json]

A penalty factor is the victim's time beside traffic over its time in a baseline run of the same
repetition. On a shared host the victim's job itself needs more or less CPU from one run to the next
(other guests on the hypervisor, caches, steal), which moves the ratio although nothing in the
accounting changed. This tool runs, per pair, the point's *baseline* twice back to back on the same
testbed (same Driver, same containers and neighbours, Iron loaded when the point has it, no traffic)
and reports the spread of the ratio second/first: what any penalty of this point inherits before
Iron does anything. It also gives the probability, resampled from the measured ratios, that a
median of ``--reps`` such ratios lands inside the claims' band [0.95, 1.05] when the truth is 1.

Per run it records the victim's wall time, its CPU (cpuacct), and the steal time of the victim's
core from /proc/stat (this kernel excludes steal from task run time: PARAVIRT_TIME_ACCOUNTING).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from pathlib import Path
from typing import Any

BAND = (0.95, 1.05)


def steal_ticks(cpu: int) -> int:
    """USER_HZ ticks the hypervisor stole from ``cpu`` (8th field of its /proc/stat line)."""
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0] == f"cpu{cpu}":
            return int(f[8])
    return 0


def quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    i = q * (len(s) - 1)
    lo = int(i)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (i - lo)


def p_median_in_band(ratios: list[float], reps: int, trials: int = 20000, seed: int = 1) -> float:
    """Bootstrap: how often the median of ``reps`` ratios drawn from ``ratios`` falls inside BAND."""
    rng = random.Random(seed)
    hits = sum(BAND[0] <= statistics.median(rng.choices(ratios, k=reps)) <= BAND[1] for _ in range(trials))
    return hits / trials


def summarize(ratios: list[float], reps: int, points: int) -> dict[str, float]:
    p1 = p_median_in_band(ratios, reps)
    return {"pairs": len(ratios), "median": statistics.median(ratios), "p5": quantile(ratios, 0.05),
            "p95": quantile(ratios, 0.95), "stdev": statistics.stdev(ratios) if len(ratios) > 1 else 0.0,
            "single_in_band": sum(BAND[0] <= r <= BAND[1] for r in ratios) / len(ratios),
            f"median_of_{reps}_in_band": p1, f"all_{points}_points_in_band": p1 ** points}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec", type=Path)
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--where", action="append", default=[], help="leaf=value filter on the points (repeatable)")
    ap.add_argument("--pairs", type=int, default=20, help="A/A pairs per point")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per point of the study the floor is for")
    ap.add_argument("--points", type=int, default=20, help="Iron points the study's claims judge at once")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    from nfvlab.experiments.iron_interference import Driver
    from nfvlab.iron.ledger import select_points
    from nfvlab.runner import DEFAULT_BUILD

    points = select_points(a.spec, a.scale, a.where, "the noise floor")
    # the baseline does not depend on the traffic: one point per distinct topology and Iron mode
    seen: dict[str, Any] = {}
    for pt in points:
        t = pt.params
        seen.setdefault(f"{t.topology.model_dump_json()}|{t.iron.mode}|{t.workload.model_dump_json()}", pt)
    driver = Driver(DEFAULT_BUILD)
    raw_root = Path(os.environ.get("TMPDIR", "/tmp")) / f"nfvlab-ir-noise-{os.getpid()}"
    out: list[dict[str, Any]] = []
    for pt in seen.values():
        runs: list[dict[str, float]] = []
        with driver.setup(pt.params) as topo, driver._iron(topo, pt.params):
            params = driver.sized(topo, pt.params, raw_root / f"p{pt.index}")  # victim_cpu_ms -> events
            for i in range(2 * a.pairs):
                s0 = steal_ticks(topo.victim_cpu)
                r = driver._victim_run(topo, params, raw_root / f"p{pt.index}" / f"r{i}", network=False)
                ticks = steal_ticks(topo.victim_cpu) - s0
                t = r["victim_time_s"]
                runs.append({"time_s": t, "share": r["_share"],
                             "steal_pct": 100 * ticks / os.sysconf("SC_CLK_TCK") / t if t > 0 else float("nan")})
                if i % 2:
                    ratio = runs[-1]["time_s"] / runs[-2]["time_s"]
                    print(f"  {pt.label} pair {i // 2}: {ratio:.3f} ({runs[-2]['time_s']:.3f} -> "
                          f"{runs[-1]['time_s']:.3f} s; steal {runs[-2]['steal_pct']:.1f} / "
                          f"{runs[-1]['steal_pct']:.1f} %)", flush=True)
        ratios = [runs[i + 1]["time_s"] / runs[i]["time_s"] for i in range(0, len(runs) - 1, 2)]
        summary = summarize(ratios, a.reps, a.points)
        print(f"{pt.label}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in summary.items()), flush=True)
        out.append({"point": pt.label, "summary": summary, "runs": runs, "ratios": ratios})
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
