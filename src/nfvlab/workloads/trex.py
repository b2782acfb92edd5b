"""TRex traffic: UDP/TCP streams at a rate, frame size and flow count, through TRex's own client.

The client is the official stateless API, unmodified, from PyPI's ``lbr-trex-client``
(``import lbr_trex_client`` puts TRex's ``trex`` package on ``sys.path``; then
``from trex.stl.api import ...``). One :func:`run_trex` call is one measurement: connect, take the
two ports (``reset``), add one continuous stream on the TX port, clear the counters, start for
``duration_s``, ``wait_on_traffic``, read the port counters, release, disconnect. The flows are
made by TRex's field engine (STLVM): the source address runs through ``flows`` consecutive
addresses, with the IPv4 and L4 checksums fixed per packet.

Sizes follow TRex: ``frame_bytes`` is the L2 frame including the 4-byte FCS (64 = minimum
Ethernet frame); L1 rates add 20 bytes (preamble + inter-frame gap) per frame.

:meth:`TrexResult.row` gives the row fields: offered and achieved TX/RX rates, packets, drops.
Against a real TRex the numbers are the NIC's; against :mod:`nfvlab.workloads.trexfake` they are
the fake's model (docs/trex.md).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "TrexError", "TrexResult", "TrexServer", "TrexTraffic", "build_stream", "import_trex", "run_session", "run_trex",
]

L1_OVERHEAD = 20
FCS = 4
MIN_FRAME, MAX_FRAME = 64, 9216
Proto = Literal["udp", "tcp"]


class TrexError(RuntimeError):
    """The traffic description is invalid, or TRex refused or failed the run."""


class TrexTraffic(BaseModel):
    """What to send: one continuous stream from ``tx_port`` to ``rx_port``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    proto: Proto = "udp"
    rate_pps: float | None = Field(None, gt=0, description="offered rate in packets/s")
    rate_mbps: float | None = Field(None, gt=0, description="offered rate in Mbit/s on L1 (the line-rate view)")
    frame_bytes: int = Field(64, ge=MIN_FRAME, le=MAX_FRAME, description="L2 frame size incl. FCS")
    flows: int = Field(1, ge=1, le=65536, description="distinct source addresses (field engine)")
    duration_s: float = Field(10.0, gt=0, le=86400)
    tx_port: int = Field(0, ge=0)
    rx_port: int = Field(1, ge=0)
    src_ip: ipaddress.IPv4Address = ipaddress.IPv4Address("198.18.0.1")
    dst_ip: ipaddress.IPv4Address = ipaddress.IPv4Address("198.19.0.1")
    src_port: int = Field(1025, ge=1, le=65535)
    dst_port: int = Field(5001, ge=1, le=65535)

    @model_validator(mode="after")
    def _check(self) -> TrexTraffic:
        if (self.rate_pps is None) == (self.rate_mbps is None):
            raise ValueError("give exactly one of rate_pps or rate_mbps")
        if self.tx_port == self.rx_port:
            raise ValueError(f"tx_port and rx_port must differ (both {self.tx_port})")
        if int(self.src_ip) + self.flows - 1 > int(ipaddress.IPv4Address("255.255.255.254")):
            raise ValueError("src_ip + flows runs past the IPv4 space")
        return self

    @classmethod
    def parse(cls, data: dict, where: str = "trex") -> TrexTraffic:
        """Validate ``data``; errors name the field: ``where: field: problem``."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = [f"{where}: {'.'.join(map(str, e['loc'])) or 'traffic'}: {e['msg']}" for e in exc.errors()]
            raise TrexError("invalid TRex traffic\n  - " + "\n  - ".join(problems)) from None

    @property
    def offered_pps(self) -> float:
        if self.rate_pps is not None:
            return self.rate_pps
        return self.rate_mbps * 1e6 / ((self.frame_bytes + L1_OVERHEAD) * 8)


@dataclass(frozen=True)
class TrexServer:
    """Where TRex's server runs: its RPC (REQ/REP) and async (PUB) ports."""

    host: str = "127.0.0.1"
    sync_port: int = 4501
    async_port: int = 4500
    timeout_s: float = 10.0
    rx_settle_s: float = 0.1  # after TX ends, let packets in flight through the DUT reach the RX port


@dataclass(frozen=True)
class TrexResult:
    proto: str
    frame_bytes: int
    flows: int
    duration_s: float
    offered_pps: float
    tx_packets: int
    rx_packets: int
    tx_bytes: int
    rx_bytes: int
    tx_errors: int
    rx_errors: int
    wall_s: float  # start -> wait_on_traffic returned, as this process saw it

    @property
    def dropped_packets(self) -> int:
        return max(0, self.tx_packets - self.rx_packets)

    def row(self) -> dict[str, float | int | str]:
        """Row fields for results.csv (achieved rates = counters / the run's duration)."""
        d = self.duration_s
        tx_pps, rx_pps = self.tx_packets / d, self.rx_packets / d
        l1 = L1_OVERHEAD * 8
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("tx_errors", "rx_errors")},
            "tx_pps": tx_pps, "rx_pps": rx_pps,
            "tx_l1_mbps": (self.tx_bytes * 8 + self.tx_packets * l1) / d / 1e6,
            "rx_l1_mbps": (self.rx_bytes * 8 + self.rx_packets * l1) / d / 1e6,
            "dropped_packets": self.dropped_packets,
            "drop_ratio": self.dropped_packets / self.tx_packets if self.tx_packets else float("nan"),
            "tx_errors": self.tx_errors, "rx_errors": self.rx_errors,
        }


def import_trex():
    """TRex's stateless API module (``trex.stl.api``), imported through ``lbr_trex_client``."""
    zmq = sys.modules.get("zmq")
    if zmq is not None and "lbr_trex_client" not in str(getattr(zmq, "__file__", "")):
        raise TrexError("the TRex client cannot be imported into a process that already imported pyzmq "
                        "(it brings its own ctypes zmq); run_trex runs it in a child process")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its bundled scapy 2.4.3 warns about TripleDES
            import lbr_trex_client  # noqa: F401  puts TRex's 'trex' package on sys.path
            from trex.stl import api
    except ImportError as exc:
        raise TrexError(f"the TRex client is not installed ({exc}): pip install 'lbr-trex-client==3.4.0' "
                        "(it needs Python < 3.12)") from exc
    return api


def build_stream(traffic: TrexTraffic, api=None):
    """The STLStream for ``traffic``: headers, padding to the frame size, the flow field engine."""
    api = api or import_trex()
    l4 = (api.UDP(sport=traffic.src_port, dport=traffic.dst_port) if traffic.proto == "udp"
          else api.TCP(sport=traffic.src_port, dport=traffic.dst_port, flags="A"))
    base = api.Ether() / api.IP(src=str(traffic.src_ip), dst=str(traffic.dst_ip)) / l4
    pad = traffic.frame_bytes - FCS - len(base)
    if pad < 0:
        raise TrexError(f"trex: frame_bytes: {traffic.frame_bytes} is smaller than the {traffic.proto} headers "
                        f"({len(base) + FCS} bytes with FCS)")
    pkt = base / (b"\x00" * pad)
    instructions = []
    if traffic.flows > 1:
        last = traffic.src_ip + (traffic.flows - 1)
        instructions += [api.STLVmFlowVar(name="src", min_value=str(traffic.src_ip), max_value=str(last),
                                          size=4, op="inc"),
                         api.STLVmWrFlowVar(fv_name="src", pkt_offset="IP.src")]
    l4_type = api.CTRexVmInsFixHwCs.L4_TYPE_UDP if traffic.proto == "udp" else api.CTRexVmInsFixHwCs.L4_TYPE_TCP
    instructions.append(api.STLVmFixChecksumHw(l3_offset="IP", l4_offset=traffic.proto.upper(), l4_type=l4_type))
    mode = (api.STLTXCont(pps=traffic.rate_pps) if traffic.rate_pps is not None
            else api.STLTXCont(bps_L1=traffic.rate_mbps * 1e6))
    return api.STLStream(packet=api.STLPktBuilder(pkt=pkt, vm=api.STLScVmRaw(instructions)), mode=mode)


def run_session(traffic: TrexTraffic, server: TrexServer) -> TrexResult:
    """One measurement in this process (the TRex client is imported here); ports are released and
    the client disconnected on every path. Use :func:`run_trex`, which runs this in a child."""
    api = import_trex()
    ports = [traffic.tx_port, traffic.rx_port]
    client = api.STLClient(server=server.host, sync_port=server.sync_port, async_port=server.async_port,
                           verbose_level="error", sync_timeout=server.timeout_s, async_timeout=server.timeout_s)
    try:
        client.connect()
        have = client.get_all_ports()
        missing = [p for p in ports if p not in have]
        if missing:
            raise TrexError(f"trex: tx_port/rx_port {missing} not on the server (it has ports {have})")
        client.reset(ports=ports)
        client.add_streams(build_stream(traffic, api), ports=[traffic.tx_port])
        client.clear_stats(ports=ports)
        t0 = time.monotonic()
        client.start(ports=[traffic.tx_port], mult="1", duration=traffic.duration_s)
        client.wait_on_traffic(ports=[traffic.tx_port], timeout=traffic.duration_s + 30 + server.timeout_s)
        wall = time.monotonic() - t0
        time.sleep(server.rx_settle_s)
        stats = client.get_stats(ports=ports)
    except api.TRexError as exc:
        raise TrexError(f"TRex at {server.host}:{server.sync_port}: {exc}") from exc
    finally:
        try:
            if client.is_connected():
                client.release(ports=ports)
        except api.TRexError:
            pass
        client.disconnect()
    tx, rx = stats[traffic.tx_port], stats[traffic.rx_port]
    return TrexResult(proto=traffic.proto, frame_bytes=traffic.frame_bytes, flows=traffic.flows,
                      duration_s=traffic.duration_s, offered_pps=traffic.offered_pps,
                      tx_packets=int(tx["opackets"]), rx_packets=int(rx["ipackets"]), tx_bytes=int(tx["obytes"]),
                      rx_bytes=int(rx["ibytes"]), tx_errors=int(tx["oerrors"]), rx_errors=int(rx["ierrors"]),
                      wall_s=wall)


def run_trex(traffic: TrexTraffic, server: TrexServer = TrexServer()) -> TrexResult:
    """One measurement on ``server``, with the TRex client in a child process.

    Why a child: ``import trex`` puts the client's vendored libraries first on ``sys.path`` and
    evicts already-imported modules of the same names (its own pyyaml 3.11, scapy 2.4.3 and a
    ctypes pyzmq with a bundled libzmq). Kept in a child, the harness keeps its own yaml and zmq.
    """
    request = json.dumps({"traffic": traffic.model_dump(mode="json"), "server": asdict(server)})
    timeout = traffic.duration_s + 60 + 3 * server.timeout_s
    try:
        proc = subprocess.run([sys.executable, "-m", "nfvlab.workloads.trex"], input=request, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TrexError(f"TRex session at {server.host}:{server.sync_port} did not finish "
                        f"within {timeout:.0f} s") from exc
    reply = _last_json(proc.stdout)
    if proc.returncode != 0 or reply is None:
        raise TrexError(f"TRex session failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    if "error" in reply:
        raise TrexError(reply["error"])
    return TrexResult(**reply["result"])


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def _main() -> int:
    """Child side of :func:`run_trex`: one JSON request on stdin, one JSON line on stdout."""
    request = json.loads(sys.stdin.read())
    try:
        result = run_session(TrexTraffic.model_validate(request["traffic"]), TrexServer(**request["server"]))
    except TrexError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 0
    print(json.dumps({"result": asdict(result)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
