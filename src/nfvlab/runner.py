"""The runner: spec -> plan -> testbed -> workloads -> rows.

Points sharing a topology run under one testbed setup, in a stable order (first appearance in the
sweep). Each finished repetition is written atomically before the next starts. SIGTERM and Ctrl-C
tear the testbed down and keep every finished row.

Generations (nfvlab.stamps): every row carries the stamps it was measured with. A re-run reuses a
stored row only when its generation stamps (code_hash, testbed_hash, and for points that use Iron the
calibration_id) equal the current ones; a stale row is named with its reasons and measured again,
unless ``keep_stale`` (``--keep-stale``), which keeps it and records that in the row
(``kept_stale_by``, ``kept_stale_reasons``) and in the run's provenance entry. Raw output is keyed
like the rows (``raw/<slug>_<point hash>/r<rep>``). provenance.json keeps every run (``runs``).

Failures (nfvlab.failures): a repetition whose driver raises, or that lacks a metric the spec lists,
writes no row; it is printed, recorded in the run's provenance entry and in failures.json, and the run
goes on with the other points (the rest of its topology group on a fresh testbed setup). At the end
``run`` raises RunFailed (``nfvlab run`` exits 1). Iron's calibration is made current (measured when
missing or stale) before the first point that uses it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nfvlab import provenance, stamps
from nfvlab.experiments.registry import get_kind
from nfvlab.failures import PointFailed, missing_metrics
from nfvlab.plan import Plan, Point, expand, flat_params
from nfvlab.results import ResultStore, atomic_write
from nfvlab.spec import Spec, load_spec, spec_hash
from nfvlab.testbeds.local import TestbedBusy

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = Path(os.environ.get("NFVLAB_RESULTS", REPO / "results"))
DEFAULT_BUILD = Path(os.environ.get("NFVLAB_BUILD", REPO / "build"))


class RunError(RuntimeError):
    pass


class RunFailed(RunError):
    """Some points failed (no rows written for them); every other point ran. Raised at the end."""

    def __init__(self, summary: RunSummary):
        self.summary = summary
        lines = [f"  {f['point']} rep {f['repetition']}: {f['error']}" for f in summary.failures[:20]]
        more = len(summary.failures) - len(lines)
        super().__init__(f"{summary.spec}: {len(summary.failures)} repetition(s) failed, no rows written for "
                         f"them (results/{summary.spec}/failures.json):\n" + "\n".join(lines)
                         + (f"\n  ... and {more} more" if more > 0 else ""))


@dataclass
class RunSummary:
    spec: str
    total: int
    skipped: int
    done: int
    seconds: float
    stale: int = 0  # stored rows found stale and measured again
    kept_stale: int = 0  # stale rows kept because of --keep-stale
    failures: list[dict[str, Any]] = field(default_factory=list)


def point_slug(point: Point) -> str:
    """Readable and keyed like the row: index, swept values, then the point's hash (results.ResultStore)."""
    text = "_".join(f"{k.split('.')[-1]}-{v}" for k, v in point.axes.items()) or "point"
    key = ResultStore.point_hash(point.point_id)[:8]
    return f"p{point.index:03d}_" + re.sub(r"[^A-Za-z0-9_.-]", "", text) + f"_{key}"


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


# A repetition can fail for a reason of the moment (a launcher starved by a flood, a busy host): one
# more try on a fresh testbed keeps a long study going; a second failure is a failure.
RETRIES = 1


def _write_failures(store: ResultStore, new: list[dict[str, Any]]) -> None:
    """results/<spec>/failures.json: every failed repetition of every run (newest last)."""
    path = store.dir / "failures.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        old = []
    keys = {(f["run_id"], f["point_id"], f["repetition"]) for f in new}
    kept = [f for f in old if (f.get("run_id"), f.get("point_id"), f.get("repetition")) not in keys]
    atomic_write(path, json.dumps([*kept, *new], indent=1, default=str))


def _report_stale(console: Console, items: list[tuple[Point, int, list[str]]], kept: bool) -> None:
    """Say which stored rows are stale and why, grouped by reason."""
    by_reason: dict[str, list[str]] = {}
    for point, rep, reasons in items:
        by_reason.setdefault("; ".join(reasons), []).append(f"{point.label} rep {rep}")
    action = "kept anyway (--keep-stale; recorded in the rows and provenance)" if kept else "measuring them again"
    for reason, which in by_reason.items():
        shown = ", ".join(which[:6]) + (f", ... ({len(which)} in all)" if len(which) > 6 else "")
        console.print(f"[yellow]stale rows[/] ({reason}): {shown}: {action}", highlight=False)


def _current_calibration() -> tuple[Any, str | None]:
    from nfvlab.iron import calibration

    try:
        return calibration.current(), None
    except calibration.CalibrationStale as e:
        return None, "; ".join(e.reasons)


def run(spec_path: Path, scale: str | None = "quick", repetitions: int | None = None,
        results_root: Path = DEFAULT_RESULTS, build_dir: Path = DEFAULT_BUILD,
        console: Console | None = None, keep_stale: bool = False,
        calibrate: Callable[[], dict[str, Any]] | None = None, testbed: str | None = None,
        retries: int = RETRIES) -> RunSummary:
    """Run what is missing or stale of a spec's plan. Raises RunFailed at the end when repetitions
    failed (the others ran). A failed repetition is measured again up to ``retries`` times, each on a
    fresh testbed after the rest of its group; failures.json keeps the failed attempt either way.
    ``calibrate`` replaces Iron's calibration measurement (tests).
    ``testbed``: None/"local" for this machine, or an ssh inventory file (docs/remote.md)."""
    console = console or Console(stderr=True)
    spec = load_spec(spec_path)  # SpecError before anything is created
    if (testbed or spec.testbed) == "vm":  # an explicit --testbed (the guest's "local") wins over the spec's
        return _run_vm(spec, spec_path, scale, repetitions, console)
    inventory = _load_inventory(testbed)  # InventoryError (as RunError) before anything is created too
    if scale is not None and scale not in spec.scales:
        scale = None if not spec.scales else scale
    plan: Plan = expand(spec, scale, repetitions)
    store = ResultStore(results_root, spec.name)
    started = time.time()
    run_id = stamps.new_run_id()
    base = stamps.current_stamps(spec, run_id)
    if inventory is not None:  # rows measured on an ssh testbed belong to its inventory, not local.yaml
        base["testbed_hash"] = stamps.testbed_hash(Path(testbed))
    uses_cal = {pt.index: stamps.point_uses_calibration(spec, pt.params) for pt in plan.points}
    cal, cal_problem = _current_calibration() if any(uses_cal.values()) else (None, None)

    def point_stamps(point: Point) -> dict[str, Any]:
        out = dict(base)
        if uses_cal[point.index] and cal is not None:
            out |= stamps.calibration_stamps(cal)
        return out

    todo: list[tuple[Point, int]] = []
    stale: list[tuple[Point, int, list[str]]] = []
    for pt in plan.points:
        for r in range(plan.repetitions):
            row = store.row(pt.point_id, r)
            if row is None:
                todo.append((pt, r))
                continue
            reasons = stamps.stale_reasons(row, point_stamps(pt))
            if uses_cal[pt.index] and cal is None:
                reasons.append(f"calibration not current ({cal_problem})")
            if reasons:
                stale.append((pt, r, reasons))
                if not keep_stale:
                    todo.append((pt, r))
    skipped = plan.total_runs - len(todo)
    if stale:
        _report_stale(console, stale, kept=keep_stale)
    if keep_stale:
        for pt, r, reasons in stale:  # the row itself says it was kept stale, by which run, and why
            store.update_row(pt.point_id, r, {"kept_stale_by": run_id, "kept_stale_reasons": "; ".join(reasons)})
        if stale:
            store.rebuild_csv()
    record = {
        "run_id": run_id,
        "start": provenance.now_iso(),
        **provenance.collect(spec_path, spec_hash(spec_path), scale),
        "stamps": base,
        "points": len(plan.points),
        "repetitions": plan.repetitions,
        "skipped": skipped,
        "keep_stale": keep_stale,
        "stale": [{"point": p.label, "point_id": p.point_id, "repetition": r, "reasons": why} for p, r, why in stale],
        "failures": [],
        "status": "running",
    }
    kept = len(stale) if keep_stale else 0
    console.print(f"[bold]{spec.name}[/]: {len(plan.points)} points x {plan.repetitions} repetitions "
                  f"(scale {scale or 'default'}); {skipped} current{f' ({kept} kept stale)' if kept else ''}, "
                  f"{len(todo)} to run")
    summary = RunSummary(spec.name, plan.total_runs, skipped, 0, 0.0, stale=0 if keep_stale else len(stale),
                         kept_stale=kept)
    if not todo:
        record |= {"end": provenance.now_iso(), "status": "complete", "done": 0}
        _write_provenance(store, record)
        summary.seconds = time.time() - started
        return summary
    if inventory is None and os.geteuid() != 0:
        raise RunError("the local testbed needs root (namespaces, cgroups, qdiscs): run as root")
    if cal is None and any(uses_cal[pt.index] for pt, _ in todo):
        from nfvlab.iron import calibration  # measured on the local testbed under its lock

        cal = calibration.ensure_current(calibrate, log=lambda m: console.print(f"[yellow]{m}[/]", highlight=False))
    if cal is not None:
        record["calibration"] = stamps.calibration_stamps(cal)
    _write_provenance(store, record)
    kind = get_kind(spec.kind)
    if inventory is None:
        driver = kind.driver_factory(build_dir)
    else:
        driver = _remote_driver(kind, build_dir, inventory, record, console)
        _write_provenance(store, record)
    failures: list[dict[str, Any]] = summary.failures
    attempts: dict[tuple[str, int], int] = {}  # failed attempts per (point, repetition) in this run
    retrying: dict[tuple[str, int], dict[str, Any]] = {}  # their failure records, until the retry ends
    record["recovered"] = []
    status = "failed"

    def fail(point: Point | None, rep: int | None, err: BaseException, raw: Path | None = None,
             final: bool = False) -> None:
        f = {"run_id": run_id, "point": point.label if point else "(testbed teardown)",
             "point_index": point.index if point else None, "point_id": point.point_id if point else None,
             "repetition": rep, "reason": getattr(err, "reason", type(err).__name__),
             "error": f"{type(err).__name__}: {err}", "at": provenance.now_iso(), "raw": str(raw) if raw else None}
        key = (point.point_id, rep) if point is not None and rep is not None else None
        if key is not None:
            attempts[key] = attempts.get(key, 0) + 1
        f["attempt"] = attempts.get(key, 1)
        if key is not None and f["attempt"] <= retries and not final:
            f["retried"] = True
            retrying[key] = f
            _write_failures(store, [f])
            console.print(f"[yellow]  FAILED[/] {f['point']} rep {rep}: {f['error']} (retried at the end of its "
                          f"group on a fresh testbed)", highlight=False)
            return
        retrying.pop(key, None)
        failures.append(f)
        record["failures"] = failures
        _write_failures(store, [f])
        console.print(f"[red]  FAILED[/] {f['point']} rep {rep}: {f['error']} (no row written)", highlight=False)

    def recovered(point: Point, rep: int) -> None:
        f = retrying.pop((point.point_id, rep), None)
        if f is not None:  # the row exists now; the failed attempt stays on record, marked
            f["recovered"] = True
            record["recovered"].append(f)
            _write_failures(store, [f])

    def measure_one(topology: Any, point: Point, rep: int) -> bool:
        raw = store.raw_path(point_slug(point), rep, fresh=True)
        t0 = time.time()
        try:
            metrics = driver.measure(topology, point.params, raw)
            missing = missing_metrics(metrics, spec.metrics)
            if missing:
                raise PointFailed("metric_missing", f"the driver reported no value for {missing}")
        except (KeyboardInterrupt, TestbedBusy):
            raise
        except Exception as e:  # noqa: BLE001 - every failure of a repetition is recorded, none is a row
            fail(point, rep, e, raw)
            return False
        row = {
            "spec": spec.name,
            "scale": scale,
            "point_index": point.index,
            **flat_params(point.params),
            **{m: metrics.get(m) for m in spec.metrics},
            "seconds": round(time.time() - t0, 3),
            "finished_at": provenance.now_iso(),
            **point_stamps(point),
        }
        store.write_row(point.point_id, rep, row)
        recovered(point, rep)
        summary.done += 1
        label = " ".join(f"{m}={_short(metrics.get(m))}" for m in spec.metrics[:3])
        console.print(f"  {point.label} rep {rep}: {label}", soft_wrap=True, highlight=False)
        return True

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    try:
        with _sigterm_as_interrupt(), Progress(*columns, console=console, transient=False) as progress:
            planned = len(todo)
            task = progress.add_task(spec.name, total=planned)
            for group in _group_by_topology(spec, todo):
                remaining = list(group)
                while remaining:  # a failed repetition gets the rest of its group a fresh testbed
                    current: tuple[Point, int] | None = None
                    try:
                        with driver.setup(remaining[0][0].params) as topology:
                            while remaining:
                                current = remaining.pop(0)
                                progress.update(task, description=f"{spec.name} {current[0].label} rep {current[1]}")
                                item, current = current, None
                                ok = measure_one(topology, *item)
                                progress.advance(task)
                                if not ok:
                                    if (item[0].point_id, item[1]) in retrying:
                                        remaining.append(item)
                                        planned += 1
                                        progress.update(task, total=planned)
                                    break
                    except (KeyboardInterrupt, TestbedBusy):
                        raise
                    except Exception as e:  # noqa: BLE001 - setup or teardown failed
                        if current is not None:  # setup failed: none of the group can run
                            remaining.insert(0, current)
                        if not remaining:
                            fail(None, None, e)
                        for point, rep in remaining:  # the testbed itself failed: no retry on it
                            fail(point, rep, e, final=True)
                            progress.advance(task)
                        remaining = []
        status = "failed" if failures else "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except TestbedBusy:
        status = "testbed_busy"  # another run holds the lock: nothing measured, run again later
        raise
    finally:
        record |= {"end": provenance.now_iso(), "status": status, "done": summary.done, "failures": failures}
        _write_provenance(store, record)
    summary.seconds = time.time() - started
    if failures:
        raise RunFailed(summary)
    return summary

def _run_vm(spec: Spec, spec_path: Path, scale: str | None, repetitions: int | None,
            console: Console) -> RunSummary:
    from nfvlab.vmrun import VmRunError, run_in_vm

    if scale is not None and scale not in spec.scales:
        scale = None if not spec.scales else scale
    plan = expand(spec, scale, repetitions)
    started = time.time()
    try:
        _, latest = run_in_vm(spec, spec_path, scale, repetitions, log=console.print)
    except VmRunError as e:
        raise RunError(str(e)) from e
    return RunSummary(spec.name, plan.total_runs, int(latest.get("skipped", 0)), int(latest.get("done", 0)),
                      time.time() - started)


def _load_inventory(testbed: str | None) -> Any:
    if testbed in (None, "", "local"):
        return None
    from nfvlab.testbeds.inventory import InventoryError, load_inventory

    try:
        return load_inventory(Path(testbed))
    except InventoryError as e:
        raise RunError(str(e)) from None


def _remote_driver(kind: Any, build_dir: Path, inventory: Any, record: dict, console: Console) -> Any:
    """The kind's driver on an ssh testbed (a fresh SshTestbed per topology); the nodes' facts go
    into the run's provenance."""
    import inspect

    from nfvlab.testbeds.testbed import SshTestbed

    if "testbed" not in inspect.signature(kind.driver_factory).parameters:
        raise RunError(f"kind {kind.name} cannot run on an ssh testbed yet (its driver builds the local testbed "
                       f"itself; docs/remote.md)")
    with SshTestbed(inventory) as tb:
        tb.check()
        console.print(f"testbed [bold]{tb.name}[/]: " + ", ".join(f"{n.name} {list(n.roles)}" for n in tb.nodes))
        record["testbed"] = tb.facts()
    return kind.driver_factory(build_dir, testbed=lambda: SshTestbed(inventory))


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
