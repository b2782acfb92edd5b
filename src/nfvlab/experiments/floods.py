"""Flood traffic on the local testbed, shared by the Iron experiments: containers sending to the
peer (a sink on the peer), or the peer sending to receiving containers. Every process started is
appended to the caller's `started` list, so the caller's teardown stops it whatever happens."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from nfvlab.testbeds import processes as procs
from nfvlab.testbeds.model import Container, Topology
from nfvlab.workloads import traffic

PORT = 5001
LISTEN_S = 0.2  # receivers must listen before TCP senders connect


@dataclass
class Flood:
    senders: list[procs.Proc] = field(default_factory=list)
    receivers: list[procs.Proc] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        """The processes' own counts (printed when stopped): offered and achieved payload rate over
        first-to-last packet, packets sent and received, and the drops between them."""
        sent, offered = _sum(self.senders)
        received, achieved = _sum(self.receivers)
        drops = max(0, sent - received)
        return {
            "offered_mbps": offered,
            "achieved_mbps": achieved,
            "sent_packets": sent,
            "received_packets": received,
            "drops": drops,
            "drop_pct": 100 * drops / sent if sent else 0.0,
        }


def _sum(ps: list[procs.Proc]) -> tuple[int, float]:
    stats = [traffic.parse_flood_stats(p.stdout()) for p in ps]
    return sum(s.packets for s in stats), sum(s.active_rate_mbps for s in stats)


def _rate(mbps: float) -> float | None:
    return None if math.isinf(mbps) else mbps


def containers_send(flood: Path, topo: Topology, senders: list[Container], proto: str, flows_each: int,
                    size: int, rate_mbps_each: float, raw: Path, started: list[procs.Proc]) -> Flood:
    """Each sender floods the peer; the peer runs one sink."""
    out = Flood()
    sink = procs.start_on_peer(topo.peer, "peer-recv", traffic.FloodReceiver(flood, proto, PORT).argv(), raw)
    started.append(sink)
    out.receivers.append(sink)
    time.sleep(LISTEN_S)
    for c in senders:
        argv = traffic.FloodSender(flood, proto, [topo.peer.ip], PORT, flows=flows_each, size=size,
                                   rate_mbps=_rate(rate_mbps_each)).argv()
        s = procs.start_in_container(c, f"{c.name}-send", argv, raw)
        started.append(s)
        out.senders.append(s)
    return out


def peer_sends(flood: Path, topo: Topology, receivers: list[Container], proto: str, flows: int, size: int,
               rate_mbps: float, raw: Path, started: list[procs.Proc]) -> Flood:
    """Each receiver listens; the peer spreads `flows` (at least one per receiver) over them."""
    out = Flood()
    for c in receivers:
        r = procs.start_in_container(c, f"{c.name}-recv", traffic.FloodReceiver(flood, proto, PORT).argv(), raw)
        started.append(r)
        out.receivers.append(r)
    time.sleep(LISTEN_S)
    argv = traffic.FloodSender(flood, proto, [c.ip for c in receivers], PORT, flows=max(flows, len(receivers)),
                               size=size, rate_mbps=_rate(rate_mbps)).argv()
    s = procs.start_on_peer(topo.peer, "peer-send", argv, raw)
    started.append(s)
    out.senders.append(s)
    return out
