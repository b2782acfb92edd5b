"""ssh inventories: a valid file loads; bad ones fail naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nfvlab.testbeds.inventory import InventoryError, is_inventory_path, load_inventory

REPO = Path(__file__).resolve().parents[2]

GOOD = {
    "name": "two",
    "defaults": {"user": "root", "key": "/tmp/k"},
    "nodes": [
        {"name": "n1", "address": "10.0.0.1", "roles": ["victim_host"],
         "experiment_nic": {"name": "eth1", "address": "198.18.64.11/24"}, "cores": [1],
         "container_subnet": "198.18.64.128/28"},
        {"name": "n2", "address": "10.0.0.2", "roles": ["traffic_generator"],
         "experiment_nic": {"name": "eth1", "address": "198.18.64.12/24"}, "cores": [0, 1]},
    ],
}


def write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "inv.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_valid_inventory_loads(tmp_path):
    inv = load_inventory(write(tmp_path, GOOD))
    assert [n.name for n in inv.with_role("victim_host")] == ["n1"]
    assert inv.nodes[1].cores == [0, 1]


def test_example_inventories_in_repo_are_valid():
    files = sorted((REPO / "testbed").glob("ssh-*.yaml"))
    assert files, "testbed/ssh-*.yaml examples missing"
    for f in files:
        assert load_inventory(f).nodes


@pytest.mark.parametrize("path, value, field", [
    (("nodes", 0, "experiment_nic", "address"), "10.1.1.1/24", "nodes[0].experiment_nic.address"),
    (("nodes", 0, "experiment_nic", "address"), "198.18.64.11", "nodes[0].experiment_nic.address"),
    (("nodes", 1, "roles"), ["router"], "nodes[1].roles[0]"),
    (("nodes", 0, "cores"), [1, 1], "nodes[0].cores"),
    (("nodes", 0, "container_subnet"), "10.0.0.0/24", "nodes[0].container_subnet"),
    (("nodes", 0, "name"), "Node_1", "nodes[0].name"),
    (("defaults", "port"), 70000, "defaults.port"),
    (("nodes", 0, "colour"), "red", "nodes[0].colour"),
])
def test_bad_field_is_named(tmp_path, path, value, field):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    f = write(tmp_path, doc)
    with pytest.raises(InventoryError) as e:
        load_inventory(f)
    assert str(f) in str(e.value) and field in str(e.value)


def test_victim_host_needs_container_subnet(tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    del doc["nodes"][0]["container_subnet"]
    with pytest.raises(InventoryError, match="n1: a victim_host needs container_subnet"):
        load_inventory(write(tmp_path, doc))


def test_duplicate_names_and_unreadable_file(tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc["nodes"][1]["name"] = "n1"
    with pytest.raises(InventoryError, match="unique"):
        load_inventory(write(tmp_path, doc))
    with pytest.raises(InventoryError, match="cannot read"):
        load_inventory(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("nodes: [")
    with pytest.raises(InventoryError, match="not valid YAML"):
        load_inventory(tmp_path / "bad.yaml")


def test_testbed_option():
    assert not is_inventory_path("local")
    assert is_inventory_path("testbed/ssh-example.yaml")
