"""The cost of Iron's own accounting (issue 4 part 6): BPF ns per packet and the maximum receive rate
with vs without Iron loaded.

One receiver container alone on the core (CFS-unlimited) is flooded by the peer as fast as it can
send. Each repetition runs three phases back to back, each ``warmup_s`` + ``window_s``:

1. **without** Iron: packets/s reaching the container's ``eth0`` and the application's rate;
2. **with** Iron loaded (accounting programs attached, controller running, drop off), kernel BPF
   statistics off — the real cost: the same rates;
3. **with** Iron and ``kernel.bpf_stats_enabled = 1``: the kernel times every run of every program.
   The run time of *this* runtime's programs (found through its pinned links, so another developer's
   Iron instance is not counted) over the window, divided by the container's ``eth0`` packets, is
   ``bpf_ns_per_packet``; also runs per packet and ns per run (per program in the raw
   ``phases.json``). The sysctl's old value is restored afterwards, also on errors; if someone else
   switches it off mid-window, the BPF metrics of that repetition are NaN. The programs run for
   every traced event on every CPU (and for other traffic on the machine), all of which is charged
   to the flood's packets here: an upper bound.

``rate_change_pct`` = (with − without) / without on the ``eth0`` packet rate. Phase order alternates
between repetitions (even: without first), so a drift in machine load does not favour one side.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from nfvlab.experiments.iron_cpu_cap import Strict, iron_runtime, local_testbed, set_quota_pct
from nfvlab.experiments.registry import ExperimentKind
from nfvlab.iron.costs import eth0_rx_packets
from nfvlab.testbeds import processes as procs
from nfvlab.testbeds.model import Topology
from nfvlab.workloads import traffic

PORT = 5001
BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


class WorkloadParams(Strict):
    proto: Literal["udp", "tcp"] = "udp"
    window_s: float = Field(ge=0.5, le=600)
    warmup_s: float = Field(1.0, ge=0)
    payload_bytes: int = Field(1400, ge=64, le=1400)
    flows: int = Field(4, ge=1)
    batch: int = Field(16, ge=1, le=64, description="UDP sendmmsg batch of the peer's sender")


class IronParams(Strict):
    attribution: Literal["iron", "naive"] = "iron"


class Params(Strict):
    workload: WorkloadParams
    iron: IronParams = IronParams()


METRICS = (
    "bpf_ns_per_packet",
    "bpf_runs_per_packet",
    "bpf_ns_per_run",
    "rx_kpps_without",
    "rx_kpps_with",
    "rate_change_pct",
    "app_mbps_without",
    "app_mbps_with",
    "rx_kpps_with_stats",
    "cost_per_packet_ns",
    "overhead_pct_of_cost",
)


def topology_key(p: Params) -> tuple:
    return ("receiver",)


@contextlib.contextmanager
def bpf_stats_enabled() -> Iterator[None]:
    """kernel.bpf_stats_enabled = 1 for the block; the old value is restored afterwards."""
    old = BPF_STATS.read_text().strip()
    BPF_STATS.write_text("1")
    try:
        yield
    finally:
        BPF_STATS.write_text(old)


def runtime_prog_ids(rt: Any) -> list[int]:
    """The ids of the programs this IronRuntime attached (via its pinned links)."""
    ids = set()
    for link in sorted(Path(rt.bpf.pin_dir).glob("link_*")):
        out = subprocess.run(["bpftool", "-j", "link", "show", "pinned", str(link)], capture_output=True,
                             text=True, check=False).stdout
        with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
            ids.add(int(json.loads(out)["prog_id"]))
    return sorted(ids)


def prog_run_stats(ids: list[int]) -> dict[str, tuple[int, int]]:
    """(run_time_ns, run_cnt) of the given programs, by program name."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout
    want = set(ids)
    res: dict[str, tuple[int, int]] = {}
    for prog in json.loads(out or "[]"):
        if prog.get("id") in want:
            name = str(prog.get("name", prog["id"]))
            ns, cnt = res.get(name, (0, 0))
            res[name] = (ns + int(prog.get("run_time_ns", 0)), cnt + int(prog.get("run_cnt", 0)))
    return res


class Driver:
    def __init__(self, build_dir: Path):
        self.flood = traffic.build_nfvflood(build_dir)

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[Topology]:
        # a lone receiver on an otherwise idle core, as in iron_throughput: halting idle
        with local_testbed(["receiver"], idle_poll=False) as topo:
            set_quota_pct(topo, None)  # unlimited: the maximum receive rate is the subject
            yield topo

    def measure(self, topo: Topology, p: Params, raw: Path) -> dict[str, Any]:
        rep = int(raw.name[1:]) if raw.name[1:].isdigit() else 0  # raw is <results>/raw/<point>/r<rep>
        order = ["without", "with"] if rep % 2 == 0 else ["with", "without"]
        res = {name: self._phase(topo, p, raw / name, iron=name == "with", stats=False) for name in order}
        st = self._phase(topo, p, raw / "with-stats", iron=True, stats=True)
        (raw / "phases.json").write_text(json.dumps({**res, "with-stats": st}, indent=1))
        off, on = res["without"], res["with"]
        return {
            "bpf_ns_per_packet": st["bpf_ns"] / st["packets"] if st["packets"] else math.nan,
            "bpf_runs_per_packet": st["bpf_runs"] / st["packets"] if st["packets"] else math.nan,
            "bpf_ns_per_run": st["bpf_ns"] / st["bpf_runs"] if st["bpf_runs"] else math.nan,
            "rx_kpps_without": off["kpps"],
            "rx_kpps_with": on["kpps"],
            "rate_change_pct": 100 * (on["kpps"] - off["kpps"]) / off["kpps"] if off["kpps"] else math.nan,
            "app_mbps_without": off["app_mbps"],
            "app_mbps_with": on["app_mbps"],
            "rx_kpps_with_stats": st["kpps"],
            "cost_per_packet_ns": on["cost_ns"],
            "overhead_pct_of_cost": (100 * st["bpf_ns"] / st["packets"] / on["cost_ns"]
                                     if st["packets"] and on["cost_ns"] else math.nan),
        }

    def _phase(self, topo: Topology, p: Params, raw: Path, iron: bool, stats: bool) -> dict[str, Any]:
        w = p.workload
        c = topo.containers[0]
        started: list[procs.Proc] = []
        out: dict[str, Any] = {"bpf_ns": 0, "bpf_runs": 0, "cost_ns": math.nan}
        with iron_runtime(topo, iron, drop="none", attribution=p.iron.attribution) as rt, \
                (bpf_stats_enabled() if stats else contextlib.nullcontext()):
            ids = runtime_prog_ids(rt) if rt is not None and stats else []
            try:
                recv = procs.start_in_container(
                    c, "recv", traffic.FloodReceiver(self.flood, w.proto, PORT, size=w.payload_bytes).argv(), raw)
                started.append(recv)
                time.sleep(0.3)
                send = traffic.FloodSender(self.flood, w.proto, [c.ip], PORT, flows=w.flows, size=w.payload_bytes,
                                           batch=w.batch if w.proto == "udp" else 1)
                started.append(procs.start_on_peer(topo.peer, "send", send.argv(), raw))
                time.sleep(w.warmup_s)
                n0, t0 = eth0_rx_packets(c.netns), time.monotonic()
                b0 = prog_run_stats(ids) if ids else {}
                s0 = rt.stats() if rt is not None else None
                time.sleep(w.window_s)
                n1, t1 = eth0_rx_packets(c.netns), time.monotonic()
                b1 = prog_run_stats(ids) if ids else {}
                s1 = rt.stats() if rt is not None else None
                # someone else may switch the sysctl off mid-window: then the run times are incomplete
                disturbed = stats and BPF_STATS.read_text().strip() != "1"
            finally:
                procs.stop_all(started)
        got = traffic.parse_flood_stats(recv.stdout())
        out["packets"] = n1 - n0
        out["kpps"] = (n1 - n0) / (t1 - t0) / 1e3
        out["app_mbps"] = got.active_rate_mbps
        per_prog = {k: (v[0] - b0.get(k, (0, 0))[0], v[1] - b0.get(k, (0, 0))[1]) for k, v in b1.items()}
        out["bpf_ns"] = math.nan if disturbed else sum(v[0] for v in per_prog.values())
        out["bpf_runs"] = math.nan if disturbed else sum(v[1] for v in per_prog.values())
        out["bpf_stats_disturbed"] = disturbed
        if out["packets"]:
            out["per_program"] = {k: {"runs_per_packet": r / out["packets"], "ns_per_run": ns / r if r else 0.0}
                                  for k, (ns, r) in sorted(per_prog.items())}
        out["programs"] = len(ids)
        if s0 is not None and s1 is not None and out["packets"]:
            out["cost_ns"] = (s1[f"{c.name}.rx_cost_ns"] - s0[f"{c.name}.rx_cost_ns"]) / out["packets"]
        return out


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="iron-overhead",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
    uses_calibration=lambda p: True,  # Iron's fitted calibration is an input of these rows
)
