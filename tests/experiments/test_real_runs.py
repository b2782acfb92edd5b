"""Tiny real runs of the Iron microbenchmark kinds through the runner (spec -> plan -> runner -> local
testbed -> rows): measured values are sane, everything is torn down, runs resume. Root only.

These check behaviour, not Iron's targets: the isolation numbers are measured claims for the report.
"""

from __future__ import annotations

import pandas as pd
import pytest

from nfvlab.experiments import iron_cpu_cap
from nfvlab.testbeds.local import owned_netns

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _frame(tmp_path, name: str) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "results" / name / "results.csv")


def test_cpu_cap_with_iron_measures_a_sane_window(real_run, write_spec, tmp_path):
    path = write_spec(
        "iron-cpu-cap", repetitions=1, scales={},
        params={"topology": {"containers_per_core": 3, "quota_pct": 30, "case": "senders"},
                "workload": {"window_s": 1.0, "warmup_s": 0.5, "flows": 1},
                "iron": {"mode": "ebpf", "drop": "xdp"}},
        sweep={}, claims=[], figures=[])
    summary = real_run(path, tmp_path)
    assert summary.done == 1
    row = _frame(tmp_path, "iron-cpu-cap").iloc[0]
    assert 0 < row["cpu_used_pct"] <= 100.5
    assert 0 <= row["idle_pct"] <= 100
    assert row["allocated_pct"] == 90
    assert 0 < row["sysbench_cpu_pct"] <= 100 and row["network_cpu_pct"] > 0
    assert row["offered_mbps"] > 0 and row["achieved_mbps"] > 0
    assert row["iron_charged_ms"] >= 0 and row["iron_gained_ms"] >= 0
    assert owned_netns() == []
    again = real_run(path, tmp_path)  # resumable: the finished repetition is skipped
    assert (again.done, again.skipped) == (0, 1)


def test_packet_cost_udp_is_positive(real_run, write_spec, tmp_path):
    path = write_spec("iron-packet-cost", repetitions=1, scales={}, sweep={"workload.traffic": ["udp"]},
                      params={"workload": {"window_s": 0.7, "warmup_s": 0.3, "flows": 2}},
                      claims=[], figures=[])
    assert real_run(path, tmp_path).done == 1
    row = _frame(tmp_path, "iron-packet-cost").iloc[0]
    assert row["rx_packets"] > 1000
    assert 0 < row["cost_per_packet_ns"] < 1e6
    assert row["ratio_to_udp"] == pytest.approx(1.0)
    assert owned_netns() == []


def test_throughput_and_overhead_phases(real_run, write_spec, tmp_path):
    tp = write_spec("iron-throughput", repetitions=1, scales={}, sweep={}, claims=[], figures=[],
                    params={"workload": {"send_rate_mbps": 300, "window_s": 0.7, "warmup_s": 0.3}})
    assert real_run(tp, tmp_path).done == 1
    row = _frame(tmp_path, "iron-throughput").iloc[0]
    assert row["vanilla_rx_mbps"] > 50 and row["iron_rx_mbps"] > 0
    assert 0 < row["needed_cpu_pct"] <= 100 and 1 <= row["applied_limit_pct"] <= 100
    assert row["retention_pct"] > 0
    ov = write_spec("iron-overhead", repetitions=1, scales={}, sweep={}, claims=[], figures=[],
                    params={"workload": {"proto": "udp", "window_s": 0.7, "warmup_s": 0.3, "flows": 2}})
    assert real_run(ov, tmp_path).done == 1
    row = _frame(tmp_path, "iron-overhead").iloc[0]
    assert row["bpf_ns_per_packet"] > 0 and row["bpf_runs_per_packet"] > 0
    assert row["rx_kpps_without"] > 1 and row["rx_kpps_with"] > 1
    assert owned_netns() == []


def test_failure_mid_window_tears_everything_down(real_run, write_spec, tmp_path, monkeypatch):
    def boom(self):
        raise RuntimeError("injected failure")

    path = write_spec(
        "iron-cpu-cap", repetitions=1, scales={}, sweep={}, claims=[], figures=[],
        params={"topology": {"case": "receivers"}, "workload": {"window_s": 1.0, "warmup_s": 0.2},
                "iron": {"mode": "ebpf"}})
    monkeypatch.setattr(iron_cpu_cap.CoreMeter, "snapshot", boom)
    with pytest.raises(RuntimeError, match="injected"):
        real_run(path, tmp_path)
    assert owned_netns() == []  # the real_run fixture also checks no Iron pins are left
    assert not list((tmp_path / "results" / "iron-cpu-cap" / "rows").glob("*.json"))
