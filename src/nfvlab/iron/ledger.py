"""The victim core's ledger for one repetition: where every microsecond of it went.

    python -m nfvlab.iron.ledger experiments/iron-drop-mechanism.yaml --where drop=tc \\
        --where send_rate_mbps=inf [--reps 3] [--scale quick] [--json out.json]

Runs the chosen points of an ``iron-interference`` spec on the local testbed exactly as the runner
does (same Driver, same baseline/network pair per repetition) and, around each victim run, samples

* the core: ``/proc/stat`` idle, root ``cpuacct.usage_percpu`` (every task's time, interrupts included:
  this kernel has no IRQ_TIME_ACCOUNTING), ``ksoftirqd/<cpu>``'s run time;
* every container: ``cpuacct.usage_percpu[cpu]``;
* Iron's BPF counters (charged, gained, own, softirq in own context = ``naive_ns``, hard-IRQ time in
  its context = ``irq_ns`` with the hidden per-IRQ cost added, IRQ counts).

The core's time splits into victim + other containers + ksoftirqd + other tasks (foreign) + idle; the
victim's own time into its job, the softirq work it did (for others), the visible hard-IRQ time and
the hidden per-IRQ cost. The victim's job needs the same CPU in both runs (a fixed sysbench job), so
the baseline run's victim CPU minus what it absorbed there is the job's CPU, and in the network run

    absorbed_true = victim CPU - job CPU          (all the time the victim lost to interrupts)
    over_credit   = gained - absorbed_true        (> 0: Iron handed back more than the victim lost)
    hidden_true   = absorbed_true - softirq - visible hard-IRQ time  (what no tracepoint saw)

``over_credit`` says whether extra CPU came from the accounting (credit without loss); the victim's
CPU against its allotment (its allocation per period x periods + gained - charged) says whether it
came from the controller or the kernel (CPU beyond what Iron granted). The allotment is the
allocation, not the mean *written* quota: every write refills the kernel pool, so what the victim ran
between the period timer and the write is given on top of the written value, and the controller's
loop lowers the next written quota by exactly that (docs/iron.md, "The ledger's allotment").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nfvlab.testbeds.model import Topology
from nfvlab.workloads.coreshare import CG_CPUACCT, ksoftirqd_ns, percpu_ns


def _idle_ticks(cpu: int) -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0] == f"cpu{cpu}":
            return int(f[4]) + int(f[5])
    return 0


def _tasks_ns(cpu: int) -> dict[str, int]:
    """Run time of every task allowed on ``cpu`` that is in no nfvlab cgroup: "comm[pid] cgroup" -> ns.
    (schedstat counts all CPUs; tasks allowed on the victim core are the candidates for its foreign
    time.)"""
    out: dict[str, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            try:
                if cpu not in os.sched_getaffinity(int(tid)):
                    continue
                cg = next((line.split(":", 2)[2] for line in Path(f"{base}/cgroup").read_text().splitlines()
                           if "cpuacct" in line.split(":")[1]), "?")
                if "/nfvlab/" in cg:
                    continue
                key = f"{Path(f'{base}/comm').read_text().strip()}[{tid}] {cg}"
                out[key] = int(Path(f"{base}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError, StopIteration):
                continue
    return out


@dataclass
class CoreSample:
    t_ns: int
    root_ns: int
    idle_ticks: int
    ksoftirqd_ns: int
    containers_ns: dict[str, int]
    iron: dict[str, float] = field(default_factory=dict)
    tasks_ns: dict[str, int] = field(default_factory=dict)


def sample(topo: Topology, iron: Any = None, tasks: bool = False) -> CoreSample:
    cpu = topo.victim_cpu
    return CoreSample(
        t_ns=time.monotonic_ns(),
        root_ns=percpu_ns(CG_CPUACCT, cpu),
        idle_ticks=_idle_ticks(cpu),
        ksoftirqd_ns=ksoftirqd_ns(cpu),
        containers_ns={c.name: percpu_ns(Path(c.cgroup.cpuacct), cpu) for c in topo.containers},
        iron=dict(iron.stats()) if iron is not None else {},
        tasks_ns=_tasks_ns(cpu) if tasks else {},
    )


@dataclass
class Ledger:
    """One victim run, in ms (counts as counts). ``job_ms`` is filled from the baseline run."""

    network: bool
    wall_ms: float
    victim_ms: float
    others_ms: float
    ksoftirqd_ms: float
    foreign_ms: float  # other tasks on the core (not ours, not ksoftirqd)
    idle_ms: float
    idle_stat_ms: float  # /proc/stat's idle + iowait, for comparison (tick resolution)
    victim_softirq_ms: float = math.nan  # softirq time in the victim's context (any packets)
    victim_irq_ms: float = math.nan  # hard-IRQ time in its context, incl. the assumed hidden cost
    victim_hidden_assumed_ms: float = math.nan  # the part of victim_irq_ms that is irq/timer_extra_ns
    victim_irqs: float = math.nan
    victim_timer_irqs: float = math.nan
    victim_gained_ms: float = math.nan
    victim_charged_ms: float = math.nan
    others_charged_ms: float = math.nan
    others_gained_ms: float = math.nan
    others_own_ms: float = math.nan
    unowned_irq_ms: float = math.nan
    unowned_rx_ms: float = math.nan
    drops: float = math.nan
    victim_throttled_ms: float = math.nan
    victim_quota_mean_ms: float = math.nan
    victim_mid_writes: float = math.nan
    victim_relearns: float = math.nan
    victim_lock_err_p90_us: float = math.nan
    victim_lock_err_max_us: float = math.nan
    victim_late_wakeups: float = math.nan
    job_ms: float = math.nan
    period_ms: float = 100.0
    quota_ms: float = math.nan  # the victim's allocation per period (its nominal quota)
    per_container_ms: dict[str, float] = field(default_factory=dict)
    top_foreign: list[tuple[str, float]] = field(default_factory=list)  # tasks outside nfvlab's cgroups, ms

    # --- derived -----------------------------------------------------------------------------
    @property
    def absorbed_true_ms(self) -> float:
        return self.victim_ms - self.job_ms

    @property
    def over_credit_ms(self) -> float:
        return self.victim_gained_ms - self.absorbed_true_ms

    @property
    def visible_absorbed_ms(self) -> float:
        return self.victim_softirq_ms + self.victim_irq_ms - self.victim_hidden_assumed_ms

    @property
    def hidden_true_ms(self) -> float:
        return self.absorbed_true_ms - self.visible_absorbed_ms

    @property
    def credit_vs_visible_ms(self) -> float:
        """gained - (softirq + hard-IRQ time incl. the assumed hidden cost) in the victim's context: > 0
        means credit for work the victim's context did not do (an accounting error, whatever the
        hidden cost is)."""
        return self.victim_gained_ms - self.victim_softirq_ms - self.victim_irq_ms

    @property
    def allotment_ms(self) -> float:
        """What Iron granted the victim over the run: its allocation x periods + credit - charge (the
        controller's target; not the mean written quota, which the write-time refill undercounts)."""
        charged = 0.0 if math.isnan(self.victim_charged_ms) else self.victim_charged_ms
        gained = 0.0 if math.isnan(self.victim_gained_ms) else self.victim_gained_ms
        return self.quota_ms * self.wall_ms / self.period_ms + gained - charged

    @property
    def beyond_allotment_ms(self) -> float:
        return self.victim_ms - self.allotment_ms

    @property
    def hidden_true_ns_per_irq(self) -> float:
        return self.hidden_true_ms * 1e6 / self.victim_irqs if self.victim_irqs else math.nan

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("absorbed_true_ms", "over_credit_ms", "visible_absorbed_ms", "hidden_true_ms",
                  "hidden_true_ns_per_irq", "credit_vs_visible_ms", "allotment_ms", "beyond_allotment_ms"):
            d[k] = getattr(self, k)
        return d


def ledger(a: CoreSample, b: CoreSample, topo: Topology, network: bool, irq_extra_ns: int = 0,
           timer_extra_ns: int = 0, history: list[tuple] | None = None) -> Ledger:
    """The ledger between two samples (see the module doc). ``history``: the victim's controller
    history rows (t, quota_us, charged, gained, used) to average its quota over the window."""
    ms = 1e-6
    victim = topo.victim
    per = {n: (b.containers_ns[n] - a.containers_ns[n]) * ms for n in b.containers_ns}
    wall = (b.t_ns - a.t_ns) * ms
    root = (b.root_ns - a.root_ns) * ms
    ksirq = (b.ksoftirqd_ns - a.ksoftirqd_ns) * ms
    mine = sum(per.values())
    hz = os.sysconf("SC_CLK_TCK")
    led = Ledger(network=network, wall_ms=wall, victim_ms=per[victim.name], others_ms=mine - per[victim.name],
                 ksoftirqd_ms=ksirq, foreign_ms=root - mine - ksirq, idle_ms=wall - root,
                 idle_stat_ms=(b.idle_ticks - a.idle_ticks) * 1000.0 / hz, per_container_ms=per,
                 period_ms=victim.period_us / 1000,
                 quota_ms=victim.quota_us / 1000 if victim.quota_us > 0 else math.nan)
    busy = sorted(((k, (v - a.tasks_ns.get(k, 0)) * ms) for k, v in b.tasks_ns.items()), key=lambda kv: -kv[1])
    led.top_foreign = [(k, round(v, 1)) for k, v in busy[:6] if v >= 1.0]
    if a.iron and b.iron:
        d = {k: b.iron.get(k, 0.0) - a.iron.get(k, 0.0) for k in b.iron}
        v = victim.name
        led.victim_softirq_ms = d.get(f"{v}.naive_ns", 0) * ms
        led.victim_irq_ms = d.get(f"{v}.irq_ns", 0) * ms
        led.victim_irqs = d.get(f"{v}.irqs", 0)
        led.victim_timer_irqs = d.get(f"{v}.timer_irqs", 0)
        led.victim_hidden_assumed_ms = ((led.victim_irqs - led.victim_timer_irqs) * irq_extra_ns
                                        + led.victim_timer_irqs * timer_extra_ns) * ms
        led.victim_gained_ms = d.get(f"{v}.gained_ns", 0) * ms
        led.victim_charged_ms = d.get(f"{v}.charged_ns", 0) * ms
        others = [c.name for c in topo.interferers]
        led.others_charged_ms = sum(d.get(f"{n}.charged_ns", 0) for n in others) * ms
        led.others_gained_ms = sum(d.get(f"{n}.gained_ns", 0) for n in others) * ms
        led.others_own_ms = sum(d.get(f"{n}.own_ns", 0) for n in others) * ms
        led.unowned_irq_ms = d.get("unowned.irq_ns", 0) * ms
        led.unowned_rx_ms = d.get("unowned.rx_cost_ns", 0) * ms
        led.drops = d.get("drops_total", 0)
        led.victim_throttled_ms = d.get(f"{v}.throttled_ns", 0) * ms
        led.victim_mid_writes = d.get(f"{v}.mid_writes", math.nan)
        # phase lock of the victim's quota writes (whole runtime so far, not a delta)
        led.victim_relearns = b.iron.get(f"{v}.relearns", math.nan)
        led.victim_lock_err_p90_us = b.iron.get(f"{v}.lock_err_p90_us", math.nan)
        led.victim_lock_err_max_us = b.iron.get(f"{v}.lock_err_max_us", math.nan)
        led.victim_late_wakeups = b.iron.get(f"{v}.late_wakeups", math.nan)
    if history:
        t0, t1 = a.t_ns, b.t_ns
        mono_off = time.time() - time.monotonic()  # history is wall-clock stamped
        q = [h[1] for h in history if t0 / 1e9 + mono_off <= h[0] <= t1 / 1e9 + mono_off]
        if q:
            led.victim_quota_mean_ms = statistics.fmean(q) / 1000
    return led


def pair(base: Ledger, net: Ledger) -> None:
    """Give both runs the job's CPU: the baseline victim's CPU minus what it absorbed there."""
    absorbed = base.visible_absorbed_ms + base.victim_hidden_assumed_ms
    if math.isnan(absorbed):
        absorbed = 0.0
    job = base.victim_ms - absorbed
    base.job_ms = net.job_ms = job


def format_pair(label: str, base: Ledger, net: Ledger, penalty: float) -> str:
    """A side-by-side text table of the two runs of one repetition."""
    rows = [
        ("wall (core time)", "wall_ms"), ("victim CPU", "victim_ms"), ("  its job (from baseline)", "job_ms"),
        ("  softirq in its context", "victim_softirq_ms"), ("  hard IRQ in its context", "victim_irq_ms"),
        ("    of which assumed hidden", "victim_hidden_assumed_ms"), ("  credited (gained)", "victim_gained_ms"),
        ("  credit - visible absorbed", "credit_vs_visible_ms"),
        ("  allotment (alloc x periods + gained - charged)", "allotment_ms"),
        ("  CPU beyond allotment", "beyond_allotment_ms"),
        ("  absorbed (victim - job)", "absorbed_true_ms"), ("  over-credit (gained - absorbed)", "over_credit_ms"),
        ("  hidden (absorbed - visible)", "hidden_true_ms"), ("  hidden ns per IRQ", "hidden_true_ns_per_irq"),
        ("  IRQs in its context", "victim_irqs"), ("  throttled", "victim_throttled_ms"),
        ("  mean written quota per period", "victim_quota_mean_ms"), ("  mid-period quota writes", "victim_mid_writes"),
        ("  boundary lock error p90 (us)", "victim_lock_err_p90_us"),
        ("  boundary lock error max (us)", "victim_lock_err_max_us"),
        ("  phase re-learns / late wake-ups", "victim_relearns"), ("", "victim_late_wakeups"),
        ("other containers", "others_ms"), ("  charged", "others_charged_ms"), ("  own softirq", "others_own_ms"),
        ("ksoftirqd", "ksoftirqd_ms"), ("foreign tasks", "foreign_ms"), ("idle", "idle_ms"),
        ("unowned IRQ (all contexts)", "unowned_irq_ms"), ("drops", "drops"),
    ]
    b, n = base.as_dict(), net.as_dict()
    out = [f"== {label}: penalty {penalty:.3f}", f"{'':36s} {'baseline':>10s} {'network':>10s}"]
    for name, key in rows:
        out.append(f"{name:36s} {b[key]:10.1f} {n[key]:10.1f}")
    share_b = b["victim_ms"] / b["wall_ms"] if b["wall_ms"] else math.nan
    useful_n = (n["job_ms"]) / n["wall_ms"] if n["wall_ms"] else math.nan
    out.append(f"{'victim job share of the core':36s} {share_b:10.3f} {useful_n:10.3f}")
    if net.top_foreign:
        out.append("top tasks outside nfvlab's cgroups (any CPU), network run: "
                   + "; ".join(f"{k} {v:.0f}" for k, v in net.top_foreign))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
class BaselineHog:
    """Reproduce a shared host's foreign load: a CPU hog on the victim's core, in its own cgroup with
    the largest CPU weight (so the testbed's weight does not hold it off), running during the first
    baseline attempt of each repetition only (``--disturb-baseline``). Named ``nfvlab-ir-hog``."""

    NAME = "nfvlab-ir-hog"

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.dirs = [Path("/sys/fs/cgroup") / ctl / self.NAME for ctl in ("cpu", "cpuset")]
        self.proc: Any = None
        self.armed = False

    def __enter__(self) -> BaselineHog:
        cpu_dir, cpuset_dir = self.dirs
        for d in self.dirs:
            d.mkdir(exist_ok=True)
        (cpu_dir / "cpu.shares").write_text("262144")
        (cpuset_dir / "cpuset.cpus").write_text(str(self.cpu))
        (cpuset_dir / "cpuset.mems").write_text("0")
        return self

    def start(self) -> None:
        import subprocess

        if self.proc is None:
            joins = "; ".join(f"echo $$ > {d}/tasks" for d in self.dirs)
            self.proc = subprocess.Popen(["sh", "-c", f"{joins}; exec taskset -c {self.cpu} sysbench cpu "
                                          "--threads=1 --time=600 run"], stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _parse_where(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep:
            raise SystemExit(f"--where {it!r}: expected key=value")
        out[k] = v
    return out


def select_points(spec_path: Path, scale: str, where_items: list[str], tool: str) -> list:
    """The points of an iron-interference spec at ``scale`` matching every ``leaf=value`` (SystemExit
    naming the spec otherwise)."""
    from nfvlab.plan import _fmt, expand, flat_params
    from nfvlab.spec import load_spec

    spec = load_spec(spec_path)
    if spec.kind != "iron-interference":
        raise SystemExit(f"{spec_path}: kind {spec.kind!r}; {tool} runs iron-interference specs")
    where = _parse_where(where_items)
    points = [p for p in expand(spec, scale).points
              if all(_fmt(flat_params(p.params).get(k)) == v for k, v in where.items())]
    if not points:
        raise SystemExit(f"{spec_path}: no point matches {where}")
    return points


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec", type=Path)
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--where", action="append", default=[], help="leaf=value filter on the points (repeatable)")
    ap.add_argument("--set", action="append", default=[], dest="overrides",
                    help="section.leaf=value override of every chosen point, e.g. iron.hidden_cost=online")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--disturb-baseline", action="store_true",
                    help="run a max-weight CPU hog on the victim's core during each repetition's first baseline "
                         "attempt (reproduces a shared host's foreign load; see docs/iron.md, Over-credit)")
    ap.add_argument("--tasks", action="store_true",
                    help="also name the busiest tasks outside nfvlab (scans /proc: holds the GIL ~0.1 s, which "
                         "can delay the controller thread's boundary polls)")
    a = ap.parse_args(argv)
    from nfvlab.experiments.iron_interference import Driver
    from nfvlab.runner import DEFAULT_BUILD

    points = select_points(a.spec, a.scale, a.where, "the ledger")
    if a.overrides:
        import yaml

        from nfvlab.plan import Point, _set_dotted

        def override(pt: Point) -> Point:
            tree = pt.params.model_dump()
            for item in a.overrides:
                key, _, val = item.partition("=")
                _set_dotted(tree, key, yaml.safe_load(val))
            return Point(pt.index, pt.axes, type(pt.params).model_validate(tree))

        points = [override(pt) for pt in points]
    driver = Driver(DEFAULT_BUILD)
    out: list[dict] = []
    from nfvlab.testbeds.local import load_config

    hog = BaselineHog(load_config().victim_cpu) if a.disturb_baseline else None
    with hog if hog is not None else contextlib.nullcontext():
        _run_points(a, driver, points, hog, out)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


def _run_points(a: argparse.Namespace, driver: Any, points: list, hog: BaselineHog | None, out: list[dict]) -> None:
    raw_root = Path(os.environ.get("TMPDIR", "/tmp")) / f"nfvlab-ir-ledger-{os.getpid()}"
    for pt in points:
        with driver.setup(pt.params) as topo:
            for rep in range(a.reps):
                samples: dict[str, CoreSample] = {}

                def observe(phase: str, network: bool, topo: Topology = topo,
                            samples: dict[str, CoreSample] = samples) -> None:
                    key = f"{phase}-{int(network)}"
                    if hog is not None and not network:  # only the first baseline attempt is disturbed
                        if phase == "start" and key not in samples:
                            hog.start()
                        elif phase == "end":
                            hog.stop()
                    samples[key] = sample(topo, driver.iron, a.tasks)

                driver.observer = observe
                row = driver.measure(topo, pt.params, raw_root / f"p{pt.index}" / f"r{rep}")
                iron = driver.last_iron
                extra = (iron.irq_extra_ns, iron.timer_extra_ns) if iron is not None else (0, 0)
                hist = driver.last_history
                base = ledger(samples["start-0"], samples["end-0"], topo, False, *extra, history=hist)
                net = ledger(samples["start-1"], samples["end-1"], topo, True, *extra, history=hist)
                pair(base, net)
                print(format_pair(f"{pt.label} rep {rep}", base, net, row["penalty_factor"]), flush=True)
                print(f"   row: iron_irq_cost_ns {row.get('iron_irq_cost_ns')}, hidden check "
                      f"{row.get('iron_hidden_check_ns')}, over-credit {row.get('iron_victim_over_credit_ms')} ms, "
                      f"probe {row.get('iron_probe_time_s')} s, baseline runs {row.get('baseline_runs')} "
                      f"(victim share {row.get('victim_share_base', math.nan):.3f} of its allocation)", flush=True)
                out.append({"point": pt.label, "rep": rep, "penalty_factor": row["penalty_factor"],
                            "irq_extra_ns": extra[0], "timer_extra_ns": extra[1],
                            "baseline": base.as_dict(), "network": net.as_dict(), "row": row})
    driver.observer = None


if __name__ == "__main__":
    sys.exit(main())
