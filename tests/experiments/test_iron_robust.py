"""Issue 10's pieces that need no testbed: the new parameters and metrics of iron-interference, the
iron-mapreduce kind and spec, the trace distributions and the MapReduce corpus."""

import math
import random

import pytest

from nfvlab.experiments.registry import get_kind
from nfvlab.plan import expand
from nfvlab.spec import load_spec
from nfvlab.workloads import msgtraffic
from nfvlab.workloads.sparkjobs import write_corpus

from .conftest import REPO


@pytest.mark.parametrize("kind", ["iron-interference", "iron-mapreduce"])
def test_metrics_do_not_shadow_parameters(kind):
    k = get_kind(kind)
    leaves = {p.split(".")[-1] for p in k.parameter_names()}
    assert not leaves & set(k.metrics)
    assert len(leaves) == len(k.parameter_names())


def test_hidden_cost_modes_and_calibration_use():
    k = get_kind("iron-interference")
    base = {"topology": {"containers_per_core": 2, "interferer": "udp_receiver", "receivers": 1},
            "workload": {"victim_events": 100}}
    for mode, uses in (("none", False), ("calibrated", True), ("online", False)):
        p = k.params_model.model_validate({**base, "iron": {"mode": "ebpf", "hidden_cost": mode}})
        assert k.uses_calibration(p) is uses
    with pytest.raises(ValueError, match="hidden_cost"):
        k.params_model.model_validate({**base, "iron": {"mode": "ebpf", "hidden_cost": "fitted"}})
    vanilla = k.params_model.model_validate({**base, "iron": {"mode": "off", "hidden_cost": "calibrated"}})
    assert not k.uses_calibration(vanilla)


@pytest.mark.parametrize("name", ["iron-mapreduce", "iron-hidden-cost"])
def test_new_specs_validate(name):
    spec = load_spec(REPO / "experiments" / f"{name}.yaml")
    for scale in ("quick", "paper"):
        assert expand(spec, scale).total_runs >= 1
    assert spec.claims and spec.figures
    for c in spec.claims:
        assert None not in c.band or c.one_sided


def test_mapreduce_claims_are_both_in_one_run():
    spec = load_spec(REPO / "experiments" / "iron-mapreduce.yaml")
    modes = {c.where["mode"] for c in spec.claims}
    assert modes == {"off", "ebpf"}
    points = expand(spec, "quick").points
    assert {p.params.iron.mode for p in points} == {"off", "ebpf"}
    assert {p.params.workload.job for p in points} == {"pi", "wordcount", "grep"}
    assert {p.params.workload.traffic for p in points} == {"terasort", "websearch", "datamining"}


def test_trace_distributions_sample_their_cdfs():
    ws, dm = msgtraffic.load("websearch"), msgtraffic.load("datamining")
    rng = random.Random(7)
    xs = sorted(ws.sample(rng) for _ in range(20000))
    assert 0.57 < sum(x <= 200_000 for x in xs) / len(xs) < 0.63  # the CDF says 0.6 at 200 KB
    assert xs[-1] <= 30_000_000
    ys = sorted(dm.sample(rng) for _ in range(20000))
    assert 0.47 < sum(y <= 1100 for y in ys) / len(ys) < 0.53  # 0.5 at 1100 B
    assert math.isclose(ws.mean(), 1.71e6, rel_tol=0.01)
    assert msgtraffic.load("terasort").sample(rng) == 200_000_000


def test_bad_distribution_file_names_file_and_field(tmp_path):
    f = tmp_path / "flows.yaml"
    f.write_text("distributions:\n  x:\n    cdf: [[0, 0.0], [10, 0.7]]\n")
    with pytest.raises(ValueError, match=r"flows.yaml: distributions.x.cdf"):
        msgtraffic.load("x", f)
    with pytest.raises(ValueError, match="distributions.nope: not defined"):
        msgtraffic.load("nope", f)


def test_corpus_is_deterministic(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    assert write_corpus(a, 0.05, seed=3) == write_corpus(b, 0.05, seed=3)
    assert a.read_bytes() == b.read_bytes() and len(a.read_bytes()) >= 50_000


def test_victim_share_is_cpu_over_allocation():
    from pathlib import Path

    from nfvlab.experiments.iron_interference import _victim_share
    from nfvlab.testbeds.model import CgroupPaths, Container

    cg = CgroupPaths(1, Path("/x"), Path("/x"), Path("/x"))
    v = Container("c0", 0, "victim", "c0", "h", "eth0", "198.18.0.10", 1, 100_000, 12_500, cg)
    assert math.isclose(_victim_share(v, 0.6, 4.8), 1.0)  # 12.5 % of 4.8 s
    assert math.isclose(_victim_share(v, 0.3, 4.8), 0.5)  # a disturbed baseline
    assert math.isnan(_victim_share(v, 0.0, 4.8))


def test_run_order_alternates_per_point_but_waits_for_the_online_probe():
    from nfvlab.experiments.iron_interference import ONLINE_PROBES, Driver

    k = get_kind("iron-interference")
    base = {"topology": {"containers_per_core": 2, "interferer": "udp_receiver", "receivers": 1},
            "workload": {"victim_events": 100}}
    d = Driver.__new__(Driver)  # the order rule only: no flood build, no testbed
    d._measured, d._hidden_obs = {}, {}
    a = k.params_model.model_validate(base)
    b = k.params_model.model_validate({**base, "workload": {"victim_events": 200}})
    assert [d._network_first(a, None) for _ in range(4)] == [False, True, False, True]
    assert [d._network_first(b, None) for _ in range(2)] == [False, True]  # its own count
    fixed = k.params_model.model_validate({**base, "workload": {"victim_events": 100, "run_order": "baseline_first"}})
    assert [d._network_first(fixed, None) for _ in range(3)] == [False] * 3
    online = k.params_model.model_validate({**base, "iron": {"mode": "ebpf", "hidden_cost": "online"}})
    iron = object()
    # the probe needs a baseline cost of its own repetition, so the point stays baseline-first until
    # it has its after-the-fact checks
    assert [d._network_first(online, iron) for _ in range(2)] == [False, False]
    d._hidden_obs[online.model_dump_json()] = {"probe": [1.0], "check": [2.0] * ONLINE_PROBES}
    assert [d._network_first(online, iron) for _ in range(2)] == [False, True]
