"""Runs a linear physical chain on a LocalDeployment: root -> NF instances -> sink, with the NF's
state behind one model (T, EO, EO+C, EO+C+NA) in a real redis-server.

This is the vertical slice of the framework manager: it starts every process in its container,
waits for the instances' control sockets, replays the trace, collects the sink's pcap, each
instance's report and per-packet times. The YAML chain compiler (logical DAG -> physical DAG) and
scope-aware re-partitioning from load counters build on this (docs/chc.md, Status)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nfvlab.chc import control
from nfvlab.chc.deploy import LocalDeployment

TUNNEL_PORT = 7000
MODELS = ("T", "EO", "EO+C", "EO+C+NA")


class ChainError(RuntimeError):
    pass


@dataclass
class NFRunResult:
    nf: str
    model: str
    root: dict
    sink: dict
    instances: list[dict]  # each instance's exit summary (received, forwarded, report, store ops)
    reports: list[dict[str, str]]  # each instance's "report" over the control socket
    samples_ns: list[list[int]]  # per-packet processing time inside the NF, per instance
    out_pcap: Path
    clocks: list[tuple[int, int, int]] = field(default_factory=list)  # (clock, xor vector, origin) at the sink


def _json_line(text: str) -> dict:
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    if not lines:
        raise ChainError(f"no JSON summary in output: {text[-500:]!r}")
    return json.loads(lines[-1])


def run_nf(dep: LocalDeployment, bin_dir: Path, pcap: Path, nf: str, model: str, *, instances: int = 1,
           config: dict[str, str] | None = None, store_addresses: list[str] | None = None, vertex: int = 1,
           rate_pps: int = 0, scope: str = "5tuple", tag: str = "run", timeout_s: float = 60.0) -> NFRunResult:
    """One run of `pcap` through `instances` instances of `nf`. Containers named f"{tag}-..." are
    created on first use and reused by later runs with the same tag."""
    if model not in MODELS:
        raise ChainError(f"model must be one of {MODELS}, got {model!r}")
    if model != "T" and not store_addresses:
        raise ChainError(f"model {model} needs store addresses")
    packets = sum(1 for _ in _frames(pcap))

    def box(role: str):
        return dep.containers.get(f"{tag}-{role}") or dep.add(f"{tag}-{role}")

    root_c, sink_c = box("root"), box("sink")
    nf_cs = [box(f"{nf}{i}") for i in range(1, instances + 1)]
    run_dir = dep.log_dir / f"{tag}-{nf}-{model.replace('+', '_')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    out_pcap, clocks_file = run_dir / "out.pcap", run_dir / "clocks.txt"
    sink = dep.start(sink_c, f"{run_dir.name}-sink", [
        str(bin_dir / "chc-sink"), "--listen", f"{sink_c.ip}:{TUNNEL_PORT}", "--pcap-out", str(out_pcap),
        "--clocks-out", str(clocks_file), "--idle-ms", "1500"])
    cfg = ",".join(f"{k}={v}" for k, v in (config or {}).items())
    nf_procs, sockets = [], []
    for i, c in enumerate(nf_cs, start=1):
        sock = run_dir / f"{nf}{i}.sock"
        argv = [str(bin_dir / "chc-nf"), "--nf", nf, "--model", model, "--listen", f"{c.ip}:{TUNNEL_PORT}",
                "--next", f"{sink_c.ip}:{TUNNEL_PORT}", "--vertex", str(vertex), "--instance", str(i),
                "--control", str(sock), "--samples", str(run_dir / f"{nf}{i}.samples"),
                "--vertex-instances", str(instances)]
        if cfg:
            argv += ["--config", cfg]
        if store_addresses:
            argv += ["--store", ",".join(store_addresses)]
        nf_procs.append(dep.start(c, f"{run_dir.name}-{nf}{i}", argv))
        sockets.append(sock)
        if i == 1:  # instance 1 seeds the shared objects; the others start once it is up
            try:
                control.wait_ready(sock)
            except control.ControlError as e:
                raise ChainError(f"{nf_procs[0].name} did not start: {nf_procs[0].stderr()[-800:]}") from e
    try:
        for s, p in zip(sockets, nf_procs, strict=True):
            try:
                control.wait_ready(s)
            except control.ControlError as e:
                raise ChainError(f"{p.name} did not start: {p.stderr()[-800:]}") from e
        root = dep.start(root_c, f"{run_dir.name}-root", [
            str(bin_dir / "chc-root"), "--pcap", str(pcap), "--next",
            ",".join(f"{c.ip}:{TUNNEL_PORT}" for c in nf_cs), "--scope", scope, "--rate-pps", str(rate_pps)])
        if root.wait(timeout_s) != 0:
            raise ChainError(f"chc-root failed: {root.stderr()[-800:]}")
        if sink.wait(timeout_s) != 0:
            raise ChainError(f"chc-sink failed: {sink.stderr()[-800:]}")
        reports = [_space_kv(control.ask(s, "report")) for s in sockets]
        for s in sockets:
            control.ask(s, "stop")
        summaries = []
        for p in nf_procs:
            if p.wait(timeout_s) != 0:
                raise ChainError(f"{p.name} failed: {p.stderr()[-800:]}")
            summaries.append(_json_line(p.stdout()))
    finally:
        for p in [*nf_procs, sink]:
            p.stop()
    samples = [[int(x) for x in (run_dir / f"{nf}{i}.samples").read_text().split()] for i in
               range(1, instances + 1)]
    clocks = [tuple(int(x) for x in ln.split()) for ln in clocks_file.read_text().splitlines()]
    result = NFRunResult(nf, model, _json_line(root.stdout()), _json_line(sink.stdout()), summaries, reports,
                         samples, out_pcap, clocks)
    if result.root.get("sent") != packets:
        raise ChainError(f"root sent {result.root.get('sent')} of {packets} packets")
    return result


def _space_kv(report: str) -> dict[str, str]:
    """NF reports are "key value" lines joined by ';'."""
    out = {}
    for item in report.split(";"):
        parts = item.split(" ", 1)
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def _frames(pcap: Path):
    import dpkt

    with open(pcap, "rb") as f:
        yield from dpkt.pcap.Reader(f)
