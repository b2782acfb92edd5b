"""Experiment kind `chc-move` (§3.6.3 R2, §3.4.1 Fig 3.7): elastic scale-up of a running NAT. The
trace runs through one NAT instance (experiments/chains/nat.yaml, a real redis-server); midway the
framework starts a second instance and the root moves a share of the first one's flows to it
(chc-root "add" + "move", chc/move.h): a "last" marker to the old instance, which then flushes its
outstanding store ops and writes the move's handover key, and a "first" marker to the new one,
which reads that key with store callbacks on, buffers the moved flows' packets until the store
notifies it of the old instance's write, and from then on processes them on the old instance's
per-flow keys. Schemes:
  chc-EO, chc-EO+C+NA      CHC's protocol, without and with caching (EO+C+NA must flush operations)
  naive-EO, naive-EO+C+NA  a control: the new instance does not wait for the handover (--move-naive)
  opennf                   the baseline: OpenNF's loss-free move, model T (chc-nf --movable). The
                           controller (this driver) exports the moved flows' per-flow entries from the
                           old instance, which holds their packets from then on (OpenNF's events; held
                           at the instance, not sent through the controller), imports them at the new
                           one, re-points the root's split (move ... nomark) and has the old instance
                           release the held packets to the new one. The two instances take ports from
                           disjoint ranges (their shared objects are not what R2 measures).
Right before the move the old instance is stopped for a few ms (SIGSTOP, SIGCONT after the move is
ordered), so packets of moved flows are still queued there when later ones reach the new instance:
the hazard the protocols are for.
Move time: CHC, the old instance's receipt of its "last" marker to the new instance's handover (the
flush, the release and the store's notification; paper 0.071 ms, and with caching 89 % less than
OpenNF's 2.5 ms); OpenNF, the export request at the old instance to the release of the held
packets (the controller's round trips included, as in OpenNF). Each repetition first runs the same
trace without a move (the ideal) and compares: the NAT's counters, as many external ports used,
every flow's outbound packets under one external port at the sink (a moved flow that lost its
translation would get a second), for CHC the store's translations and ports left, and at the sink
every packet once and every flow's packets in trace order.
"""

from __future__ import annotations

import contextlib
import ipaddress
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

import dpkt
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
    hosts: int = Field(200, ge=4, le=1000, description="internal hosts the connections come from")
    seed: int = 1


Scheme = Literal["chc-EO", "chc-EO+C+NA", "naive-EO", "naive-EO+C+NA", "opennf"]
EXTERNAL = "198.18.40.100"  # the NAT's external address (experiments/chains/nat.yaml)
OPENNF_PORTS = ("10000-34999", "35000-60000")  # the baseline's instances keep their port lists apart


class MoveParams(Strict):
    scheme: Scheme = Field("chc-EO", description=(
        "chc-MODEL: CHC's handover; naive-MODEL: the control that does not wait for it; opennf: the "
        "OpenNF-style loss-free move (model T: export, transfer, import through the controller)"))
    rate_pps: int = Field(5000, ge=100, description="the root's replay rate")
    at: float = Field(0.5, gt=0, lt=1, description="when the move starts, as a fraction of the trace sent")
    buckets: int = Field(2048, ge=1, le=flowhash.MOVE_BUCKETS,
                         description="flow-hash buckets (of 4096) that move: the share of the flows")
    old_stall_ms: float = Field(5.0, ge=0, le=1000, description=(
        "the old instance is stopped (SIGSTOP) this long right before the move, so moved flows' packets wait "
        "in its queue while later ones reach the new instance: the hazard Fig 3.7's protocol is for (0: none)"))

    @property
    def model(self) -> str:
        return "T" if self.scheme == "opennf" else self.scheme.split("-", 1)[1]


class Params(Strict):
    trace: TraceParams = TraceParams()
    move: MoveParams = MoveParams()


METRICS = ("move_ms", "flush_ms", "notify_ms", "move_total_ms", "moved_flows", "moved_state_flows",
           "moved_active_flows", "moved_packets", "moved_buffered", "state_entries", "late_moved", "state_equal",
           "counters_equal", "ports_equal", "translations_kept", "store_state_equal", "delivered_frac",
           "sink_duplicates", "flow_order_kept", "packets")


def topology_key(p: Params) -> tuple:
    return tuple(sorted(p.trace.model_dump().items()))


def _nat_state(state: dict[str, object]) -> dict[str, int]:
    """What must match the ideal in the store: translations each way, and the ports left."""
    ports = state.get("chc:{v1:nat:ports}", [])
    return {"out": sum(":nat:map:o:" in k for k in state), "in": sum(":nat:map:i:" in k for k in state),
            "ports_left": len(ports) if isinstance(ports, list) else -1}


def _replace(argv: list[str], values: dict[str, str]) -> list[str]:
    out = list(argv)
    for flag, value in values.items():
        out[out.index(flag) + 1] = value
    return out


def _chain(m: MoveParams):
    logical = dag.load_chain(CHAIN).with_model(m.model)
    if m.scheme == "opennf":  # T: each instance its own port list, disjoint
        nat = logical.vertices["nat"]
        logical = logical.model_copy(update={"vertices": {
            "nat": nat.model_copy(update={"config": {**nat.config, "ports": OPENNF_PORTS[0]}})}})
    return compile_chain(logical)


class Driver(ChcDriver):

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[TraceDeployment]:
        work = self.work_dir("move", topology_key(p))
        with trace_deployment(work, traces.spec_from_params(p.trace)) as s:
            yield s

    def _run(self, s: TraceDeployment, p: Params, *, move: bool) -> tuple[dagrun.ChainRunResult, dict[str, Any]]:
        s.flush_stores()
        m = p.move
        opennf = m.scheme == "opennf"
        new: dict[str, Any] = {}
        sock_dir = Path(tempfile.mkdtemp(prefix="nfvlab-chc-move-"))  # short: sun_path holds 107 bytes

        def manager(running: dagrun.RunningChain) -> None:
            box = s.dep.containers.get("mv-new") or s.dep.add("mv-new")
            address = f"{box.ip}:{TUNNEL_PORT}"
            sock = sock_dir / "new.sock"
            old_argv = running.argv["nat1"]
            changes = {"--listen": address, "--control": str(sock), "--samples": str(sock) + ".samples",
                       "--instance": "2", "--vertex-instances": "1" if opennf else "2"}
            if opennf:
                changes["--config"] = old_argv[old_argv.index("--config") + 1].replace(*OPENNF_PORTS)
            argv = _replace(old_argv, changes)
            if m.scheme.startswith("naive"):
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
            old_sock = running.sockets["nat1"]
            if not opennf:  # two instances now share the port list: the old one stops caching it (a flush)
                control.ask(old_sock, f"cache {PORTS_OBJ} off")
            pid = running.procs["nat1"].pid
            move_cmd = f"move {MOVE_ID} 0 {index} 1 {m.buckets}"
            if m.old_stall_ms:  # the old instance falls behind: its queue holds packets of the moved flows
                os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(m.old_stall_ms / 1000)
                if not opennf:  # the markers queue behind what the old instance has not processed
                    reply = control.parse_kv(control.ask(running.root_sock, move_cmd))
            finally:
                if m.old_stall_ms:
                    os.kill(pid, signal.SIGCONT)
            if opennf:
                reply = _opennf_move(running, old_sock, sock, address, move_cmd, m.buckets, index)
                new.update(opennf=reply)
            new.update(root_t_ns=int(reply["t_ns"]), admitted=int(reply["admitted"]))

        try:
            res = dagrun.run_chain(s.dep, self.bin_dir, _chain(m), s.pcap, store_addresses=s.store_addresses,
                                   rate_pps=m.rate_pps, tag="mv", timeout_s=300, root_control=move,
                                   root_args=("--paused",) if move else (), manager=manager if move else None,
                                   nf_args={"nat": ("--movable",)} if opennf else None)
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
        new["out"] = _sink_outputs(res)  # now: the next run with this chain writes the same files
        return res, new

    def measure(self, s: TraceDeployment, p: Params, raw: Path) -> dict[str, Any]:
        ideal, ideal_x = self._run(s, p, move=False)
        run, x = self._run(s, p, move=True)
        opennf = p.move.scheme == "opennf"
        old, new = run.instances["nat1"].summary, x["summary"]
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "runs.json").write_text(json.dumps({
            "ideal": {"root": ideal.root, "nat": ideal.instances["nat1"].summary},
            "run": {"root": run.root, "old": old, "new": new, "root_move_t_ns": x["root_t_ns"],
                    "admitted_at_move": x["admitted"], "opennf": x.get("opennf")}}, indent=1) + "\n")
        frames = traces.read_frames(s.pcap)
        hashes = [flowhash.frame_hash(f) for f in frames]
        flows = _flow_stats(hashes, p.move.buckets, x["admitted"])
        keys = ("total_packets", "tcp_packets")
        ideal_counters = [int(ideal.instances["nat1"].report.get(k, -1)) for k in keys]
        if opennf:  # each instance counts its own packets
            counters = [int(run.instances["nat1"].report.get(k, 0)) + int(x["report"].get(k, 0)) for k in keys]
        else:  # one shared counter in the store, read by either instance
            counters = [int(run.instances["nat1"].report.get(k, -1)) for k in keys]
        counters_equal = counters == ideal_counters
        out, out_ideal = x["out"], ideal_x["out"]
        # as many external ports as without a move (the baseline's instances take theirs from two ranges)
        ports_equal = len(_external_ports(out)) == len(_external_ports(out_ideal))
        kept = _translations_kept(out, hashes)
        # model T (opennf) keeps no state in the store
        store_equal = opennf or _nat_state(x["state"]) == _nat_state(ideal_x["state"])
        arrivals = [c for c, _ in out]
        ms = 1e-6
        if opennf:
            o = x["opennf"]
            move_ns = (o["release_ns"] - o["export_ns"], o["import_ns"] - o["export_ns"],
                       o["release_ns"] - o["import_ns"])
            moved_flows, buffered, entries = flows["after_move"], int(old["events_held"]), o["entries"]
        else:
            move_ns = (new["move_handover_ns"] - old["move_marker_ns"], old["move_release_ns"] - old["move_marker_ns"],
                       new["move_handover_ns"] - old["move_release_ns"])
            moved_flows, buffered, entries = int(new["moved_flows"]), int(new["moved_buffered"]), 0
        end_ns = x["opennf"]["release_ns"] if opennf else new["move_handover_ns"]
        return {
            "move_ms": move_ns[0] * ms, "flush_ms": move_ns[1] * ms, "notify_ms": move_ns[2] * ms,
            "move_total_ms": (end_ns - x["root_t_ns"]) * ms if not opennf else move_ns[0] * ms,
            "moved_flows": moved_flows, "moved_state_flows": flows["with_state"],
            "moved_active_flows": flows["after_move"], "moved_packets": int(new["moved_packets"]),
            "moved_buffered": buffered, "state_entries": entries, "late_moved": int(old["late_moved"]),
            "state_equal": int(counters_equal and ports_equal and kept and store_equal),
            "counters_equal": int(counters_equal), "ports_equal": int(ports_equal), "translations_kept": int(kept),
            "store_state_equal": int(store_equal),
            "delivered_frac": len(set(arrivals)) / s.packets, "sink_duplicates": len(arrivals) - len(set(arrivals)),
            "flow_order_kept": int(_flow_order_kept(arrivals, hashes)), "packets": s.packets,
        }


def _opennf_move(running: dagrun.RunningChain, old_sock: Path, new_sock: Path, new_address: str, move_cmd: str,
                 buckets: int, index: str) -> dict[str, Any]:
    """OpenNF's loss-free move, the controller's side: export the moved flows' per-flow state from the
    old instance (which holds their packets from then on), import it at the new one, point the root's
    split at the new one, release the held packets to it. Times are the instances' CLOCK_MONOTONIC."""
    spec = f"move {MOVE_ID} 5tuple 1 0 {index} 1 {buckets}"
    exported = control.ask(old_sock, f"export {spec}", timeout_s=60)
    head, _, state = exported.partition(" state=")
    ex = control.parse_kv(head)
    imported = control.parse_kv(control.ask(new_sock, f"import {state}", timeout_s=60))
    rerouted = control.parse_kv(control.ask(running.root_sock, f"{move_cmd} nomark"))
    released = control.parse_kv(control.ask(old_sock, f"release {new_address}"))
    return {"export_ns": int(ex["t_ns"]), "entries": int(ex["entries"]), "state_bytes": len(state),
            "import_ns": int(imported["t_ns"]), "release_ns": int(released["t_ns"]),
            "released": int(released["released"]), "t_ns": rerouted["t_ns"], "admitted": rerouted["admitted"]}


def _flow_stats(hashes: list[int | None], buckets: int, admitted: int) -> dict[str, int]:
    """Moved flows with state at the old instance (a packet before the move) and with packets after it."""
    before = {h for h in hashes[:admitted] if h is not None and flowhash.moved(h, buckets)}
    after = {h for h in hashes[admitted:] if h is not None and flowhash.moved(h, buckets)}
    return {"with_state": len(before), "after_move": len(after)}


def _sink_outputs(res: dagrun.ChainRunResult) -> list[tuple[int, bytes]]:
    """(packet counter = 1-based trace position, output frame) in the order they reached the sink."""
    lines = (res.run_dir / "sink-times.txt").read_text().splitlines()
    clocks = [int(line.split()[0]) & ((1 << 56) - 1) for line in lines]
    frames = traces.read_frames(res.out_pcap)
    if len(frames) != len(clocks):
        raise ChainError(f"sink wrote {len(frames)} frames but {len(clocks)} clocks")
    return list(zip(clocks, frames, strict=True))


def _external_port(frame: bytes) -> int | None:
    ip = dpkt.ethernet.Ethernet(frame).data
    if isinstance(ip, dpkt.ip.IP) and ip.src == ipaddress.IPv4Address(EXTERNAL).packed:
        return ip.data.sport
    return None


def _external_ports(out: list[tuple[int, bytes]]) -> set[int]:
    return {p for _, f in out if (p := _external_port(f)) is not None}


def _translations_kept(out: list[tuple[int, bytes]], hashes: list[int | None]) -> bool:
    """Every flow's outbound packets leave with one external port (a moved flow whose translation was
    lost would get a second one)."""
    ports: dict[int | None, set[int]] = defaultdict(set)
    for c, f in out:
        p = _external_port(f)
        if p is not None:
            ports[hashes[c - 1]].add(p)
    return all(len(v) == 1 for v in ports.values())


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
