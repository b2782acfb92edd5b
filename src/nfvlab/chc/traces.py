"""Synthetic traces for CHC (the paper's campus-to-EC2 traces are not public): pcaps with a chosen
number of connections and packets, a packet-size distribution around a median, failed connection
attempts, port scanners and Trojan sequences (SSH, then FTP downloads of HTML, ZIP and EXE files,
then IRC) at chosen points. Frames are built with dpkt (real checksums); any user pcap works too.

Addresses: internal hosts in 198.18.32.0/22, external servers in 198.18.36.0/22 (both inside the
helper's 198.18.32.0/20), so the NAT's internal prefix is 198.18.32.0/22 by default.
"""

from __future__ import annotations

import ipaddress
import math
import random
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import dpkt

INTERNAL = ipaddress.ip_network("198.18.32.0/22")
EXTERNAL = ipaddress.ip_network("198.18.36.0/22")
MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
HEADERS = 14 + 20 + 20  # Ethernet + IPv4 + TCP without options


@dataclass(frozen=True)
class TraceSpec:
    connections: int = 50  # successful TCP connections (handshake, data, FIN)
    packets_per_connection: int = 20  # mean; each connection's count is geometric around it (>= 4)
    median_size: int = 368  # median frame size in bytes (Trace1 368, Trace2 1434)
    udp_flows: int = 0
    failed_attempts: int = 0  # SYNs answered by RST
    scanners: int = 0  # hosts sending SYNs to many addresses, most refused
    scan_targets: int = 20
    trojans: int = 0  # hosts performing the full Trojan sequence
    reordered_trojans: int = 0  # hosts doing the same steps in another order (not a Trojan)
    # R4 (§3.6.3): each Trojan's five step packets (SSH SYN, the three RETRs, IRC SYN) back to back in
    # the trace, so upstream paths of different speed can reorder them (the connections' other packets
    # come before and after); False: each step a whole connection 1-5 ms after the last
    trojan_burst: bool = False
    hosts: int = 20
    seed: int = 1
    # connections start uniformly over this many seconds of trace time (None: 10 ms per connection,
    # so few overlap); shorter means more connections open at once (R2 moves flows mid-connection)
    duration_s: float | None = None


@dataclass
class Packet:
    t: float
    frame: bytes


@dataclass
class TraceInfo:
    path: Path
    packets: int
    connections: int
    scanner_hosts: list[str] = field(default_factory=list)
    trojan_hosts: list[str] = field(default_factory=list)
    reordered_hosts: list[str] = field(default_factory=list)
    normal_hosts: list[str] = field(default_factory=list)


def _ip(a: ipaddress.IPv4Address) -> bytes:
    return socket.inet_aton(str(a))


def tcp_frame(src, dst, sport: int, dport: int, flags: int, payload: bytes = b"", seq: int = 0, ack: int = 0) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, win=65535, data=payload)
    ip = dpkt.ip.IP(src=_ip(src), dst=_ip(dst), p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=MAC_A, dst=MAC_B, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def udp_frame(src, dst, sport: int, dport: int, payload: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=_ip(src), dst=_ip(dst), p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=udp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=MAC_A, dst=MAC_B, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


class _Builder:
    def __init__(self, spec: TraceSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.packets: list[Packet] = []
        self.next_port = 20000
        if 10 + spec.hosts > INTERNAL.num_addresses - 1:
            raise ValueError(f"a trace has at most {INTERNAL.num_addresses - 11} internal hosts ({INTERNAL}), "
                             f"got hosts={spec.hosts}")
        self.hosts = [INTERNAL[10 + i] for i in range(spec.hosts)]

    def port(self) -> int:
        self.next_port += 1
        return self.next_port

    def server(self):
        return EXTERNAL[self.rng.randrange(2, 1000)]

    def payload_len(self) -> int:
        # lognormal around the median frame size, clipped to a 1514-byte Ethernet frame
        size = int(self.spec.median_size * math.exp(self.rng.gauss(0, 0.6)))
        return max(0, min(1514, size) - HEADERS)

    def connection(self, t: float, client, server, dport: int, payloads: list[bytes] | None = None) -> float:
        """A full TCP connection; returns the time of its last packet."""
        sport, F = self.port(), dpkt.tcp
        n = max(4, int(self.rng.expovariate(1 / self.spec.packets_per_connection))) if payloads is None else 0
        seq_c, seq_s = 1000, 5000
        steps = [(client, server, sport, dport, F.TH_SYN, b""),
                 (server, client, dport, sport, F.TH_SYN | F.TH_ACK, b""),
                 (client, server, sport, dport, F.TH_ACK, b"")]
        datas = payloads if payloads is not None else [b"x" * self.payload_len() for _ in range(max(0, n - 4))]
        for i, d in enumerate(datas):
            if i % 2 == 0:
                steps.append((client, server, sport, dport, F.TH_ACK | F.TH_PUSH, d))
            else:
                steps.append((server, client, dport, sport, F.TH_ACK | F.TH_PUSH, d))
        steps.append((client, server, sport, dport, F.TH_FIN | F.TH_ACK, b""))
        for src, dst, sp, dp, flags, data in steps:
            t += self.rng.uniform(1e-5, 1e-3)
            if src == client:
                self.packets.append(Packet(t, tcp_frame(src, dst, sp, dp, flags, data, seq_c, seq_s)))
                seq_c += len(data)
            else:
                self.packets.append(Packet(t, tcp_frame(src, dst, sp, dp, flags, data, seq_s, seq_c)))
                seq_s += len(data)
        return t

    def refused(self, t: float, client, server, dport: int) -> None:
        sport, F = self.port(), dpkt.tcp
        self.packets.append(Packet(t, tcp_frame(client, server, sport, dport, F.TH_SYN)))
        self.packets.append(Packet(t + 1e-4, tcp_frame(server, client, dport, sport, F.TH_RST | F.TH_ACK)))

    def trojan_burst(self, t: float, host, order: list[str]) -> None:
        """The steps' five event packets consecutively at t (1 µs apart), in the given order; the FTP
        session's handshake before them, every connection's remaining packets after."""
        F, ftp, fport = dpkt.tcp, self.server(), self.port()
        add = self.packets.append
        add(Packet(t - 1e-3, tcp_frame(host, ftp, fport, 21, F.TH_SYN, b"", 1000)))
        add(Packet(t - 9e-4, tcp_frame(ftp, host, 21, fport, F.TH_SYN | F.TH_ACK, b"", 5000, 1001)))
        add(Packet(t - 8e-4, tcp_frame(host, ftp, fport, 21, F.TH_ACK, b"", 1001, 5001)))
        seq = 1001
        for k, step in enumerate(order):
            at = t + k * 1e-6
            if step in ("ssh", "irc"):
                server, dport, sport = self.server(), 22 if step == "ssh" else 6667, self.port()
                add(Packet(at, tcp_frame(host, server, sport, dport, F.TH_SYN, b"", 1000)))
                later = at + 1e-3 + k * 1e-4  # the server's answer and the client's FIN come after the burst
                add(Packet(later, tcp_frame(server, host, dport, sport, F.TH_SYN | F.TH_ACK, b"", 7000, 1001)))
                add(Packet(later + 1e-5, tcp_frame(host, server, sport, dport, F.TH_FIN | F.TH_ACK, b"", 1001, 7001)))
            else:
                cmd = f"RETR file.{step}\r\n".encode()
                add(Packet(at, tcp_frame(host, ftp, fport, 21, F.TH_ACK | F.TH_PUSH, cmd, seq, 5001)))
                seq += len(cmd)
        add(Packet(t + 2e-3, tcp_frame(host, ftp, fport, 21, F.TH_FIN | F.TH_ACK, b"", seq, 5001)))

    def trojan(self, t: float, host, order: list[str]) -> None:
        """Trojan steps in the given order: ssh, html, zip, exe (FTP downloads), irc."""
        ftp = self.server()
        for step in order:
            if step == "ssh":
                t = self.connection(t, host, self.server(), 22, [b"SSH-2.0-OpenSSH_9.2\r\n"])
            elif step == "irc":
                t = self.connection(t, host, self.server(), 6667, [b"NICK bot\r\n", b":srv 001 bot :Welcome\r\n"])
            else:  # an FTP control session that downloads one file of that type
                t = self.connection(t, host, ftp, 21, [f"RETR file.{step}\r\n".encode(), b"150 Opening\r\n"])
            t += self.rng.uniform(1e-3, 5e-3)


def spec_from_params(params: Any, **extra: Any) -> TraceSpec:
    """An experiment's trace parameters (a pydantic model whose fields are named as TraceSpec's; others
    are ignored) as a TraceSpec, with `extra` on top; hosts default to one per five connections (>= 4)."""
    names = {f.name for f in fields(TraceSpec)}
    values = {k: v for k, v in params.model_dump().items() if k in names}
    values.setdefault("hosts", max(4, values.get("connections", TraceSpec.connections) // 5))
    return TraceSpec(**{**values, **extra})


def generate(spec: TraceSpec, path: Path) -> TraceInfo:
    b = _Builder(spec)
    duration = spec.duration_s if spec.duration_s is not None else max(1.0, spec.connections * 0.01)
    info = TraceInfo(path, 0, spec.connections)
    normal = list(b.hosts)
    for _ in range(spec.connections):
        b.connection(b.rng.uniform(0, duration), b.rng.choice(normal), b.server(), b.rng.choice([80, 443, 8080]))
    for _ in range(spec.udp_flows):
        t, client, server, sport = b.rng.uniform(0, duration), b.rng.choice(normal), b.server(), b.port()
        for _ in range(max(1, spec.packets_per_connection // 2)):
            t += b.rng.uniform(1e-5, 1e-3)
            b.packets.append(Packet(t, udp_frame(client, server, sport, 53, b"q" * max(0, b.payload_len() - 8))))
    for _ in range(spec.failed_attempts):
        b.refused(b.rng.uniform(0, duration), b.rng.choice(normal), b.server(), 80)
    for k in range(spec.scanners):
        scanner = INTERNAL[200 + k]
        info.scanner_hosts.append(str(scanner))
        t = b.rng.uniform(0, duration / 2)
        for i in range(spec.scan_targets):
            target = EXTERNAL[1 + i]
            t += b.rng.uniform(1e-4, 1e-3)
            if i % 5 == 4:  # now and then a port is open: a complete (short) connection
                t = b.connection(t, scanner, target, 80, [b"HEAD / HTTP/1.0\r\n\r\n"])
            else:
                b.refused(t, scanner, target, b.rng.choice([22, 23, 25, 445, 3389]))
    sequence = ["ssh", "html", "zip", "exe", "irc"]
    for k in range(spec.trojans):
        host = INTERNAL[300 + k]
        info.trojan_hosts.append(str(host))
        (b.trojan_burst if spec.trojan_burst else b.trojan)(b.rng.uniform(0, duration / 2), host, sequence)
    for k in range(spec.reordered_trojans):
        host = INTERNAL[400 + k]
        info.reordered_hosts.append(str(host))
        (b.trojan_burst if spec.trojan_burst else b.trojan)(b.rng.uniform(0, duration / 2), host,
                                                             ["irc", "html", "ssh", "exe", "zip"])
    b.packets.sort(key=lambda p: p.t)
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for p in b.packets:
            w.writepkt(p.frame, ts=p.t)
    info.packets = len(b.packets)
    info.normal_hosts = [str(h) for h in normal]
    return info


def read_frames(path: Path) -> list[bytes]:
    with open(path, "rb") as f:
        return [bytes(buf) for _, buf in dpkt.pcap.Reader(f)]


def write_frames(path: Path, frames: list[bytes]) -> None:
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for i, fr in enumerate(frames):
            w.writepkt(fr, ts=i * 1e-4)
