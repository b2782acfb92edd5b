"""Per-packet receive cost by traffic class (dissertation §2.3.2, Table 2.15), from Iron's accounting.

One receiver container alone on the core (CFS-unlimited: the receiver is not the subject) is flooded
by the peer with one traffic class per sweep point:

* ``udp``: 1400-byte UDP datagrams;
* ``tcp``: one or more TCP streams, the peer's TSO/GSO/GRO off so segments are MTU-sized (ACKs sent
  from the receive path are part of the packet's cost, as in the paper);
* ``tunnel``: the same UDP inside a tunnel between the peer and the container — GRE where the kernel
  has it (``ip link add type gre``), else VXLAN (this machine's kernel lacks ``CONFIG_NET_IPGRE``); the
  encapsulated packet passes the stack twice either way. ``tunnel_gre`` records which was used (1/0).

Cost per packet = Iron's ``rx_cost_ns`` of the container over the window (the bracketed
``netif_receive_skb`` cost + its share of the softirq's fixed overhead, see docs/iron.md) divided by
the packets that reached the container's ``eth0`` in the window (a tunnelled packet is one packet).
Each repetition of a non-UDP point also measures UDP right after it, on the same testbed, so
``ratio_to_udp`` compares like with like (paper: TCP/UDP = 1.670/0.706 = 2.37, GRE/UDP = 1.68).

``costs.py`` (``nfvlab.iron.costs``) measures the same on its own fixture; its flow and tunnel helpers
take a ``LocalTestbed`` of their own, so the small equivalents for a testbed ``Topology`` live here and only
``eth0_rx_packets`` is reused.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from nfvlab.experiments.iron_cpu_cap import Strict, iron_runtime, local_testbed, set_quota_pct
from nfvlab.experiments.registry import ExperimentKind
from nfvlab.iron.costs import eth0_rx_packets
from nfvlab.testbeds import processes as procs
from nfvlab.testbeds.model import Topology
from nfvlab.workloads import traffic

PORT = 5001
# inner tunnel addresses: a /30 of the benchmarking range, only inside the two namespaces
TUN_PEER, TUN_CT = "198.18.2.1", "198.18.2.2"
VXLAN_ID, VXLAN_PORT = 42, 4789

Traffic = Literal["udp", "tcp", "tunnel"]


class WorkloadParams(Strict):
    traffic: Traffic
    window_s: float = Field(ge=0.5, le=600)
    warmup_s: float = Field(1.0, ge=0)
    payload_bytes: int = Field(1400, ge=64, le=1400, description="UDP payload (tunnel: inner payload)")
    flows: int = Field(4, ge=1)
    send_rate_mbps: float = Field(math.inf, gt=0, description="the peer's total rate; inf = as fast as it can")


class Params(Strict):
    workload: WorkloadParams


METRICS = (
    "cost_per_packet_ns",
    "udp_cost_per_packet_ns",
    "ratio_to_udp",
    "ovh_per_packet_ns",
    "rx_packets",
    "rx_kpps",
    "rx_events_per_packet",
    "tunnel_gre",
)


def topology_key(p: Params) -> tuple:
    return ("receiver",)


def _sh(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def setup_tunnel(topo: Topology) -> str:
    """A point-to-point tunnel peer <-> container: "gre" if the kernel has it, else "vxlan"."""
    c, p = topo.containers[0], topo.peer
    ip = ["ip", "-n"]
    if _sh([*ip, p.netns, "link", "add", "tun1", "type", "gre", "local", p.ip, "remote", c.ip, "ttl", "64"],
           check=False).returncode == 0:
        kind = "gre"
        _sh([*ip, c.netns, "link", "add", "tun1", "type", "gre", "local", c.ip, "remote", p.ip, "ttl", "64"])
    else:
        kind = "vxlan"
        for ns, local, remote in ((p.netns, p.ip, c.ip), (c.netns, c.ip, p.ip)):
            _sh([*ip, ns, "link", "add", "tun1", "type", "vxlan", "id", str(VXLAN_ID), "local", local,
                 "remote", remote, "dstport", str(VXLAN_PORT), "dev", "eth0"])
    for ns, mine in ((p.netns, TUN_PEER), (c.netns, TUN_CT)):
        _sh([*ip, ns, "addr", "add", f"{mine}/30", "dev", "tun1"])
        _sh([*ip, ns, "link", "set", "tun1", "up"])
    return kind


class Driver:
    def __init__(self, build_dir: Path):
        self.flood = traffic.build_nfvflood(build_dir)

    @contextlib.contextmanager
    def setup(self, p: Params) -> Iterator[Topology]:
        with local_testbed(["receiver"]) as topo:
            set_quota_pct(topo, None)  # unlimited: costs, not isolation, are measured here
            # MTU-sized TCP segments as on the paper's NICs (no TSO/GSO super-packets over veth)
            _sh(["ip", "netns", "exec", topo.peer.netns, "ethtool", "-K", topo.peer.ns_ifname,
                 "tso", "off", "gso", "off", "gro", "off"], check=False)
            topo.extra["tunnel"] = setup_tunnel(topo)
            yield topo  # the tunnel devices live in the namespaces and go with them

    def measure(self, topo: Topology, p: Params, raw: Path) -> dict[str, Any]:
        w = p.workload
        r = self._flow(topo, p, w.traffic, raw / w.traffic)
        udp = r if w.traffic == "udp" else self._flow(topo, p, "udp", raw / "udp-reference")
        return {
            "cost_per_packet_ns": r["cost_ns"],
            "udp_cost_per_packet_ns": udp["cost_ns"],
            "ratio_to_udp": r["cost_ns"] / udp["cost_ns"] if udp["cost_ns"] else math.nan,
            "ovh_per_packet_ns": r["ovh_ns"],
            "rx_packets": r["packets"],
            "rx_kpps": r["packets"] / r["wall_s"] / 1e3,
            "rx_events_per_packet": r["events"] / r["packets"] if r["packets"] else math.nan,
            "tunnel_gre": (1.0 if topo.extra.get("tunnel") == "gre" else 0.0) if w.traffic == "tunnel" else math.nan,
        }

    def _flow(self, topo: Topology, p: Params, kind: str, raw: Path) -> dict[str, Any]:
        w = p.workload
        c = topo.containers[0]
        proto = "tcp" if kind == "tcp" else "udp"
        dst = TUN_CT if kind == "tunnel" else c.ip
        rate = None if math.isinf(w.send_rate_mbps) else w.send_rate_mbps
        started: list[procs.Proc] = []
        with iron_runtime(topo, True, drop="none") as rt:
            try:
                started.append(procs.start_in_container(
                    c, "recv", traffic.FloodReceiver(self.flood, proto, PORT, size=w.payload_bytes).argv(), raw))
                time.sleep(0.3)
                send = traffic.FloodSender(self.flood, proto, [dst], PORT, flows=w.flows, size=w.payload_bytes,
                                           rate_mbps=rate, batch=16 if proto == "udp" else 1)
                started.append(procs.start_on_peer(topo.peer, "send", send.argv(), raw))
                time.sleep(w.warmup_s)
                n0, s0, t0 = eth0_rx_packets(c.netns), rt.stats(), time.monotonic()
                time.sleep(w.window_s)
                n1, s1, t1 = eth0_rx_packets(c.netns), rt.stats(), time.monotonic()
            finally:
                procs.stop_all(started)
        packets = n1 - n0

        def d(key: str) -> float:
            return s1[f"{c.name}.{key}"] - s0[f"{c.name}.{key}"]

        return {
            "packets": packets,
            "wall_s": t1 - t0,
            "cost_ns": d("rx_cost_ns") / packets if packets else math.nan,
            "ovh_ns": d("ovh_ns") / packets if packets else math.nan,
            "events": d("rx_packets"),
        }


def _driver_factory(build_dir: Path) -> Driver:
    return Driver(build_dir)


KIND = ExperimentKind(
    name="iron-packet-cost",
    params_model=Params,
    metrics=METRICS,
    driver_factory=_driver_factory,
    topology_key=topology_key,
    uses_calibration=lambda p: True,  # Iron's fitted calibration is an input of these rows
)
