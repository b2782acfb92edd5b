"""Experiment kind `chc-move` (§3.6.3 R2, §3.4.1 Fig 3.7): elastic scale-up of a running NAT. The
trace runs through one NAT instance (experiments/chains/nat.yaml, a real redis-server); midway the
framework starts a second instance and the root moves a share of the first one's flows to it
(chc-root "add" + "move", chc/move.h): a "last" marker to the old instance, which then flushes its
outstanding store ops and writes the move's handover key, and a "first" marker to the new one,
which reads that key with store callbacks on, buffers the moved flows' packets until the store
notifies it of the old instance's write, and from then on processes them on the old instance's
per-flow keys.
  handover on    CHC's protocol
  handover off   a control: the new instance does not wait (--move-naive)
Right before the move the old instance is stopped for a few ms (SIGSTOP, SIGCONT after the move), so
packets of moved flows are still queued there when later ones reach the new instance: the hazard the
protocol is for.
Move time is the old instance's receipt of its "last" marker to the new instance's handover (the
flush, the release and the store's notification; the paper: "0.071 ms", and with caching, which
must flush operations first, 89 % less than OpenNF's 2.5 ms). Each repetition first runs the same
trace through the single instance without a move (the ideal) and compares the NAT's state with
it: counters, translations and the ports left (a moved flow that lost its state would take a
second port), and at the sink every packet once and every flow's packets in trace order.
Not built: the OpenNF-style loss-free move baseline (export, transfer and import of per-flow
state through a controller), so the paper's CHC/OpenNF ratio is not measured here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from nfvlab.chc import control, dag, dagrun, faults, flowhash, traces
from nfvlab.chc.chain import TUNNEL_PORT, ChainError, _json_line, _space_kv
from nfvlab.chc.compile import compile_chain
from nfvlab.chc.driver import ChcDriver
from nfvlab.chc.exp_nf_perf import Strict
from nfvlab.chc.trace_setup import TraceDeployment, trace_deployment
from nfvlab.experiments.registry import ExperimentKind

REPO = Path(__file__).resolve().parents[3]
CHAIN = REPO / "experiments" / "chains" / "nat.yaml"
PORTS_OBJ = 1  # the NAT's available-port list (chc/src/nf_nat.cpp): shared once a second instance runs
MOVE_ID = 1


class TraceParams(Strict):
    connections: int = Field(2000, ge=10)
    packets_per_connection: int = Field(8, ge=4)
    median_size: int = Field(368, ge=64, le=1514)
    duration_s: float = Field(0.1, gt=0, description=(
        "trace time the connections start over: short enough that many are open at the move"))
    seed: int = 1


class MoveParams(Strict):
    model: Literal["EO", "EO+C+NA"] = "EO"
    handover: Literal["on", "off"] = "on"
    rate_pps: int = Field(5000, ge=100, description="the root's replay rate")
    at: float = Field(0.5, gt=0, lt=1, description="when the move starts, as a fraction of the trace sent")
    buckets: int = Field(2048, ge=1, le=flowhash.MOVE_BUCKETS,
                         description="flow-hash buckets (of 4096) that move: the share of the flows")
    old_stall_ms: float = Field(5.0, ge=0, le=1000, description=(
        "the old instance is stopped (SIGSTOP) this long right before the move, so moved flows' packets wait "
        "in its queue while later ones reach the new instance: the hazard Fig 3.7's protocol is for (0: none)"))


class Params(Strict):
    trace: TraceParams = TraceParams()
    move: MoveParams = MoveParams()


METRICS = ("move_ms", "flush_ms", "notify_ms", "move_total_ms", "moved_flows", "moved_state_flows",
           "moved_active_flows", "moved_packets", "moved_buffered", "late_moved", "state_equal", "counters_equal",
           "ports_equal", "translations_equal", "delivered_frac", "sink_duplicates", "flow_order_kept", "packets")


def topology_key(p: Params) -> tuple:
    return tuple(sorted(p.trace.model_dump().items()))


def _nat_state(state: dict[str, object]) -> dict[str, int]:
    """What must match the ideal: how many translations each way, and how many ports are left."""
    ports = state.get("chc:{v1:nat:ports}", [])
    return {"out": sum(":nat:map:o:" in k for k in state), "in": sum(":nat:map:i:" in k for k in state),
            "ports_left": len(ports) if isinstance(ports, list) else -1}


def _replace(argv: list[str], values: dict[str, str]) -> list[str]:
    out = list(argv)
    for flag, value in values.items():
        out[out.index(flag) + 1] = value
    return out


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[TraceDeployment]:
        work = self.work_dir("move", topology_key(p))
        with trace_deployment(work, traces.spec_from_params(p.trace)) as s:
            yield s

    def _run(self, s: TraceDeployment, p: Params, *, move: bool) -> tuple[dagrun.ChainRunResult, dict[str, Any]]:
        s.flush_stores()
        m = p.move
        new: dict[str, Any] = {}
        sock_dir = Path(tempfile.mkdtemp(prefix="nfvlab-chc-move-"))  # short: sun_path holds 107 bytes

        def manager(running: dagrun.RunningChain) -> None:
            box = s.dep.containers.get("mv-new") or s.dep.add("mv-new")
            address = f"{box.ip}:{TUNNEL_PORT}"
            sock = sock_dir / "new.sock"
            argv = _replace(running.argv["nat1"], {"--listen": address, "--control": str(sock),
                                                   "--samples": str(sock) + ".samples", "--instance": "2",
                                                   "--vertex-instances": "2"})
            if m.handover == "off":
                argv.append("--move-naive")
            proc = s.dep.start(box, f"move-new-{time.monotonic_ns()}", argv)
            new.update(proc=proc, sock=sock)
            try:
                control.wait_ready(sock, alive=proc.running)
            except control.ControlError as e:
                raise ChainError(f"the new instance did not start: {proc.stderr()[-800:]}") from e
            index = control.parse_kv(control.ask(running.root_sock, f"add {address}"))["index"]
            control.ask(running.root_sock, "go")
            want = max(1, int(m.at * s.packets))
            deadline = time.monotonic() + 120
            while int(running.root_stats()["input"]) < want:  # midway through the replay, traffic flowing
                if time.monotonic() > deadline or not running.root_running():
                    raise ChainError("the root ended before the move point")
                time.sleep(0.002)
            # Two instances now share the port list: the old one stops caching it (a flush) first.
            control.ask(running.sockets["nat1"], f"cache {PORTS_OBJ} off")
            pid = running.procs["nat1"].pid
            if m.old_stall_ms:  # the old instance falls behind: its queue holds packets of the moved flows
                os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(m.old_stall_ms / 1000)
                reply = control.parse_kv(control.ask(running.root_sock, f"move {MOVE_ID} 0 {index} 1 {m.buckets}"))
            finally:
                if m.old_stall_ms:
                    os.kill(pid, signal.SIGCONT)
            new.update(root_t_ns=int(reply["t_ns"]), admitted=int(reply["admitted"]))

        chain = compile_chain(dag.load_chain(CHAIN).with_model(m.model))
        try:
            res = dagrun.run_chain(s.dep, self.bin_dir, chain, s.pcap, store_addresses=s.store_addresses,
                                   rate_pps=m.rate_pps, tag="mv", timeout_s=300, root_control=move,
                                   root_args=("--paused",) if move else (), manager=manager if move else None)
            if new:  # the new instance is ours to stop: its report, then its summary
                new["report"] = _space_kv(control.ask(new["sock"], "report"))
                control.ask(new["sock"], "stop")
                if new["proc"].wait(30) != 0:
                    raise ChainError(f"the new instance failed: {new['proc'].stderr()[-800:]}")
                new["summary"] = _json_line(new["proc"].stdout())
        finally:
            if new:
                new["proc"].stop()
            shutil.rmtree(sock_dir, ignore_errors=True)
        new["state"] = faults.dump_state(s.dep.stores[0])
        return res, new

    def measure(self, s: TraceDeployment, p: Params, raw: Path) -> dict[str, Any]:
        ideal, ideal_x = self._run(s, p, move=False)
        run, x = self._run(s, p, move=True)
        old, new = run.instances["nat1"].summary, x["summary"]
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "runs.json").write_text(json.dumps({
            "ideal": {"root": ideal.root, "nat": ideal.instances["nat1"].summary},
            "run": {"root": run.root, "old": old, "new": new, "root_move_t_ns": x["root_t_ns"],
                    "admitted_at_move": x["admitted"]}}, indent=1) + "\n")
        frames = traces.read_frames(s.pcap)
        hashes = [flowhash.frame_hash(f) for f in frames]
        flows = _flow_stats(hashes, p.move.buckets, x["admitted"])
        keys = ("total_packets", "tcp_packets")
        counters_equal = all(run.instances["nat1"].report.get(k) == ideal.instances["nat1"].report.get(k) for k in keys)
        nat, nat_ideal = _nat_state(x["state"]), _nat_state(ideal_x["state"])
        ports_equal = nat["ports_left"] == nat_ideal["ports_left"]
        translations_equal = nat["out"] == nat_ideal["out"] and nat["in"] == nat_ideal["in"]
        arrivals = _sink_clocks(run)
        ms = 1e-6
        return {
            "move_ms": (new["move_handover_ns"] - old["move_marker_ns"]) * ms,
            "flush_ms": (old["move_release_ns"] - old["move_marker_ns"]) * ms,
            "notify_ms": (new["move_handover_ns"] - old["move_release_ns"]) * ms,
            "move_total_ms": (new["move_handover_ns"] - x["root_t_ns"]) * ms,
            "moved_flows": int(new["moved_flows"]), "moved_state_flows": flows["with_state"],
            "moved_active_flows": flows["after_move"], "moved_packets": int(new["moved_packets"]),
            "moved_buffered": int(new["moved_buffered"]), "late_moved": int(old["late_moved"]),
            "state_equal": int(counters_equal and ports_equal and translations_equal),
            "counters_equal": int(counters_equal), "ports_equal": int(ports_equal),
            "translations_equal": int(translations_equal),
            "delivered_frac": len(set(arrivals)) / s.packets, "sink_duplicates": len(arrivals) - len(set(arrivals)),
            "flow_order_kept": int(_flow_order_kept(arrivals, hashes)), "packets": s.packets,
        }


def _flow_stats(hashes: list[int | None], buckets: int, admitted: int) -> dict[str, int]:
    """Moved flows with state at the old instance (a packet before the move) and with packets after it."""
    before = {h for h in hashes[:admitted] if h is not None and flowhash.moved(h, buckets)}
    after = {h for h in hashes[admitted:] if h is not None and flowhash.moved(h, buckets)}
    return {"with_state": len(before), "after_move": len(after)}


def _sink_clocks(res: dagrun.ChainRunResult) -> list[int]:
    """Packet counters (1-based trace positions) in the order they reached the sink."""
    path = res.run_dir / "sink-times.txt"
    return [int(line.split()[0]) & ((1 << 56) - 1) for line in path.read_text().splitlines()]


def _flow_order_kept(arrivals: list[int], hashes: list[int | None]) -> bool:
    last: dict[int | None, int] = defaultdict(int)
    for c in arrivals:
        h = hashes[c - 1]
        if c < last[h]:
            return False
        last[h] = c
    return True


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="chc-move",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
)
