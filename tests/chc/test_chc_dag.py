"""The operator view: logical chains in YAML (validation naming file and field), their compilation to
the physical DAG, and one chain run end to end on the local deployment (NAT -> portscan -> LB with
the Trojan detector off-path at the NAT, real redis-server, the compiled data plane)."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
from pathlib import Path

import dpkt
import pytest
import yaml

from nfvlab.chc import dag, dagrun, traces
from nfvlab.chc.compile import compile_chain

REPO = Path(__file__).resolve().parents[2]
CHAIN = REPO / "experiments" / "chains" / "nat-portscan-lb.yaml"
EXTERNAL_IP = "198.18.40.100"
SERVERS = {"198.18.44.1", "198.18.44.2", "198.18.44.3"}

SMALL = """
name: small
model: EO+C+NA
vertices:
  nat: {nf: nat, config: {external: 198.18.40.100, internal: 198.18.32.0/22, ports: 10000-10999}}
  scan: {nf: portscan, parallelism: 2, scope: auto}
  lb: {nf: lb, config: {servers: 198.18.44.1|198.18.44.2}}
  troj: {nf: trojan, parallelism: 2}
edges: [{from: nat, to: scan}, {from: scan, to: lb}]
taps: [{from: nat, to: troj}]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "chain.yaml"
    p.write_text(text)
    return p


def problems_of(tmp_path: Path, data: dict) -> str:
    path = write(tmp_path, yaml.safe_dump(data))
    with pytest.raises(dag.ChainSpecError) as e:
        dag.load_chain(path)
    assert str(path) in str(e.value)  # the message names the file
    return str(e.value)


def small() -> dict:
    return yaml.safe_load(SMALL)


def test_shipped_chain_loads():
    chain = dag.load_chain(CHAIN)
    assert chain.path() == ["nat", "portscan", "lb"] and chain.off_path() == ["trojan"]


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["vertices"]["lb"].update(nf="nginx"), "vertices.lb.nf"),
    (lambda d: d["vertices"]["scan"].update(parallelism=0), "vertices.scan.parallelism"),
    (lambda d: d["vertices"]["scan"].update(scope="dstip"), "vertices.scan.scope"),
    (lambda d: d["vertices"]["scan"].update(model="T"), "vertices.scan.parallelism"),
    (lambda d: d["vertices"]["nat"]["config"].update(ports="1,2"), "vertices.nat.config"),
    (lambda d: d["vertices"]["nat"].update(colour="red"), "vertices.nat.colour"),
    (lambda d: d["edges"][1].update(to="lbx"), "edges.1.to"),
    (lambda d: d["edges"].append({"from": "nat", "to": "lb"}), "edges.2.from"),
    (lambda d: d["taps"][0].update(to="lb"), "taps.0.to"),
    (lambda d: d["edges"].append({"from": "lb", "to": "nat"}), "edges: the root feeds exactly one entry"),
    (lambda d: d["vertices"]["nat"].update(scope="auto"), "vertices.nat.scope"),
    (lambda d: d["vertices"].update(extra={"nf": "forward"}), "edges: the root feeds exactly one entry"),
    (lambda d: d.update(name="Bad Name"), "name"),
])
def test_bad_chain_names_file_and_field(tmp_path, edit, field):
    data = small()
    edit(data)
    assert f"  - {field}" in problems_of(tmp_path, data)


def test_cycle_away_from_the_entry_is_reported(tmp_path):
    data = small()
    data["vertices"]["a"] = {"nf": "forward"}
    data["vertices"]["b"] = {"nf": "forward"}
    data["edges"] += [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}]
    text = problems_of(tmp_path, data)
    assert "vertices.a: not reachable from the entry vertex nat" in text


def test_small_chain_compiles_to_instances_and_splitters(tmp_path):
    phys = compile_chain(dag.load_chain(write(tmp_path, SMALL)))
    assert [(i.role, i.vertex_id, i.index, i.parallelism) for i in phys.instances] == [
        ("nat1", 1, 1, 1), ("scan1", 2, 1, 2), ("scan2", 2, 2, 2), ("lb1", 3, 1, 1),
        ("troj1", 4, 1, 2), ("troj2", 4, 2, 2)]
    got = {(s.owner, s.kind): (s.scope, s.downstream) for s in phys.splitters}
    assert got == {
        ("root", "next"): ("5tuple", ("nat1",)),
        ("nat1", "next"): ("srcip", ("scan1", "scan2")),  # auto starts at the coarsest scope
        ("nat1", "tap"): ("srcip", ("troj1", "troj2")),
        ("scan1", "next"): ("5tuple", ("lb1",)),
        ("scan2", "next"): ("5tuple", ("lb1",)),
        ("lb1", "next"): ("5tuple", ("sink",)),
        ("troj1", "next"): ("5tuple", ()),  # off-path: its output is discarded
        ("troj2", "next"): ("5tuple", ()),
    }
    assert [i.role for i in phys.start_order()] == ["troj1", "troj2", "lb1", "scan1", "scan2", "nat1"]
    assert [s.owner for s in phys.upstream_of("scan")] == ["nat1"]
    assert phys.instances[0].config_arg() == "external=198.18.40.100,internal=198.18.32.0/22,ports=10000-10999"


def test_nf_scopes_match_the_data_plane(chc_bin):
    for nf, scopes in dag.NF_SCOPES.items():
        out = subprocess.run([chc_bin("chc-nf"), "--nf", nf, "--scopes"], capture_output=True, text=True, check=True)
        assert tuple(out.stdout.split()) == scopes, nf


# --- end to end --------------------------------------------------------------------------------------

def checksums_valid(frame: bytes) -> bool:
    ip = dpkt.ethernet.Ethernet(frame).data
    got_ip, got_l4 = ip.sum, ip.data.sum
    ip.sum = 0
    ip.data.sum = 0
    fresh = dpkt.ip.IP(bytes(ip))
    return fresh.sum == got_ip and fresh.data.sum == got_l4


@pytest.fixture(scope="module")
def chain_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("chain") / "chain.pcap"
    info = traces.generate(traces.TraceSpec(connections=12, packets_per_connection=6, trojans=1, reordered_trojans=1,
                                            hosts=4, seed=21), path)
    return path, info


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)")
@pytest.mark.parametrize("model", ["T", "EO+C+NA"])
def test_chain_end_to_end(deployment, bin_dir, chain_trace, model):
    dep, store = deployment
    for srv in store.servers:
        srv.client().flushall()
    pcap, info = chain_trace
    phys = compile_chain(dag.load_chain(CHAIN).with_model(model))
    res = dagrun.run_chain(dep, bin_dir, phys, pcap, store_addresses=store.addresses, tag="dag")
    sent = res.root["sent"]
    assert sent == info.packets and res.sink["packets"] == sent  # nothing in the trace is dropped on the path
    out = traces.read_frames(res.out_pcap)
    originals = traces.read_frames(pcap)
    balanced = 0
    for orig, new in zip(originals, out, strict=True):  # one instance per vertex: order is kept
        assert checksums_valid(new), "NAT or LB wrote a wrong checksum"
        o, n = dpkt.ethernet.Ethernet(orig).data, dpkt.ethernet.Ethernet(new).data
        if ipaddress.ip_address(socket.inet_ntoa(o.src)) in traces.INTERNAL:  # outbound: the NAT translated it
            assert socket.inet_ntoa(n.src) == EXTERNAL_IP
            if o.data.dport in (80, 443, 8080):  # ... and the LB sent it to a backend
                assert socket.inet_ntoa(n.dst) in SERVERS
                balanced += 1
            else:
                assert n.dst == o.dst
        assert n.data.data == o.data.data
    assert balanced > 0
    # the off-path Trojan detector saw every packet the NAT received, untranslated: it names the
    # internal host of the sequence, and not the host doing the same steps in another order
    nat, trojan = res.instances["nat1"], res.instances["trojan1"]
    assert nat.summary["tapped"] == nat.summary["received"] == sent
    assert trojan.summary["received"] == sent and trojan.summary["forwarded"] == 0
    assert trojan.report["alerts"] == info.trojan_hosts[0]
    assert len(res.latency_ns) == sent and min(res.latency_ns) > 0
    assert all(len(r.samples_ns) == sent for r in res.instances.values())
    r = store.servers[0].client()
    if model == "T":
        assert r.dbsize() == 0
    else:  # vertex ids along the path, the off-path vertex last
        assert int(r.get("chc:{v1:nat:total_packets}")) == sent
        steps = r.hgetall("chc:{v4:trojan:steps}")
        assert int(steps[info.trojan_hosts[0].encode()]) == 31
        assert int(steps[info.reordered_hosts[0].encode()]) & 16 == 0
        assert sum(int(v) for k, v in r.hgetall("chc:{v3:lb:active}").items()) == 0  # every connection ended


def test_chain_spec_validates_and_rows_stay_flat():
    from nfvlab.experiments.registry import get_kind
    from nfvlab.spec import load_spec

    spec = load_spec(REPO / "experiments" / "chc-chain.yaml")
    kind = get_kind("chc-chain")
    leaves = [p.split(".")[-1] for p in kind.parameter_names()]
    assert len(set(leaves)) == len(leaves) and not set(leaves) & set(kind.metrics)
    assert {"nf", "model"} <= set(leaves) and "median_us" in kind.metrics
    assert {c.id for c in spec.claims} >= {"chain-eocna-overhead"}


def test_chain_spec_with_a_bad_chain_names_both_files(tmp_path):
    from nfvlab.spec import SpecError, load_spec

    bad_chain = REPO / "build" / "test-bad-chain.yaml"  # the kind resolves chains relative to the repository
    bad_chain.parent.mkdir(exist_ok=True)
    bad_chain.write_text(CHAIN.read_text().replace("nf: lb", "nf: nginx"))
    try:
        text = (REPO / "experiments" / "chc-chain.yaml").read_text()
        spec = tmp_path / "bad.yaml"
        spec.write_text(text.replace("experiments/chains/nat-portscan-lb.yaml", "build/test-bad-chain.yaml"))
        with pytest.raises(SpecError) as e:
            load_spec(spec)
        msg = str(e.value)
        assert "chain.logical" in msg and "test-bad-chain.yaml" in msg and "vertices.lb.nf" in msg
    finally:
        bad_chain.unlink()
