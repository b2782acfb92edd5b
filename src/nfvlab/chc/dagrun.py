"""Deploys a compiled physical DAG (nfvlab.chc.compile) on a LocalDeployment and runs a trace through
it: every instance, the root and the sink in its own container (cgroup + netns), splitter rules
from the DAG given on each instance's command line (and changed later over its control socket),
the off-path vertices fed by tap splitters. Collects per instance its exit summary, report and
per-packet times inside the NF, and per packet its root-to-sink latency (root and sink stamp each
clock with CLOCK_MONOTONIC, one clock for every namespace of the host)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nfvlab.chc import control
from nfvlab.chc.chain import TUNNEL_PORT, ChainError, _frames, _json_line, _space_kv
from nfvlab.chc.compile import ROOT, SINK, PhysicalDAG, Splitter
from nfvlab.chc.deploy import LocalDeployment
from nfvlab.testbeds.model import Container


@dataclass
class InstanceResult:
    vertex: str
    role: str
    summary: dict  # exit JSON: received, forwarded, dropped, tapped, store_ops, report
    report: dict[str, str]
    samples_ns: list[int]


@dataclass
class ChainRunResult:
    dag: PhysicalDAG
    root: dict
    sink: dict
    instances: dict[str, InstanceResult]  # by role
    latency_ns: list[int]  # root -> sink, per delivered packet, in clock order
    out_pcap: Path
    run_dir: Path
    partition_log: list[dict] = field(default_factory=list)

    def vertex_samples(self, vertex: str) -> list[int]:
        return [s for r in self.instances.values() if r.vertex == vertex for s in r.samples_ns]

    def reports(self, vertex: str) -> list[dict[str, str]]:
        return [r.report for r in self.instances.values() if r.vertex == vertex]


class RunningChain:
    """What a manager loop (e.g. nfvlab.chc.partition) sees while the root replays."""

    def __init__(self, dag: PhysicalDAG, sockets: dict[str, Path], addresses: dict[str, str], root,
                 argv: dict[str, list[str]] | None = None, root_sock: Path | None = None,
                 procs: dict | None = None):
        self.dag, self.sockets, self.addresses, self._root = dag, sockets, addresses, root
        self.argv = argv or {}  # each instance's chc-nf command line (a manager may start a clone from it)
        self.procs = procs or {}  # each instance's process, by role (a manager may stall one by its pid)
        self.root_sock = root_sock  # the root's control socket (root_control=True)
        self.log: list[dict] = []

    def root_stats(self) -> dict[str, str]:
        if self.root_sock is None:
            raise ChainError("the root has no control socket: run_chain(root_control=True)")
        return control.parse_kv(control.ask(self.root_sock, "stats"))

    def stats(self, role: str) -> dict[str, str]:
        return control.parse_kv(control.ask(self.sockets[role], "stats"))

    def split_counts(self, role: str, kind: str = "next") -> list[int]:
        text = self.stats(role)["split" if kind == "next" else "tapsplit"]
        return [int(x) for x in text.split(";") if x]

    def set_split(self, s: Splitter, scope: str) -> None:
        cmd = "split" if s.kind == "next" else "tap"
        control.ask(self.sockets[s.owner], " ".join([cmd, scope, *(self.addresses[d] for d in s.downstream)]))

    def root_running(self) -> bool:
        return self._root.running()


def _endpoints(addresses: dict[str, str], s: Splitter) -> str:
    return ",".join(addresses[d] for d in s.downstream)


def _read_pairs(path: Path) -> dict[int, int]:
    out = {}
    for line in path.read_text().splitlines():
        k, v = line.split()
        out[int(k)] = int(v)
    return out


def run_chain(dep: LocalDeployment, bin_dir: Path, dag: PhysicalDAG, pcap: Path, *,
              store_addresses: list[str] | None = None, rate_pps: int = 0, tag: str = "dag",
              timeout_s: float = 120.0, manager: Callable[[RunningChain], None] | None = None,
              idle_ms: int = 1500, root_args: tuple[str, ...] = (),
              nf_args: dict[str, tuple[str, ...]] | None = None, root_control: bool = False) -> ChainRunResult:
    """One run of `pcap` through `dag`. Containers "<tag>-<role>" are created on first use and reused
    by later runs with the same tag (the same DAG shape). `manager`, if given, runs while the root
    replays (it may re-split over the control sockets). `root_args`: more chc-root options (the
    correctness metadata of issue 12: --deletes, --log, --xor-check, --persist-clock, with --store
    added); with --deletes the last on-path vertex's instances send the root their delete requests.
    `nf_args`: more chc-nf options per vertex name (the baselines of §3.6.3: --pause-us, --opennf).
    `root_control`: the root gets a control socket (RunningChain.root_sock), e.g. for a manager that
    clones a straggler (R5)."""
    needs_store = any(i.model != "T" for i in dag.instances)
    if needs_store and not store_addresses:
        raise ChainError(f"chain {dag.name}: models other than T need store addresses")
    packets = sum(1 for _ in _frames(pcap))

    def box(role: str) -> Container:
        return dep.containers.get(f"{tag}-{role}") or dep.add(f"{tag}-{role}")

    boxes = {r: box(r) for r in [ROOT, SINK, *(i.role for i in dag.instances)]}
    addresses = {r: f"{c.ip}:{TUNNEL_PORT}" for r, c in boxes.items()}
    models = "-".join(sorted({i.model.replace("+", "_") for i in dag.instances}))
    run_dir = dep.log_dir / f"{tag}-{dag.name}-{models}"
    run_dir.mkdir(parents=True, exist_ok=True)
    out_pcap = run_dir / "out.pcap"
    sink = dep.start(boxes[SINK], f"{run_dir.name}-sink", [
        str(bin_dir / "chc-sink"), "--listen", addresses[SINK], "--pcap-out", str(out_pcap),
        "--times-out", str(run_dir / "sink-times.txt"), "--idle-ms", str(idle_ms)])
    procs, sockets, argvs = {}, {}, {}
    # Unix socket paths hold at most 107 bytes: a checkout deep in the file system must not matter
    sock_dir = Path(tempfile.mkdtemp(prefix=f"nfvlab-chc{dep.tag}-"))
    try:
        for inst in dag.start_order():
            sock = sock_dir / f"{inst.role}.sock"
            argv = [str(bin_dir / "chc-nf"), "--nf", inst.nf, "--model", inst.model, "--listen", addresses[inst.role],
                    "--vertex", str(inst.vertex_id), "--instance", str(inst.index),
                    "--vertex-instances", str(inst.parallelism), "--control", str(sock),
                    "--samples", str(run_dir / f"{inst.role}.samples")]
            nxt = dag.splitter(inst.role)
            if nxt.downstream:
                argv += ["--next", _endpoints(addresses, nxt), "--scope", nxt.scope]
            tap = [s for s in dag.splitters if s.owner == inst.role and s.kind == "tap"]
            if tap:
                argv += ["--tap", _endpoints(addresses, tap[0]), "--tap-scope", tap[0].scope]
            if inst.config:
                argv += ["--config", inst.config_arg()]
            if inst.model != "T":
                argv += ["--store", ",".join(store_addresses or [])]
            argv += list((nf_args or {}).get(inst.vertex, ()))
            if "--deletes" in root_args and inst.vertex == dag.path[-1]:
                argv += ["--root", addresses[ROOT], "--last"]
            procs[inst.role] = dep.start(boxes[inst.role], f"{run_dir.name}-{inst.role}", argv)
            argvs[inst.role] = argv
            sockets[inst.role] = sock
            if inst.index == 1:  # instance 1 seeds the vertex's shared objects before the others start
                _ready(sock, procs[inst.role])
        for role, sock in sockets.items():
            _ready(sock, procs[role])
        root_split = dag.splitter(ROOT)
        root_sock = sock_dir / "root.sock" if root_control else None
        root = dep.start(boxes[ROOT], f"{run_dir.name}-root", [
            str(bin_dir / "chc-root"), "--pcap", str(pcap), "--next", _endpoints(addresses, root_split),
            "--scope", root_split.scope, "--rate-pps", str(rate_pps), "--times-out", str(run_dir / "root-times.txt"),
            "--bind", addresses[ROOT], *root_args, *(["--control", str(root_sock)] if root_sock else []),
            *(["--store", ",".join(store_addresses or [])] if root_args and store_addresses else [])])
        if root_sock is not None:
            _ready(root_sock, root)
        running = RunningChain(dag, sockets, addresses, root, argvs, root_sock, procs)
        if manager is not None:
            manager(running)
        if root.wait(timeout_s) != 0:
            raise ChainError(f"chc-root failed: {root.stderr()[-800:]}")
        if sink.wait(timeout_s) != 0:
            raise ChainError(f"chc-sink failed: {sink.stderr()[-800:]}")
        _wait_taps(running, timeout_s)
        reports = {r: _space_kv(control.ask(s, "report")) for r, s in sockets.items()}
        for s in sockets.values():
            control.ask(s, "stop")
        summaries = {}
        for role, p in procs.items():
            if p.wait(timeout_s) != 0:
                raise ChainError(f"{p.name} failed: {p.stderr()[-800:]}")
            summaries[role] = _json_line(p.stdout())
    finally:
        for p in [*procs.values(), sink]:
            p.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)
    root_json = _json_line(root.stdout())
    if root_json.get("sent") != packets:
        raise ChainError(f"root sent {root_json.get('sent')} of {packets} packets")
    sent, arrived = _read_pairs(run_dir / "root-times.txt"), _read_pairs(run_dir / "sink-times.txt")
    latency = [arrived[c] - sent[c] for c in sorted(arrived) if c in sent]
    instances = {}
    for inst in dag.instances:
        samples = [int(x) for x in (run_dir / f"{inst.role}.samples").read_text().split()]
        instances[inst.role] = InstanceResult(inst.vertex, inst.role, summaries[inst.role], reports[inst.role], samples)
    return ChainRunResult(dag, root_json, _json_line(sink.stdout()), instances, latency, out_pcap, run_dir,
                          running.log)


def _ready(sock: Path, proc) -> None:
    try:
        control.wait_ready(sock)
    except control.ControlError as e:
        raise ChainError(f"{proc.name} did not start: {proc.stderr()[-800:]}") from e


def _wait_taps(running: RunningChain, timeout_s: float) -> None:
    """Off-path vertices have no sink telling us they drained: wait until their instances have
    received every copy the tap splitters sent."""
    dag = running.dag
    for v in dag.off_path:
        sources = [s.owner for s in dag.splitters if s.kind == "tap" and s.vertex == v]
        sent = sum(int(running.stats(o)["tapped"]) for o in sources)
        deadline = time.monotonic() + timeout_s
        while sum(int(running.stats(i.role)["received"]) for i in dag.of_vertex(v)) < sent:
            if time.monotonic() > deadline:
                raise ChainError(f"off-path vertex {v} received fewer than the {sent} tapped packets")
            time.sleep(0.05)
