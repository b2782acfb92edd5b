"""Calibrate ``irq_extra_ns``: the per hard-IRQ cost that no tracepoint brackets.

    python -m nfvlab.iron.calibrate [--events 2500] [--reps 3]

Interrupt entry/exit (and, in a VM, the vCPU's exit/entry for every interrupt delivered, e.g. the RPS
IPIs that raise NET_RX on the victim's core) costs the interrupted task time that
``irq_handler_entry/exit`` and the vector tracepoints do not see. On the ``nfvlab-ti`` fixture with no
quotas: the victim runs a fixed sysbench job alone, then next to a flooded UDP receiver with Iron
loaded (drop off). Then

    irq_extra_ns = (victim CPU with flood - victim CPU alone - softirq time in the victim's context
                    - its credited hard-IRQ share) / hard IRQs taken in the victim's context

(cache pollution lands in it too, which is interference the victim suffers all the same).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from .bench import flood_tools, sysbench_time
from .build import default_build_dir
from .fixture import IronFixture
from .runtime import CALIBRATION_FILE, IronRuntime


def victim_run(fx: IronFixture, events: int) -> tuple[float, float]:
    v = fx.topology.containers[0]
    p = fx.run_in(v, ["sysbench", "cpu", "--threads=1", f"--events={events}", "--time=0", "run"],
                  stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return sysbench_time(out), ru.ru_utime + ru.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--save", action="store_true",
                    help="store the median where IronRuntime picks it up by default (build dir)")
    a = ap.parse_args(argv)
    tools = flood_tools(default_build_dir().parent / "nfvflood")
    if tools is None:
        return 1
    fx = IronFixture(2, tag="c")
    est = []
    try:
        topo = fx.setup()
        for c in topo.containers:
            (c.cgroup.cpu / "cpu.cfs_quota_us").write_text("-1")
        victim, recv = topo.containers
        for rep in range(a.reps):
            _, alone = victim_run(fx, a.events)
            rx = fx.run_in(recv, tools[0], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            tx = fx.run_peer([recv.ip if x == "0.0.0.0" else x for x in tools[1]], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            try:
                iron = IronRuntime(topo, drop="none")
                iron.irq_extra_ns = 0  # measure what the tracepoints miss, not what a saved value adds
                with iron:
                    s0 = iron.stats()
                    _, flooded = victim_run(fx, a.events)
                    s1 = iron.stats()
            finally:
                fx.stop(tx)
                fx.stop(rx)
            d = {k: s1[k] - s0[k] for k in s1 if k.startswith(victim.name)}
            softirq = d[f"{victim.name}.naive_ns"] / 1e9
            gained_ovh = max(0.0, d[f"{victim.name}.gained_ns"] - d[f"{victim.name}.naive_ns"]) / 1e9
            irqs = d[f"{victim.name}.irqs"]
            extra = (flooded - alone - softirq - gained_ovh) / max(1, irqs) * 1e9
            est.append(extra)
            print(f"rep {rep}: victim cpu alone {alone:.3f}s flooded {flooded:.3f}s, softirq in its context "
                  f"{softirq:.3f}s, hard IRQs in its context {irqs:.0f} -> {extra:.0f} ns per IRQ", flush=True)
    finally:
        fx.teardown()
    med = int(statistics.median(est))
    print(f"irq_extra_ns median {med}")
    if a.save:
        out = default_build_dir() / CALIBRATION_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"irq_extra_ns": med, "estimates": [int(x) for x in est],
                                   "kernel": os.uname().release, "measured_at": time.time()}, indent=1))
        print(f"saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
