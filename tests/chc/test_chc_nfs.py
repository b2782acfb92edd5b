"""Each NF's decisions on small crafted traces, in the traditional model and with state in the store
(EO and EO+C+NA): the same source must decide the same way in every model."""

from __future__ import annotations

import os
import socket

import dpkt
import pytest

from nfvlab.chc import chain, traces

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)")
MODELS = ["T", "EO", "EO+C+NA"]


def run(deployment, bin_dir, pcap, nf, model, **kw):
    dep, store = deployment
    for srv in store.servers:
        srv.client().flushall()
    return chain.run_nf(dep, bin_dir, pcap, nf, model, store_addresses=store.addresses, tag="nfs", **kw), store


def src_counts(frames: list[bytes]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in frames:
        src = socket.inet_ntoa(dpkt.ethernet.Ethernet(f).data.src)
        out[src] = out.get(src, 0) + 1
    return out


@pytest.fixture(scope="module")
def scan_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("scan") / "scan.pcap"
    info = traces.generate(traces.TraceSpec(connections=15, packets_per_connection=6, scanners=1, scan_targets=20,
                                            hosts=4, seed=11), path)
    return path, info


@pytest.mark.parametrize("model", MODELS)
def test_portscan_blocks_scanner_not_clients(deployment, bin_dir, scan_trace, model):
    pcap, info = scan_trace
    res, store = run(deployment, bin_dir, pcap, "portscan", model)
    scanner = info.scanner_hosts[0]
    assert res.reports[0]["scanners"] == scanner  # TRW: the 4th refused attempt crosses log(P_D/P_F)
    assert res.reports[0]["blocked"] == "1"
    before, after = src_counts(traces.read_frames(pcap)), src_counts(traces.read_frames(res.out_pcap))
    assert after.get(scanner, 0) < before[scanner]  # its later packets are dropped
    for host in info.normal_hosts:  # clients whose connections succeed are never blocked
        assert after.get(host, 0) == before.get(host, 0)
    if model != "T":
        llr = store.servers[0].client().hgetall("chc:{v1:scan:llr}")
        assert float(llr[scanner.encode()]) >= 4.59


@pytest.fixture(scope="module")
def trojan_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trojan") / "trojan.pcap"
    info = traces.generate(traces.TraceSpec(connections=10, packets_per_connection=6, trojans=1, reordered_trojans=1,
                                            hosts=4, seed=3), path)
    return path, info


@pytest.mark.parametrize("model", MODELS)
def test_trojan_fires_on_sequence_not_on_reordered(deployment, bin_dir, trojan_trace, model):
    pcap, info = trojan_trace
    res, store = run(deployment, bin_dir, pcap, "trojan", model)
    assert res.reports[0]["alerts"] == info.trojan_hosts[0]  # and not the host with the same steps reordered
    if model != "T":
        steps = store.servers[0].client().hgetall("chc:{v1:trojan:steps}")
        assert int(steps[info.trojan_hosts[0].encode()]) == 31
        assert int(steps[info.reordered_hosts[0].encode()]) & 16 == 0


@pytest.fixture(scope="module")
def lb_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("lb") / "lb.pcap"
    traces.generate(traces.TraceSpec(connections=12, packets_per_connection=6, hosts=5, seed=8), path)
    return path


SERVERS = ["198.18.44.1", "198.18.44.2", "198.18.44.3"]


@pytest.mark.parametrize("model", MODELS)
def test_lb_balances_connections_and_counts_bytes(deployment, bin_dir, lb_trace, model):
    res, store = run(deployment, bin_dir, lb_trace, "lb", model, config={"servers": "|".join(SERVERS)})
    orig = [dpkt.ethernet.Ethernet(f).data for f in traces.read_frames(lb_trace)]
    out = [dpkt.ethernet.Ethernet(f).data for f in traces.read_frames(res.out_pcap)]
    assert len(out) == len(orig)
    # Reference least-loaded balancer: ties to the lowest address, a client FIN ends the connection.
    active = dict.fromkeys(SERVERS, 0)
    conn_server: dict[tuple, str] = {}
    balanced_bytes, picks = 0, []
    for o, n in zip(orig, out, strict=True):
        if o.data.dport in (80, 443, 8080):
            key = (o.src, o.data.sport, o.dst, o.data.dport)
            if key not in conn_server:
                conn_server[key] = min(SERVERS, key=lambda srv: (active[srv], srv))
                active[conn_server[key]] += 1
                picks.append(conn_server[key])
            assert socket.inet_ntoa(n.dst) == conn_server[key]  # the NF's choice is the reference's
            if o.data.flags & (dpkt.tcp.TH_FIN | dpkt.tcp.TH_RST):
                active[conn_server.pop(key)] -= 1
            balanced_bytes += 14 + o.len
            fresh = dpkt.ip.IP(bytes(n))
            n.sum = 0
            n.data.sum = 0
            assert dpkt.ip.IP(bytes(n)).sum == fresh.sum and dpkt.ip.IP(bytes(n)).data.sum == fresh.data.sum
        else:
            assert n.dst == o.dst
    assert len(set(picks)) >= 2  # connections overlapped somewhere, so a second server was chosen
    report = {k.split(":", 1)[1]: v for k, v in res.reports[0].items() if k.startswith("server:")}
    assert all(v.split("/")[0] == "0" for v in report.values())  # every connection closed
    assert sum(int(v.split("/")[1]) for v in report.values()) == balanced_bytes
