"""How likely a study puts every Iron point's median inside the claims' band, from its own repetitions.

    python -m nfvlab.iron.bandchance results/ [--reps 5] [--runs 3] [--json out.json]

Issue 10's "every Iron point's median penalty within [0.95, 1.05]" is one draw per study. This
resamples each Iron point's measured penalties (rows with ``mode == ebpf`` of every
``iron-*/results.csv`` under the given directories), takes the median of ``--reps`` of them, and
counts how often *every* point lands in the band at once:

* **as measured**: the chance a rerun of this study passes, if the host behaves as in these rows;
* **centred**: each point's penalties divided by their own median first, so every point is exactly
  right on average and only its spread is left: the best any accounting can do with this much
  noise per repetition (the A/A noise floor of ``nfvlab.iron.noisefloor``, per point, from a real run).

With five rows per point the resampling is coarse (a resampled median is the point's extreme row
about 6 % of the time), so the centred chance is also given from a normal model of the point's
spread (a median of n has about 1.2533 sd / sqrt(n)). ``--runs`` raises them to the power of that
many consecutive studies.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from .noisefloor import BAND


@dataclass(frozen=True)
class PointChance:
    spec: str
    point: str
    n: int
    median: float
    stdev_pct: float
    in_band_as_measured: float
    in_band_centred: float
    in_band_normal: float  # centred, from a normal model of the spread instead of resampling


def iron_points(dirs: list[Path]) -> dict[tuple[str, str], list[float]]:
    """(spec, point_id) -> the Iron penalties of that point, from every results.csv under ``dirs``."""
    out: dict[tuple[str, str], list[float]] = {}
    for d in dirs:
        for f in sorted(d.glob("**/results.csv")):
            df = pd.read_csv(f)
            if "mode" not in df or "penalty_factor" not in df:
                continue
            df = df[(df["mode"] == "ebpf") & df["penalty_factor"].notna()]
            for (spec, pid), g in df.groupby(["spec", "point_id"]):
                out.setdefault((str(spec), str(pid)), []).extend(g["penalty_factor"].tolist())
    return out


def normal_in_band(stdev_rel: float, reps: int) -> float:
    """P(median of ``reps`` in BAND) for a point right on average with relative spread ``stdev_rel``."""
    sd = 1.2533 * stdev_rel / math.sqrt(reps)
    if sd == 0:
        return 1.0
    cdf = [0.5 * (1 + math.erf((edge - 1.0) / (sd * math.sqrt(2)))) for edge in BAND]
    return cdf[1] - cdf[0]


def label(point_id: str, varying: set[str]) -> str:
    """The parts of a point id (k=v,k=v) that differ between the points of its spec."""
    parts = [kv for kv in point_id.split(",") if kv.partition("=")[0] in varying]
    return ",".join(parts) or point_id


def varying_keys(points: list[tuple[str, str]]) -> dict[str, set[str]]:
    seen: dict[str, dict[str, set[str]]] = {}
    for spec, pid in points:
        for kv in pid.split(","):
            k, _, v = kv.partition("=")
            seen.setdefault(spec, {}).setdefault(k, set()).add(v)
    return {spec: {k for k, vs in kvs.items() if len(vs) > 1} for spec, kvs in seen.items()}


def chances(points: dict[tuple[str, str], list[float]], reps: int, trials: int = 20000,
            seed: int = 1) -> tuple[list[PointChance], float, float]:
    """Per point and for all points at once: P(median of ``reps`` resampled penalties in BAND), as
    measured and centred on each point's own median."""
    rng = random.Random(seed)
    keys = [k for k, v in points.items() if len(v) >= 2]
    med = {k: statistics.median(points[k]) for k in keys}
    hits = {k: [0, 0] for k in keys}
    all_hits = [0, 0]
    for _ in range(trials):
        every = [True, True]
        for k in keys:
            m = statistics.median(rng.choices(points[k], k=reps))
            for i, value in enumerate((m, m / med[k])):
                inside = BAND[0] <= value <= BAND[1]
                hits[k][i] += inside
                every[i] = every[i] and inside
        all_hits[0] += every[0]
        all_hits[1] += every[1]
    per = []
    for k in keys:
        rel = statistics.stdev(points[k]) / statistics.fmean(points[k])
        per.append(PointChance(spec=k[0], point=k[1], n=len(points[k]), median=med[k], stdev_pct=100 * rel,
                               in_band_as_measured=hits[k][0] / trials, in_band_centred=hits[k][1] / trials,
                               in_band_normal=normal_in_band(rel, reps)))
    return per, all_hits[0] / trials, all_hits[1] / trials


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", type=Path, nargs="+", help="results directories (searched for iron-*/results.csv)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per point of the study judged (its median)")
    ap.add_argument("--runs", type=int, default=3, help="consecutive studies that must all pass")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    points = iron_points(a.dirs)
    if not points:
        where = ", ".join(map(str, a.dirs))
        raise SystemExit(f"no Iron rows (mode ebpf, penalty_factor) in any results.csv under {where}")
    per, measured, centred = chances(points, a.reps)
    normal = math.prod(p.in_band_normal for p in per)
    varying = varying_keys(list(points))
    print(f"median of {a.reps} in band: as measured / centred (resampled) / centred (normal model)")
    for p in sorted(per, key=lambda p: (p.spec, p.point)):
        print(f"  {p.spec} {label(p.point, varying[p.spec])}: median {p.median:.3f}, stdev {p.stdev_pct:.1f} % "
              f"(n {p.n}): {p.in_band_as_measured:.2f} / {p.in_band_centred:.2f} / {p.in_band_normal:.2f}")
    print(f"all {len(per)} Iron points in band at once: {measured:.3f} as measured, {centred:.3f} centred "
          f"({normal:.3f} normal model); {a.runs} studies in a row: {measured ** a.runs:.4f} / "
          f"{centred ** a.runs:.4f} ({normal ** a.runs:.4f})")
    if a.json:
        a.json.write_text(json.dumps({"points": [asdict(p) for p in per], "all_as_measured": measured,
                                      "all_centred": centred, "all_normal": normal, "reps": a.reps,
                                      "runs": a.runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
