"""A small iron-interference spec end to end through the ssh testbed: the victim and a UDP receiver
in containers on node n1 (macvlan on its NIC, real cgroups), the peer on node n2 flooding them over
the bridge, everything through fabric; rows with the local run's schema, raw logs back in results/,
per-node provenance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from nfvlab import stamps
from nfvlab.plan import expand, flat_params
from nfvlab.results import ResultStore
from nfvlab.runner import RunError, run
from nfvlab.spec import load_spec

from .conftest import leftovers, needs_nodes

pytestmark = [needs_nodes, pytest.mark.slow]

SPEC = {
    "name": "remote-udp-pair-tiny",
    "description": "one UDP receiver beside the victim, peer on another node (tests/remote)",
    "paper": {"figures": ["2.4"], "section": "2.1.3"},
    "testbed": "local",
    "kind": "iron-interference",
    "params": {
        "topology": {"containers_per_core": 2, "interferer": "udp_receiver", "receivers": 1},
        "workload": {"victim_events": 300, "payload_bytes": 1400, "flows": 2, "send_rate_mbps": 100,
                     "warmup_s": 0.2},
        "iron": {"mode": "off"},
    },
    "repetitions": 1,
    "metrics": ["penalty_factor", "victim_time_base_s", "victim_time_net_s", "offered_mbps", "achieved_mbps",
                "sent_packets", "received_packets", "drops", "net_rx_softirqs", "qdisc_drops",
                "core_busy_before_pct"],
}


def expected_columns(spec_path: Path) -> set[str]:
    """The columns the runner writes for this spec on any testbed (what a local run's rows have)."""
    spec = load_spec(spec_path)
    plan = expand(spec, None, None)
    return {"point_id", "repetition", "spec", "scale", "point_index", *flat_params(plan.points[0].params),
            *spec.metrics, "seconds", "finished_at", *stamps.current_stamps(spec)}


def test_spec_runs_across_ssh_nodes(emulated_nodes, tmp_path):
    spec_path = tmp_path / "remote-udp-pair-tiny.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    results = tmp_path / "results"
    summary = run(spec_path, None, None, results_root=results, build_dir=tmp_path / "build",
                  testbed=str(emulated_nodes.inventory_path))
    assert summary.done == 1
    rows = ResultStore(results, SPEC["name"]).rows()
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == expected_columns(spec_path)
    assert row["testbed_hash"] == stamps.testbed_hash(emulated_nodes.inventory_path)  # the inventory's, not local
    assert row["victim_time_base_s"] > 0 and row["victim_time_net_s"] > 0
    assert math.isclose(row["penalty_factor"], row["victim_time_net_s"] / row["victim_time_base_s"], rel_tol=1e-6)
    # the peer on n2 really reached the receiver on n1 (and the counters came from n1's /proc)
    assert row["sent_packets"] > 0 and row["received_packets"] > 0 and row["net_rx_softirqs"] > 0
    raw = list((results / SPEC["name"] / "raw").rglob("*.out"))
    names = {p.name for p in raw}
    assert {"victim.out", "peer-send.out", "nfvlab-rn-n1-c1-recv.out"} <= names, names
    assert "events per second" in next(p for p in raw if p.name == "victim.out").read_text()
    prov = json.loads((results / SPEC["name"] / "provenance.json").read_text())["latest"]
    tb = prov["testbed"]
    assert tb["kind"] == "ssh" and set(tb["nodes"]) == {"n1", "n2", "n3"}
    for facts in tb["nodes"].values():
        nic = facts["nic"]
        assert nic["driver"] == "veth" and "rps_cpus" in nic and "irq_affinity" in nic
        assert facts["kernel_cmdline"] and "cpu_governor" in facts
    assert prov["status"] == "complete"
    assert not [x for x in leftovers() if "-c" in x.rsplit("/", 1)[-1]], leftovers()


def test_bad_inventory_fails_before_anything(tmp_path):
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    inv = tmp_path / "bad.yaml"
    inv.write_text("name: x\nnodes: []\n")
    with pytest.raises(RunError, match=r"bad.yaml: nodes"):
        run(spec_path, None, None, results_root=tmp_path / "r", testbed=str(inv))
    assert not (tmp_path / "r").exists()
