"""The Iron microbenchmark specs validate, every claim names a real reference value, and the kinds'
parameter models and the core meter's arithmetic behave (no root needed)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from nfvlab.analysis.reference import load_references
from nfvlab.experiments import iron_cpu_cap
from nfvlab.experiments.registry import get_kind
from nfvlab.plan import expand
from nfvlab.spec import SpecError, load_spec

from .conftest import REPO, SPECS


@pytest.mark.parametrize("name", SPECS)
def test_spec_validates_at_every_scale(name):
    spec = load_spec(REPO / "experiments" / f"{name}.yaml")
    assert spec.kind == name and {"quick", "paper"} <= set(spec.scales)
    for scale in ("quick", "paper"):
        assert expand(spec, scale).total_runs >= 1
    assert spec.claims and spec.figures


@pytest.mark.parametrize("name", SPECS)
def test_claims_reference_the_paper_values(name):
    refs = load_references()
    spec = load_spec(REPO / "experiments" / f"{name}.yaml")
    for claim in spec.claims:
        # a reproduction names the paper's value; a self-check may have none to name
        if claim.check == "reproduction" or claim.reference:
            assert claim.reference in refs, f"{claim.id}: {claim.reference}"


@pytest.mark.parametrize("name", SPECS)
def test_metrics_do_not_shadow_parameters(name):
    kind = get_kind(name)
    leaves = {p.split(".")[-1] for p in kind.parameter_names()}
    assert not leaves & set(kind.metrics)
    assert len(leaves) == len(kind.parameter_names())  # leaf names are unique (flat rows)


def test_bad_spec_names_the_field(tmp_path, write_spec):
    path = write_spec("iron-cpu-cap", sweep={"topology.case": ["senders", "bogus"]})
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert "case" in str(e.value)


def test_cpu_cap_roles_and_limits():
    P = iron_cpu_cap.Params
    p = P.model_validate({"topology": {"case": "senders"}, "workload": {"window_s": 1}})
    assert iron_cpu_cap.roles(p) == ["sysbench", "udp_sender", "udp_sender"]
    p = P.model_validate({"topology": {"case": "receivers"}, "workload": {"window_s": 1}})
    assert iron_cpu_cap.roles(p) == ["sysbench", "udp_receiver", "sysbench"]
    with pytest.raises(ValidationError):  # no sysbench container left
        P.model_validate({"topology": {"case": "senders", "network_containers": 3}, "workload": {"window_s": 1}})
    with pytest.raises(ValidationError):  # 4 x 30 % > the core
        P.model_validate({"topology": {"case": "senders", "containers_per_core": 4}, "workload": {"window_s": 1}})


def test_throughput_needs_a_finite_rate():
    kind = get_kind("iron-throughput")
    with pytest.raises(ValidationError):
        kind.params_model.model_validate({"workload": {"send_rate_mbps": math.inf, "window_s": 1}})


def _snap(t, idle, iowait, softirq, ksoft_ns, root_ns, cts):
    stat = {"user": 0, "idle": idle, "iowait": iowait, "softirq": softirq}
    return iron_cpu_cap.CoreSnapshot(t=t, stat=stat, net_rx=0, net_tx=0, ksoftirqd_ns=ksoft_ns, root_ns=root_ns,
                                     containers_ns=cts)


def test_core_meter_separates_foreign_tasks():
    meter = object.__new__(iron_cpu_cap.CoreMeter)  # no /proc reads: arithmetic only
    meter.hc = type("HC", (), {"user_hz": 100})()
    a = _snap(0.0, 0, 0, 0, 0, 0, {"c0": 0, "c1": 0})
    # 10 s: idle 1 s, containers 6 + 2 s, ksoftirqd 0.5 s, all tasks on the core 9.5 s -> foreign 1 s
    b = _snap(10.0, 90, 10, 50, int(0.5e9), int(9.5e9), {"c0": int(6e9), "c1": int(2e9)})
    d = meter.delta(a, b)
    assert d["idle_pct"] == pytest.approx(10.0)
    assert d["core_busy_pct"] == pytest.approx(90.0)
    assert d["foreign_pct"] == pytest.approx(10.0)
    assert d["cpu_used_pct"] == pytest.approx(80.0)
    assert d["unused_pct"] == pytest.approx(20.0)
    assert d["containers_cpu_pct"] == pytest.approx(80.0)
    assert d["ksoftirqd_cpu_pct"] == pytest.approx(5.0)
    assert d["softirq_cpu_pct"] == pytest.approx(5.0)
    assert d["cpu_pct"] == {"c0": pytest.approx(60.0), "c1": pytest.approx(20.0)}


def test_core_meter_without_per_cpu_totals():
    meter = object.__new__(iron_cpu_cap.CoreMeter)
    meter.hc = type("HC", (), {"user_hz": 100})()
    d = meter.delta(_snap(0.0, 0, 0, 0, 0, None, {}), _snap(1.0, 25, 0, 0, 0, None, {}))
    assert math.isnan(d["foreign_pct"]) and d["cpu_used_pct"] == pytest.approx(75.0)


def test_busy_testbed_is_waited_for_and_never_torn_down(monkeypatch):
    """TestbedBusy: retry later; down() would remove the lock holder's namespaces, so it must not run."""
    from nfvlab.testbeds.local import TestbedBusy

    calls = {"up": 0, "down": 0}

    class FakeTestbed:
        def up(self, roles, core_rate_mbps, idle_poll=None):
            calls["up"] += 1
            if calls["up"] < 3:
                raise TestbedBusy("busy")
            return f"topology for {roles}"

        def down(self):
            calls["down"] += 1

    monkeypatch.setattr(iron_cpu_cap, "LocalTestbed", FakeTestbed)
    monkeypatch.setattr(iron_cpu_cap.time, "sleep", lambda s: None)
    with iron_cpu_cap.local_testbed(["receiver"], wait_s=60) as topo:
        assert topo == "topology for ['receiver']"
        assert calls == {"up": 3, "down": 0}
    assert calls["down"] == 1  # only the testbed this run built

    calls.update(up=-10**6, down=0)
    with pytest.raises(TestbedBusy), iron_cpu_cap.local_testbed(["receiver"], wait_s=0):
        pass
    assert calls["down"] == 0
