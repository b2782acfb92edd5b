"""Scope-aware partitioning (§3.3.1): coarsest scope first, finer until the splitters' load counters
are even -- the decision logic, and the loop live on a chain (forward -> 2 portscan instances with
scope auto) whose splitter counters come from the real data plane."""

from __future__ import annotations

import os

import pytest

from nfvlab.chc import dag, dagrun, partition, traces
from nfvlab.chc.compile import compile_chain

CHAIN = """
name: part
model: EO+C+NA
vertices:
  fwd: {nf: forward}
  scan: {nf: portscan, parallelism: 2, scope: auto}
edges: [{from: fwd, to: scan}]
"""


def test_imbalance_is_max_over_mean():
    assert partition.imbalance([50, 50]) == 1.0
    assert partition.imbalance([90, 10]) == 1.8
    assert partition.imbalance([0, 0]) == float("inf")


@pytest.mark.parametrize("loads, chosen, tried", [
    ({"srcip": [52, 48], "5tuple": [50, 50]}, "srcip", ["srcip"]),  # coarsest is even: no sharing, done
    ({"srcip": [90, 10], "5tuple": [51, 49]}, "5tuple", ["srcip", "5tuple"]),  # finer until even
    ({"srcip": [90, 10], "5tuple": [80, 20]}, "5tuple", ["srcip", "5tuple"]),  # none even: the finest
])
def test_choose_scope_goes_coarse_to_fine(loads, chosen, tried):
    scope, steps = partition.choose_scope("scan", ("5tuple", "srcip"), loads.__getitem__, tolerance=0.25)
    assert scope == chosen and [s.scope for s in steps] == tried
    assert [s.even for s in steps][-1] == (partition.imbalance(loads[chosen]) <= 1.25)


def run(deployment, bin_dir, tmp_path, spec: traces.TraceSpec):
    dep, store = deployment
    for srv in store.servers:
        srv.client().flushall()
    info = traces.generate(spec, tmp_path / "t.pcap")
    chain = dag.parse_chain(__import__("yaml").safe_load(CHAIN))
    res = dagrun.run_chain(dep, bin_dir, compile_chain(chain), info.path, store_addresses=store.addresses,
                           rate_pps=2000, tag="part", manager=partition.manager(chain, window=300))
    assert res.sink["packets"] == res.root["sent"] == info.packets
    return res


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)")
def test_one_heavy_host_moves_the_split_to_5tuple(deployment, bin_dir, tmp_path):
    # every connection from one internal host: by source address its half of the traffic lands on
    # one instance, so the loop refines to the 5-tuple
    res = run(deployment, bin_dir, tmp_path, traces.TraceSpec(connections=80, packets_per_connection=20, hosts=1,
                                                             seed=4))
    steps, decision = res.partition_log[:-1], res.partition_log[-1]
    assert [s["scope"] for s in steps] == ["srcip", "5tuple"]
    assert not steps[0]["even"] and steps[1]["even"] and sum(steps[0]["counts"]) >= 300
    assert decision == {"vertex": "scan", "chosen": "5tuple"}
    assert all(int(r.summary["received"]) > 0 for r in res.instances.values() if r.vertex == "scan")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)")
def test_many_even_hosts_keep_the_coarsest_scope(deployment, bin_dir, tmp_path):
    # short connections from 40 hosts to many servers: any 300-packet window spreads by source address
    # (a trace of ~2 s at 2 kpps, so that a late manager on a loaded machine still sees a full window)
    res = run(deployment, bin_dir, tmp_path, traces.TraceSpec(connections=700, packets_per_connection=4, hosts=40,
                                                             seed=4))
    assert [s["scope"] for s in res.partition_log[:-1]] == ["srcip"], res.partition_log
    assert sum(res.partition_log[0]["counts"]) >= 300
    assert res.partition_log[0]["even"] and res.partition_log[-1]["chosen"] == "srcip"
