"""The fake's traffic model: streams -> offered rate -> counters over time.

Rates are per port. A stream's rate is given by its ``mode.rate`` (``pps``, ``bps_L1``,
``bps_L2`` or ``percentage`` of line rate) and scaled by the start multiplier (``raw`` factor,
or an absolute ``pps`` / ``bps_L1`` / ``bps_L2`` / ``percentage`` total spread over the streams
in proportion to their own rates), as TRex's ``start_traffic`` does. The total is capped at the
port's line rate on L1 (frame + 4 FCS + 20 bytes preamble/IFG), and the device under test between
a port and its pair forwards at most ``dut_capacity_pps``.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

L1_OVERHEAD = 20  # preamble + SFD + inter-frame gap, bytes
FCS = 4


class ModelError(ValueError):
    """A request the real server would reject (bad stream, bad multiplier)."""


@dataclass
class Stream:
    stream_id: int
    frame_bytes: int  # L2 size on the wire, FCS included
    rate_type: str
    rate_value: float
    flows: int
    enabled: bool
    raw: dict

    @classmethod
    def from_json(cls, stream_id: int, js: dict) -> Stream:
        try:
            binary = base64.b64decode(js["packet"]["binary"])
            mode = js["mode"]
            rate = mode["rate"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"stream {stream_id}: malformed stream object ({exc})") from exc
        if mode.get("type") != "continuous":
            raise ModelError(f"stream {stream_id}: the fake server models continuous streams only, "
                             f"got mode {mode.get('type')!r}")
        if rate.get("type") not in ("pps", "bps_L1", "bps_L2", "percentage"):
            raise ModelError(f"stream {stream_id}: unknown rate type {rate.get('type')!r}")
        flows = 1
        for ins in (js.get("vm") or {}).get("instructions", []):
            if ins.get("type") in ("flow_var", "flow_var_rand_limit") and "max_value" in ins:
                flows = max(flows, int(ins["max_value"]) - int(ins["min_value"]) + 1)
        return cls(stream_id, len(binary) + FCS, rate["type"], float(rate["value"]), flows,
                   bool(js.get("enabled", True)), js)

    def pps(self, speed_bps: float) -> float:
        """This stream's own rate in packets/s (before the start multiplier)."""
        if self.rate_type == "pps":
            return self.rate_value
        if self.rate_type == "bps_L2":
            return self.rate_value / (self.frame_bytes * 8)
        if self.rate_type == "bps_L1":
            return self.rate_value / ((self.frame_bytes + L1_OVERHEAD) * 8)
        return self.rate_value / 100.0 * speed_bps / ((self.frame_bytes + L1_OVERHEAD) * 8)


def offered_rates(streams: list[Stream], mul: dict, speed_bps: float) -> list[float]:
    """Per-stream pps after the start multiplier (``start_traffic``'s ``mul``), before any cap."""
    active = [s for s in streams if s.enabled]
    if not active:
        raise ModelError("no enabled streams on the port")
    base = [s.pps(speed_bps) for s in active]
    base_pps = sum(base)
    base_l2 = sum(p * s.frame_bytes * 8 for p, s in zip(base, active, strict=True))
    base_l1 = sum(p * (s.frame_bytes + L1_OVERHEAD) * 8 for p, s in zip(base, active, strict=True))
    kind, value = mul.get("type"), float(mul.get("value", 1.0))
    if mul.get("op", "abs") != "abs":
        raise ModelError(f"multiplier op {mul.get('op')!r} is not modelled (only 'abs')")
    if kind == "raw":
        factor = value
    elif kind == "pps":
        factor = value / base_pps
    elif kind == "bps":  # the client sends L2 bps for "10gbps"
        factor = value / base_l2
    elif kind == "bpsl1":
        factor = value / base_l1
    elif kind == "percentage":
        factor = value / 100.0 * speed_bps / base_l1
    else:
        raise ModelError(f"unknown multiplier type {kind!r}")
    if factor <= 0:
        raise ModelError(f"multiplier must be positive, got {value}")
    return [p * factor for p in base]


@dataclass
class Job:
    """One start_traffic: constant rates from ``start`` for ``duration`` seconds (or until stop)."""

    start: float
    duration: float | None
    tx_pps: float
    tx_bps_l2: float
    frame_bytes_avg: float
    stopped_at: float | None = None
    announced: bool = False  # its end was queued as async events

    def end(self) -> float | None:
        if self.stopped_at is not None:
            return self.stopped_at
        return None if self.duration is None else self.start + self.duration

    def elapsed(self, now: float) -> float:
        end = self.end()
        return max(0.0, (min(now, end) if end is not None else now) - self.start)

    def finished(self, now: float) -> bool:
        end = self.end()
        return end is not None and now >= end


@dataclass
class Counters:
    opackets: float = 0.0
    obytes: float = 0.0
    ipackets: float = 0.0
    ibytes: float = 0.0


@dataclass
class PortModel:
    port_id: int
    speed_gbps: float
    owner: str = ""
    handler: str = ""
    session_id: int = 0
    streams: dict[int, Stream] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)  # every start_traffic so far; counters integrate them

    @property
    def job(self) -> Job | None:
        return self.jobs[-1] if self.jobs else None

    @property
    def speed_bps(self) -> float:
        return self.speed_gbps * 1e9

    def state(self, now: float) -> str:
        if self.job is not None and not self.job.finished(now):
            return "TX"
        return "STREAMS" if self.streams else "IDLE"

    def start(self, mul: dict, duration: float, now: float) -> Job:
        streams = list(self.streams.values())
        rates = offered_rates(streams, mul, self.speed_bps)
        active = [s for s in streams if s.enabled]
        pps = sum(rates)
        l2_bits = sum(r * s.frame_bytes * 8 for r, s in zip(rates, active, strict=True))
        l1_bits = sum(r * (s.frame_bytes + L1_OVERHEAD) * 8 for r, s in zip(rates, active, strict=True))
        cap = min(1.0, self.speed_bps / l1_bits) if l1_bits else 1.0  # a NIC cannot exceed line rate
        job = Job(start=now, duration=None if duration is None or duration < 0 else duration,
                  tx_pps=pps * cap, tx_bps_l2=l2_bits * cap, frame_bytes_avg=l2_bits / 8 / pps)
        self.jobs.append(job)
        return job

    def tx_counters(self, now: float) -> Counters:
        c = Counters()
        for j in self.jobs:
            c.opackets += j.tx_pps * j.elapsed(now)
            c.obytes += j.tx_bps_l2 / 8 * j.elapsed(now)
        return c


def rx_counters(sender: PortModel, now: float, dut_capacity_pps: float | None) -> Counters:
    """What arrives at ``sender``'s pair: its jobs, thinned by the DUT's forwarding capacity."""
    c = Counters()
    for j in sender.jobs:
        fwd = j.tx_pps if dut_capacity_pps is None else min(j.tx_pps, dut_capacity_pps)
        c.ipackets += fwd * j.elapsed(now)
        c.ibytes += fwd * j.frame_bytes_avg * j.elapsed(now)
    return c


def current_rates(port: PortModel, now: float, dut_capacity_pps: float | None) -> tuple[float, float, float, float]:
    """(tx_pps, tx_bps, fwd_pps, fwd_bps) of the job running now, zeros when idle."""
    j = port.job
    if j is None or j.finished(now):
        return 0.0, 0.0, 0.0, 0.0
    fwd = j.tx_pps if dut_capacity_pps is None else min(j.tx_pps, dut_capacity_pps)
    return j.tx_pps, j.tx_bps_l2, fwd, fwd * j.frame_bytes_avg * 8


def now() -> float:
    return time.monotonic()
