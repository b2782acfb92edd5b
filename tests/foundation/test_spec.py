"""Spec validation: every shipped spec is valid; every kind of mistake fails naming file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nfvlab.spec import SpecError, load_spec

from .conftest import REPO, leftovers, tiny_spec

SPECS = sorted((REPO / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_shipped_specs_are_valid(path: Path):
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.claims, "every experiment states the paper's claims it checks"


def _problems(write_spec, data) -> str:
    path = write_spec(data)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert str(path) in str(e.value)
    return str(e.value)


def test_wrong_type_names_the_field(write_spec):
    data = tiny_spec()
    data["params"]["topology"]["containers_per_core"] = "two"
    msg = _problems(write_spec, data)
    assert "topology.containers_per_core" in msg and "integer" in msg and "'two'" in msg


def test_unknown_top_level_field(write_spec):
    msg = _problems(write_spec, tiny_spec(repetitons=3))
    assert "repetitons" in msg and "Extra inputs are not permitted" in msg


def test_sweep_axis_must_be_a_parameter(write_spec):
    msg = _problems(write_spec, tiny_spec(sweep={"workload.rate": [1, 2]}))
    assert "workload.rate" in msg and "workload.send_rate_mbps" in msg


def test_bad_sweep_value_fails_before_running(write_spec):
    msg = _problems(write_spec, tiny_spec(sweep={"topology.containers_per_core": [2, 1]}))
    assert "containers_per_core" in msg and "greater than or equal to 2" in msg


def test_receivers_must_fit_on_the_core(write_spec):
    data = tiny_spec()
    data["params"]["topology"]["receivers"] = 2
    assert "do not fit" in _problems(write_spec, data)


def test_unknown_metric_and_kind(write_spec):
    assert "not recorded" in _problems(write_spec, tiny_spec(metrics=["penalty_factor", "speed"]))
    assert "unknown experiment kind" in _problems(write_spec, tiny_spec(kind="iron-magic"))


def test_claim_must_use_a_recorded_metric(write_spec):
    claim = {"id": "c", "statement": "s", "metric": "drops", "band": [0.95, 1.05]}
    assert "claims.c.metric" in _problems(write_spec, tiny_spec(claims=[claim]))


def test_not_yaml_and_not_a_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- a list\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(bad)


def test_cli_exit_2_and_nothing_created(write_spec, tmp_path):
    """A wrong field type: `nfvlab validate` and `nfvlab run` exit 2 and create nothing."""
    data = tiny_spec()
    data["params"]["workload"]["victim_events"] = "many"
    path = write_spec(data)
    before = leftovers()
    env_results = tmp_path / "results"
    for cmd in (["validate", str(path)], ["run", str(path)]):
        out = subprocess.run([sys.executable, "-m", "nfvlab.cli", *cmd], capture_output=True, text=True,
                             env={"NFVLAB_RESULTS": str(env_results), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        assert out.returncode == 2, out.stderr
        assert "workload.victim_events" in out.stderr and str(path) in out.stderr
    assert not env_results.exists()
    assert leftovers() == before


@pytest.mark.parametrize("fields, message", [
    ({"op": ">", "value": 1}, "claims state a band now"),
    ({}, "band: missing"),
    ({"band": [1.1, None]}, "one_sided"),
    ({"band": [None, None], "one_sided": "x"}, "both sides are null"),
    ({"band": [1.1, 0.9]}, "is above high"),
])
def test_claim_needs_a_band(write_spec, fields, message):
    claim = {"id": "c", "statement": "s", "metric": "penalty_factor", **fields}
    problems = _problems(write_spec, tiny_spec(claims=[claim]))
    assert "claims.0" in problems and message in problems
