"""Runs COE cases: the ideal single-instance run once per trace, then each faulted run and its verdict.
Used by `nfvlab chc fault` (docs/chc.md "Correctness") and the tests."""

from __future__ import annotations

import json
import subprocess
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from nfvlab.chc import coe, faults, traces
from nfvlab.chc import store as chc_store
from nfvlab.chc.chain import ChainError
from nfvlab.chc.control import ControlError
from nfvlab.chc.deploy import LocalDeployment

NAT_CONFIG = {"external": "198.18.40.100", "internal": "198.18.32.0/22", "ports": "10000-10999"}
DEFAULT_CONFIG = {"nat": NAT_CONFIG}


@dataclass
class Case:
    nf: str = "nat"
    model: str = "EO+C+NA"
    instances: int = 1
    connections: int = 40
    packets_per_connection: int = 12
    trace_seed: int = 7
    rate_pps: int = 2000

    def trace_spec(self) -> traces.TraceSpec:
        return traces.TraceSpec(connections=self.connections, packets_per_connection=self.packets_per_connection,
                                udp_flows=4, seed=self.trace_seed)


@dataclass
class Outcome:
    seed: int | None
    fault: faults.Fault
    options: faults.Options
    verdict: coe.Verdict
    events: list[dict]

    def line(self) -> str:
        f = self.fault
        where = f"at packet {f.at_packet}" if f.at_packet is not None else f"at {f.at_s} s"
        extra = f" {f.delay_ms:.0f} ms" if f.kind.startswith("delay") else ""
        inst = f" instance {f.instance}" if f.kind.endswith("-nf") else ""
        head = f"seed {self.seed}: " if self.seed is not None else ""
        # The root pauses at the asked-for index; the fault lands right after it resumes.
        sent = next((e.get("root_sent") for e in self.events if e["event"] == "trigger"), None)
        landed = f" (landed at {sent})" if sent is not None else ""
        return f"{head}{f.kind}{inst}{extra} {where}{landed}: {self.verdict.text()}"

    def as_dict(self) -> dict:
        return {"seed": self.seed, "fault": asdict(self.fault), "options": asdict(self.options),
                "ok": self.verdict.ok, "problems": self.verdict.problems, "numbers": self.verdict.numbers,
                "events": self.events}


class Session:
    """One deployment, one store, one trace; the ideal run is made on first use."""

    def __init__(self, dep: LocalDeployment, bin_dir: Path, case: Case, work: Path,
                 store: chc_store.Store | None = None):
        self.dep, self.bin_dir, self.case = dep, bin_dir, case
        self.store = store or dep.start_store(1)
        self.pcap = work / f"trace-{case.trace_seed}.pcap"
        traces.generate(case.trace_spec(), self.pcap)
        frames = traces.read_frames(self.pcap)
        # The root stamps clocks 1.. in pcap order (root id 1 in the top 8 bits).
        self.inputs = {(1 << 56) + k + 1: f for k, f in enumerate(frames)}
        self.packets = len(frames)
        self._ideal: faults.RunResult | None = None

    def _run(self, fault: faults.Fault, options: faults.Options, instances: int) -> faults.RunResult:
        for srv in self.store.servers:  # a kill-store run leaves the server dead: start it again
            if srv.popen is None or srv.popen.poll() is not None:
                srv.start()
        return faults.run(self.dep, self.bin_dir, self.store, self.pcap, self.case.nf, self.case.model,
                          instances=instances, config=DEFAULT_CONFIG.get(self.case.nf), fault=fault,
                          options=options, rate_pps=self.case.rate_pps, tag="coe")

    def ideal(self) -> faults.RunResult:
        if self._ideal is None:
            self._ideal = self._run(faults.Fault(), faults.Options(), 1)
        return self._ideal

    def case_for(self, fault: faults.Fault, options: faults.Options | None = None, seed: int | None = None) -> Outcome:
        options = options or faults.Options()
        ideal = self.ideal()
        try:
            run = self._run(fault, options, self.case.instances)
        except (ChainError, ControlError, subprocess.TimeoutExpired, OSError) as e:
            # A run that does not finish fails the case (never a pass); where it broke is kept.
            frames = traceback.extract_tb(e.__traceback__)[-4:]
            where = " <- ".join(f"{Path(fr.filename).name}:{fr.lineno}" for fr in reversed(frames))
            return Outcome(seed, fault, options,
                           coe.Verdict(False, [f"the chain did not finish: {type(e).__name__}: {e} (at {where})"]), [])
        killed = None  # with one instance every clock went to the killed one
        verdict = coe.check(ideal, run, self.inputs, killed)
        return Outcome(seed, fault, options, verdict, run.events)

    def seed(self, seed: int, options: faults.Options | None = None,
             kinds: tuple[str, ...] = coe.SUITE_KINDS) -> Outcome:
        return self.case_for(coe.fault_for_seed(seed, self.packets, self.case.instances, kinds), options, seed)


def parse_seeds(text: str) -> list[int]:
    """"1-20,31" -> [1, ..., 20, 31]."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def write_outcomes(path: Path, outcomes: list[Outcome]) -> None:
    path.write_text("\n".join(json.dumps(o.as_dict()) for o in outcomes) + "\n")
