"""The NAT end to end on the local deployment (root, NAT, sink and redis-server each in its own
cgroup + namespace): every model from the same source, mappings and checksums checked against dpkt."""

from __future__ import annotations

import ipaddress
import os
import socket

import dpkt
import pytest

from nfvlab.chc import chain, traces

EXTERNAL_IP = "198.18.40.100"
PORTS = (10000, 10999)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)")


def checksums_valid(frame: bytes) -> bool:
    """dpkt recomputes IP and L4 checksums when they are zeroed: compare with what the NAT wrote."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    l4 = ip.data
    got_ip, got_l4 = ip.sum, l4.sum
    ip.sum = 0
    l4.sum = 0
    fresh = dpkt.ip.IP(bytes(ip))  # serialising recomputes both sums
    return fresh.sum == got_ip and fresh.data.sum == got_l4


@pytest.fixture(scope="module")
def nat_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "nat.pcap"
    info = traces.generate(traces.TraceSpec(connections=12, packets_per_connection=8, udp_flows=3, seed=5), path)
    # Inbound replies to the first two translated connections: the NAT hands ports out in the
    # order connections first appear, from the head of the available-port list.
    frames = traces.read_frames(path)
    outbound = []  # internal-source flows in order of first appearance
    for f in frames:
        ip = dpkt.ethernet.Ethernet(f).data
        key = (ip.src, ip.data.sport, ip.dst, ip.data.dport, ip.p)
        if ipaddress.ip_address(socket.inet_ntoa(ip.src)) in traces.INTERNAL and key not in outbound:
            outbound.append(key)
    first_tcp = next(i for i, k in enumerate(outbound) if k[4] == dpkt.ip.IP_PROTO_TCP)
    src, sport, dst, dport, _ = outbound[first_tcp]
    reply = traces.tcp_frame(ipaddress.ip_address(dst), ipaddress.ip_address(EXTERNAL_IP), dport,
                             PORTS[0] + first_tcp, dpkt.tcp.TH_ACK, b"reply")
    stray = traces.tcp_frame(ipaddress.ip_address(dst), ipaddress.ip_address(EXTERNAL_IP), dport, 10999,
                             dpkt.tcp.TH_ACK, b"nobody")
    traces.write_frames(path, [*frames, reply, stray])
    return path, info, outbound[first_tcp], PORTS[0] + first_tcp


@pytest.mark.parametrize("model", chain.MODELS)
def test_nat_translates_and_counts(deployment, nat_trace, bin_dir, model):
    dep, store = deployment
    for srv in store.servers:
        srv.client().flushall()
    pcap, info, first_conn, first_port = nat_trace
    res = chain.run_nf(dep, bin_dir, pcap, "nat", model, store_addresses=store.addresses,
                       config={"external": EXTERNAL_IP, "internal": "198.18.32.0/22",
                               "ports": f"{PORTS[0]}-{PORTS[1]}"}, tag="nat")
    sent = res.root["sent"]
    out = traces.read_frames(res.out_pcap)
    assert len(out) == sent - 1  # only the stray inbound packet (no connection owns port 10999) is dropped
    assert res.instances[0]["dropped"] == 1

    mapping: dict[tuple, int] = {}
    tcp_in = 0
    replies = 0
    for f in out:
        assert checksums_valid(f), "NAT wrote a wrong checksum"
        ip = dpkt.ethernet.Ethernet(f).data
        assert ipaddress.ip_address(socket.inet_ntoa(ip.src)) not in traces.INTERNAL, "untranslated source"
        if ip.data.data == b"reply":  # the inbound reply, translated back to its internal client
            assert (ip.dst, ip.data.dport) == (first_conn[0], first_conn[1])
            replies += 1
    assert replies == 1
    # every outbound packet left with the external address and one port per connection
    originals = [dpkt.ethernet.Ethernet(f).data for f in traces.read_frames(pcap)]
    translated = [dpkt.ethernet.Ethernet(f).data for f in out]
    for orig, new in zip(originals, translated, strict=False):
        if ipaddress.ip_address(socket.inet_ntoa(orig.src)) in traces.INTERNAL:
            assert socket.inet_ntoa(new.src) == EXTERNAL_IP
            key = (orig.src, orig.data.sport, orig.dst, orig.data.dport, orig.p)
            assert mapping.setdefault(key, new.data.sport) == new.data.sport
            assert new.data.data == orig.data.data
        if orig.p == dpkt.ip.IP_PROTO_TCP:
            tcp_in += 1
    assert sorted(mapping.values()) == list(range(PORTS[0], PORTS[0] + len(mapping)))
    assert mapping[first_conn] == first_port

    report = res.reports[0]
    assert int(report["total_packets"]) == sent
    assert int(report["tcp_packets"]) == sent - 3 * 4  # the 3 UDP flows carry 4 packets each
    # clocks: stamped by root 1, strictly increasing through a single instance
    counters = [c & ((1 << 56) - 1) for c, _, _ in res.clocks]
    assert counters == sorted(counters) and all(c >> 56 == 1 for c, _, _ in res.clocks)
    r = store.servers[0].client()
    if model == "T":
        assert r.dbsize() == 0  # traditional: nothing leaves the instance
        assert all(x == 0 for _, x, _ in res.clocks)
    else:
        assert int(r.get("chc:{v1:nat:total_packets}")) == sent
        assert r.llen("chc:{v1:nat:ports}") == PORTS[1] - PORTS[0] + 1 - len(mapping)
        assert r.get(f"chc:{{v1:i1:nat:map:i:6:{first_port}}}") is not None
        assert any(x != 0 for _, x, _ in res.clocks)  # updates folded into the XOR vectors
    assert len(res.samples_ns[0]) == sent


@pytest.mark.parametrize("model", ["EO", "EO+C+NA"])
def test_two_nats_share_ports_and_counters(deployment, nat_trace, bin_dir, model):
    """Two NAT instances pop from one available-port list and add to one pair of counters in the
    store: no port goes to two connections, and no update is lost (the store serializes them)."""
    dep, store = deployment
    for srv in store.servers:
        srv.client().flushall()
    pcap = nat_trace[0]
    res = chain.run_nf(dep, bin_dir, pcap, "nat", model, instances=2, store_addresses=store.addresses,
                       config={"external": EXTERNAL_IP, "internal": "198.18.32.0/22",
                               "ports": f"{PORTS[0]}-{PORTS[1]}"}, tag="nat2")
    sent = res.root["sent"]
    assert all(inst["received"] > 0 for inst in res.instances)  # the root's split used both
    connections = set()  # internal-source flows of the trace: each needs its own external port
    for orig in traces.read_frames(pcap):
        o = dpkt.ethernet.Ethernet(orig).data
        if ipaddress.ip_address(socket.inet_ntoa(o.src)) in traces.INTERNAL:
            connections.add((o.src, o.data.sport, o.dst, o.data.dport, o.p))
    out_ports = {}
    for f in traces.read_frames(res.out_pcap):
        ip = dpkt.ethernet.Ethernet(f).data
        if socket.inet_ntoa(ip.src) == EXTERNAL_IP:
            out_ports.setdefault((ip.data.sport, ip.p), set()).add((ip.dst, ip.data.dport))
    assert all(len(peers) == 1 for peers in out_ports.values())  # one connection per external port
    assert len(out_ports) == len(connections)
    r = store.servers[0].client()
    assert int(r.get("chc:{v1:nat:total_packets}")) == sent
    assert r.llen("chc:{v1:nat:ports}") == PORTS[1] - PORTS[0] + 1 - len(connections)
    assert {origin for _, _, origin in res.clocks} == {1, 2}
