"""Sweep expansion: Cartesian product in spec order, scale presets, stable point identities."""

from __future__ import annotations

import math

import pytest

from nfvlab.plan import expand, flat_params
from nfvlab.spec import load_spec

from .conftest import REPO, tiny_spec


def test_cartesian_product_in_axis_order(write_spec):
    spec = load_spec(write_spec(tiny_spec(
        params={"topology": {"containers_per_core": 10, "interferer": "udp_receiver"},
                "workload": {"victim_events": 500}},
        sweep={"topology.receivers": [1, 5, 9], "workload.send_rate_mbps": [100, "inf"]},
        repetitions=4)))
    plan = expand(spec)
    got = [(flat_params(p.params)["receivers"], flat_params(p.params)["send_rate_mbps"]) for p in plan.points]
    assert got == [(1, 100), (1, math.inf), (5, 100), (5, math.inf), (9, 100), (9, math.inf)]
    assert plan.total_runs == 24
    assert [p.index for p in plan.points] == list(range(6))


def test_point_ids_are_stable_and_distinct(write_spec):
    spec = load_spec(write_spec(tiny_spec(sweep={"workload.victim_events": [100, 200]})))
    a, b = expand(spec).points, expand(spec).points
    assert [p.point_id for p in a] == [p.point_id for p in b]
    assert len({p.point_id for p in a}) == 2
    assert "victim_events=100" in a[0].point_id


def test_scale_presets_override_sweep_and_repetitions():
    spec = load_spec(REPO / "experiments" / "iron-udp-senders.yaml")
    quick, paper = expand(spec, "quick"), expand(spec, "paper")
    assert quick.repetitions == 5 and paper.repetitions == 10
    # iron.mode x containers_per_core x core_rate_mbps (quick: the shaped rate only, issue 10's budget)
    assert len(quick.points) == 2 * 4 * 1 and len(paper.points) == 2 * 4 * 11
    assert flat_params(quick.points[-1].params)["core_rate_mbps"] == 250
    assert math.isinf(flat_params(paper.points[-1].params)["core_rate_mbps"])
    assert [flat_params(p.params)["mode"] for p in quick.points[:2]] == ["off", "off"]
    assert expand(spec, "quick", repetitions=1).total_runs == 8


def test_unknown_scale_is_an_error(write_spec):
    spec = load_spec(write_spec(tiny_spec()))
    with pytest.raises(ValueError, match="scale 'paper' is not defined"):
        expand(spec, "paper")
