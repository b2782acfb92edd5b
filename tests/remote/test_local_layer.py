"""The iron-interference driver on the testbed layer does on the local testbed exactly what it did
with LocalTestbed: the same constructor arguments, the same up() call, the same teardown, and the
same counters. (No root needed: LocalTestbed is replaced by a recorder.)"""

from __future__ import annotations

import math

import pytest

from nfvlab.experiments import iron_interference
from nfvlab.testbeds import local
from nfvlab.testbeds.testbed import LocalNodeTestbed, SshTestbed, TestbedError


class Recorder:
    calls: list[tuple] = []

    def __init__(self, config=None, **kw):
        Recorder.calls.append(("init", config, kw))
        self.config = local.LocalConfig()

    def up(self, roles, core_rate_mbps=math.inf, idle_poll=None):
        Recorder.calls.append(("up", roles, core_rate_mbps, idle_poll))
        return "topology"

    def wait_quiet(self, sample_s=0.5):
        Recorder.calls.append(("wait_quiet", sample_s))
        return "load"

    def down(self):
        Recorder.calls.append(("down",))


def params(**iron):
    return iron_interference.Params.model_validate({
        "topology": {"containers_per_core": 3, "interferer": "udp_receiver", "receivers": 1},
        "workload": {"victim_events": 100, "core_rate_mbps": 1000},
        "iron": iron or {"mode": "off"},
    })


def test_driver_builds_the_local_testbed_as_before(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "LocalTestbed", Recorder)
    Recorder.calls = []
    driver = iron_interference.Driver(tmp_path / "build")
    with driver.setup(params()) as topo:
        assert topo == "topology"
        assert driver.testbed.wait_quiet() == "load"
    assert Recorder.calls == [
        ("init", None, {"wait_s": iron_interference.TESTBED_WAIT_S}),  # was LocalTestbed(wait_s=TESTBED_WAIT_S)
        ("up", ["victim", "udp_receiver", "sysbench"], 1000.0, None),  # was tb.up(roles(p), core_rate_mbps)
        ("wait_quiet", 0.5),
        ("down",),  # was LocalTestbed.__exit__ -> down()
    ]
    assert driver.testbed is None


def test_local_node_testbed_counters_are_this_machines():
    tb = LocalNodeTestbed.__new__(LocalNodeTestbed)  # no LocalTestbed needed to read /proc
    snap = tb.counters(0)
    assert snap.cpu == 0 and snap.ksoftirqd_pid > 0


def test_iron_ebpf_refused_on_an_ssh_testbed(tmp_path, monkeypatch):
    class FakeSsh(SshTestbed):
        def __init__(self):
            self.kind, self.name, self.nodes, self._containers = "ssh", "fake", [], None

        def up(self, *a, **k):  # never reached
            raise AssertionError

    driver = iron_interference.Driver(tmp_path / "build", testbed=FakeSsh)
    with pytest.raises(TestbedError, match="iron.mode must be off"), driver.setup(params(mode="ebpf")):
        pass
