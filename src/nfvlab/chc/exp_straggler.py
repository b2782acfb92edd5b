"""Experiment kind `chc-straggler` (§3.6.3 R5, Table 3.18): duplicate suppression while a straggler
is cloned. Chain experiments/chains/nat-portscan.yaml (root -> NAT -> portscan detector -> sink,
EO+C+NA, one redis-server, the root logging every packet until the portscan's delete request).

The NAT straggles (a random 3-10 µs busy delay per packet, as the paper emulated it). Once the root
has sent `clone_at` of the trace, the framework starts a clone (a new chc-nf in its own container with
the straggler's vertex and instance id, --recover --clone-id 1: its state is the straggler's in the
store) and the root replays every logged packet of the straggler to it, marks the replay's end, and
replicates the straggler's new traffic to it (§3.4.3; chc-root "clone"). Straggler and clone both
emit every packet from then on, so duplicates reach the portscan detector.
  suppression on   CHC: the portscan's input drops a clock it already processed (--dedup), and the
                   store's clock log answers a repeated update with the first one's result
  suppression off  neither (the Functions library loaded with DEDUP false): duplicates are processed
Both count, at the portscan, the duplicate packets (clocks it saw again) and the duplicate state
updates (the updates it issued while processing a duplicate: Table 3.18's two columns). Each
repetition first runs the same trace with neither straggler nor clone (the ideal) and compares the
portscan's decisions and state, and the NAT's counters, with it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from nfvlab.chc import control, dag, dagrun, faults, traces
from nfvlab.chc import store as chc_store
from nfvlab.chc.chain import TUNNEL_PORT, ChainError, _json_line, _space_kv
from nfvlab.chc.compile import compile_chain
from nfvlab.chc.driver import ChcDriver
from nfvlab.chc.exp_nf_perf import Strict
from nfvlab.chc.trace_setup import TraceDeployment, trace_deployment
from nfvlab.experiments.registry import ExperimentKind

REPO = Path(__file__).resolve().parents[3]
CHAIN = REPO / "experiments" / "chains" / "nat-portscan.yaml"
CLONE_ID = 1


class TraceParams(Strict):
    connections: int = Field(300, ge=1)
    packets_per_connection: int = Field(20, ge=4)
    median_size: int = Field(368, ge=64, le=1514)
    scanners: int = Field(2, ge=0)
    seed: int = 1


class StragglerParams(Strict):
    rate_pps: int = Field(2000, ge=100, description="the root's replay rate (the load)")
    suppression: Literal["on", "off"] = "on"
    straggle_us: str = Field("3-10", pattern=r"^\d+-\d+$", description="the straggler's per-packet delay, µs")
    clone_at: float = Field(0.3, gt=0, lt=1, description="when the clone starts, as a fraction of the trace sent")


class Params(Strict):
    trace: TraceParams = TraceParams()
    straggler: StragglerParams


METRICS = ("dup_packets", "dup_updates", "store_repeats", "clone_replayed", "replicated", "clone_buffered",
           "clone_packets", "decisions_equal", "portscan_state_equal", "nat_counters_equal", "delivered_frac",
           "sink_duplicates", "packets")


def topology_key(p: Params) -> tuple:
    return tuple(sorted(p.trace.model_dump().items()))


def _vertex_state(state: dict[str, object], vertex: int) -> dict[str, object]:
    return {k: v for k, v in state.items() if f"v{vertex}:" in k}


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[TraceDeployment]:
        work = self.work_dir("straggler", topology_key(p))
        spec = traces.spec_from_params(p.trace)
        with trace_deployment(work, spec) as s:
            yield s

    def _run(self, s: TraceDeployment, p: Params, *, straggle: bool, dedup: bool) -> tuple[dagrun.ChainRunResult, dict]:
        store = s.dep.stores[0]
        s.flush_stores()
        for srv in store.servers:
            chc_store.load_functions(srv.client(), dedup=dedup)
        r = p.straggler
        nf_args: dict[str, tuple[str, ...]] = {}
        if straggle:
            nf_args["nat"] = ("--straggle-us", r.straggle_us, "--seed", str(p.trace.seed))
        nf_args["portscan"] = ("--dedup",) if dedup else ("--count-duplicates",)
        clone: dict[str, Any] = {}
        clone_dir = Path(tempfile.mkdtemp(prefix="nfvlab-chc-clone-"))  # short: sun_path holds 107 bytes

        def manager(running: dagrun.RunningChain) -> None:
            # The clone process starts while the root is still paused (--paused), so its launch time
            # cannot let the trace pass; it only works on what the root sends it.
            box = s.dep.containers.get("str-clone") or s.dep.add("str-clone")
            address = f"{box.ip}:{TUNNEL_PORT}"
            sock = clone_dir / "clone.sock"  # not in run_chain's socket folder: it outlives the chain
            argv = list(running.argv["nat1"])
            for flag, value in (("--listen", address), ("--control", str(sock)), ("--samples", str(sock) + ".samples")):
                argv[argv.index(flag) + 1] = value
            argv += ["--recover", "--clone-id", str(CLONE_ID)]
            proc = s.dep.start(box, f"straggler-clone-{time.monotonic_ns()}", argv)
            clone.update(proc=proc, sock=sock)
            try:
                control.wait_ready(sock)
            except control.ControlError as e:
                raise ChainError(f"the clone did not start: {proc.stderr()[-800:]}") from e
            # The root clones exactly at that packet (clone-at), while packets are in flight.
            want = max(1, int(r.clone_at * s.packets))
            control.ask(running.root_sock, f"clone-at {want} 0 {address} {CLONE_ID}")
            control.ask(running.root_sock, "go")

        chain = compile_chain(dag.load_chain(CHAIN))
        try:
            res = dagrun.run_chain(s.dep, self.bin_dir, chain, s.pcap, store_addresses=s.store_addresses,
                                   rate_pps=r.rate_pps, tag="str", timeout_s=300, nf_args=nf_args, root_control=True,
                                   root_args=("--deletes", "--log", "local", "--log-max", str(2 * s.packets),
                                              *(("--paused",) if straggle else ())),
                                   manager=manager if straggle else None)
            if clone:  # the clone is ours to stop: after the chain drained, its report, then its summary
                clone["replayed"] = int(res.root.get("clone_replayed", 0))
                clone["report"] = _space_kv(control.ask(clone["sock"], "report"))
                control.ask(clone["sock"], "stop")
                if clone["proc"].wait(30) != 0:
                    raise ChainError(f"the clone failed: {clone['proc'].stderr()[-800:]}")
                clone["summary"] = _json_line(clone["proc"].stdout())
        finally:
            if clone:
                clone["proc"].stop()
            shutil.rmtree(clone_dir, ignore_errors=True)
            for srv in store.servers:  # the next run (and experiment) gets duplicate suppression back
                chc_store.load_functions(srv.client(), dedup=True)
        clone["state"] = faults.dump_state(store)
        clone["store_repeats"] = faults.duplicate_count(store) if dedup else 0
        return res, clone

    def measure(self, s: TraceDeployment, p: Params, raw: Path) -> dict[str, Any]:
        ideal, ideal_extra = self._run(s, p, straggle=False, dedup=True)
        run, extra = self._run(s, p, straggle=True, dedup=p.straggler.suppression == "on")
        scan = run.instances["portscan1"]
        scan_ideal = ideal.instances["portscan1"]
        nat_keys = ("total_packets", "tcp_packets")
        nat_equal = all(run.instances["nat1"].report.get(k) == ideal.instances["nat1"].report.get(k) for k in nat_keys)
        decisions = ("scanners", "benign", "blocked")
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "runs.json").write_text(json.dumps({
            "ideal": {"root": ideal.root, "portscan": scan_ideal.summary, "nat": ideal.instances["nat1"].summary},
            "run": {"root": run.root, "portscan": scan.summary, "nat": run.instances["nat1"].summary,
                    "clone": extra.get("summary"), "clone_replayed": extra.get("replayed")}}, indent=1) + "\n")
        clocks = _sink_clocks(run)
        return {
            "dup_packets": int(scan.summary["duplicates_in"]), "dup_updates": int(scan.summary["duplicate_updates"]),
            "store_repeats": extra["store_repeats"], "clone_replayed": extra.get("replayed", 0),
            "replicated": int(run.root.get("replicated", 0)),
            "clone_buffered": int(extra.get("summary", {}).get("buffered", 0)),
            "clone_packets": int(extra.get("summary", {}).get("received", 0)),
            "decisions_equal": int(all(scan.report.get(k) == scan_ideal.report.get(k) for k in decisions)),
            "portscan_state_equal": int(_vertex_state(extra["state"], 2) == _vertex_state(ideal_extra["state"], 2)),
            "nat_counters_equal": int(nat_equal),
            "delivered_frac": len(set(clocks)) / s.packets,
            "sink_duplicates": len(clocks) - len(set(clocks)),
            "packets": s.packets,
        }


def _sink_clocks(res: dagrun.ChainRunResult) -> list[int]:
    path = res.run_dir / "sink-times.txt"
    return [int(line.split()[0]) for line in path.read_text().splitlines()]


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="chc-straggler",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
)
