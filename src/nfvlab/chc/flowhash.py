"""The splitters' flow hash (chc/src/splitter.cpp scope_hash, "5tuple") in Python, so the harness
knows which flows of a trace a move (chc/move.h) takes: the data plane does not list them. A test
checks it against the flows the new instance reports."""

from __future__ import annotations

import ipaddress

import dpkt

MASK = (1 << 64) - 1
MOVE_BUCKETS = 4096


def _mix(x: int) -> int:  # splitmix64's finaliser, as in the C++
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def tuple_hash(src_ip: int, src_port: int, dst_ip: int, dst_port: int, proto: int) -> int:
    """Direction-independent: both directions of a connection hash alike."""
    a, b = (src_ip << 16) | src_port, (dst_ip << 16) | dst_port
    if a > b:
        a, b = b, a
    return _mix(_mix(a) ^ ((b * 31) & MASK) ^ proto)


def frame_hash(frame: bytes) -> int | None:
    """The 5-tuple hash of an Ethernet/IPv4/TCP|UDP frame (None for anything else: the root sends
    those to its first instance)."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, (dpkt.tcp.TCP, dpkt.udp.UDP)):
        return None
    src, dst = int(ipaddress.IPv4Address(ip.src)), int(ipaddress.IPv4Address(ip.dst))
    return tuple_hash(src, ip.data.sport, dst, ip.data.dport, ip.p)


def moved(h: int, hi: int, base_n: int = 1, from_index: int = 0) -> bool:
    """Does a move of buckets [0, hi) from downstream `from_index` (of `base_n`) take this flow?"""
    return h % base_n == from_index and h % MOVE_BUCKETS < hi
