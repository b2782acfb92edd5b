"""The runner: spec -> plan -> testbed -> workloads -> rows.

Points sharing a topology run under one testbed setup, in a stable order (first appearance in the
sweep). Each finished repetition is written atomically before the next starts; finished repetitions
are skipped on re-run. SIGTERM and Ctrl-C tear the testbed down and keep every finished row.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nfvlab import provenance
from nfvlab.experiments.registry import get_kind
from nfvlab.plan import Plan, Point, expand, flat_params
from nfvlab.results import ResultStore, atomic_write
from nfvlab.spec import Spec, load_spec, spec_hash

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = Path(os.environ.get("NFVLAB_RESULTS", REPO / "results"))
DEFAULT_BUILD = Path(os.environ.get("NFVLAB_BUILD", REPO / "build"))


class RunError(RuntimeError):
    pass


@dataclass
class RunSummary:
    spec: str
    total: int
    skipped: int
    done: int
    seconds: float


def point_slug(point: Point) -> str:
    text = "_".join(f"{k.split('.')[-1]}-{v}" for k, v in point.axes.items()) or "point"
    return f"p{point.index:03d}_" + re.sub(r"[^A-Za-z0-9_.-]", "", text)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the same teardown path runs for both.

    Only in this process: pyroute2 forks helpers (netns creation) that inherit the handler, and a
    forked child must never unwind into the runner's teardown code.
    """
    owner = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            os._exit(128 + signum)
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _group_by_topology(spec: Spec, todo: list[tuple[Point, int]]) -> list[list[tuple[Point, int]]]:
    kind = get_kind(spec.kind)
    groups: dict[tuple, list[tuple[Point, int]]] = {}
    for item in todo:
        groups.setdefault(kind.topology_key(item[0].params), []).append(item)
    return list(groups.values())


def _write_provenance(store: ResultStore, record: dict) -> None:
    path = store.dir / "provenance.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        doc = {"runs": []}
    runs = [r for r in doc.get("runs", []) if r.get("run_id") != record["run_id"]]
    doc = {"spec": record["spec"], "latest": record, "runs": [*runs, record]}
    atomic_write(path, json.dumps(doc, indent=2, default=str))


def run(spec_path: Path, scale: str | None = "quick", repetitions: int | None = None,
        results_root: Path = DEFAULT_RESULTS, build_dir: Path = DEFAULT_BUILD,
        console: Console | None = None) -> RunSummary:
    console = console or Console(stderr=True)
    spec = load_spec(spec_path)  # SpecError before anything is created
    if scale is not None and scale not in spec.scales:
        scale = None if not spec.scales else scale
    plan: Plan = expand(spec, scale, repetitions)
    store = ResultStore(results_root, spec.name)
    todo = [(pt, r) for pt in plan.points for r in range(plan.repetitions) if not store.has(pt.point_id, r)]
    skipped = plan.total_runs - len(todo)
    started = time.time()
    record = {
        "run_id": f"{int(started)}-{os.getpid()}",
        "start": provenance.now_iso(),
        **provenance.collect(spec_path, spec_hash(spec_path), scale),
        "points": len(plan.points),
        "repetitions": plan.repetitions,
        "skipped": skipped,
        "status": "running",
    }
    console.print(f"[bold]{spec.name}[/]: {len(plan.points)} points x {plan.repetitions} repetitions "
                  f"(scale {scale or 'default'}); {skipped} already done, {len(todo)} to run")
    if not todo:
        record |= {"end": provenance.now_iso(), "status": "complete", "done": 0}
        _write_provenance(store, record)
        return RunSummary(spec.name, plan.total_runs, skipped, 0, time.time() - started)
    if os.geteuid() != 0:
        raise RunError("the local testbed needs root (namespaces, cgroups, qdiscs): run as root")
    _write_provenance(store, record)
    kind = get_kind(spec.kind)
    driver = kind.driver_factory(build_dir)
    done = 0
    status = "failed"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    try:
        with _sigterm_as_interrupt(), Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(spec.name, total=len(todo))
            for group in _group_by_topology(spec, todo):
                with driver.setup(group[0][0].params) as topology:
                    for point, rep in group:
                        progress.update(task, description=f"{spec.name} {point.label} rep {rep}")
                        raw = store.raw_path(point_slug(point), rep)
                        t0 = time.time()
                        metrics = driver.measure(topology, point.params, raw)
                        row = {
                            "spec": spec.name,
                            "scale": scale,
                            "point_index": point.index,
                            **flat_params(point.params),
                            **{m: metrics.get(m) for m in spec.metrics},
                            "seconds": round(time.time() - t0, 3),
                            "finished_at": provenance.now_iso(),
                        }
                        store.write_row(point.point_id, rep, row)
                        done += 1
                        progress.advance(task)
                        summary = " ".join(f"{m}={_short(metrics.get(m))}" for m in spec.metrics[:3])
                        progress.console.print(f"  {point.label} rep {rep}: {summary}", soft_wrap=True,
                                               highlight=False)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        record |= {"end": provenance.now_iso(), "status": status, "done": done}
        _write_provenance(store, record)
    return RunSummary(spec.name, plan.total_runs, skipped, done, time.time() - started)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
