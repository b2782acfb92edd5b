"""One tiny real interference point end to end (spec -> runner -> testbed -> workloads -> rows), and
resume after the runner is killed with SIGKILL mid-run. On the suite's own names (nfvlab-tr-*)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd

from nfvlab.clean import clean
from nfvlab.runner import run

from .conftest import REPO, TR_PREFIX, needs_root, run_when_free, tiny_spec, tr_leftovers

pytestmark = [needs_root]


def test_one_udp_receiver_slows_the_victim(tr_names, write_spec, tmp_path):
    path = write_spec(tiny_spec())
    summary = run_when_free(run, path, scale=None, results_root=tmp_path / "results", build_dir=tmp_path / "build")
    assert summary.done == 1
    df = pd.read_csv(tmp_path / "results" / "tiny-udp-receiver" / "results.csv")
    row = df.iloc[0]
    assert row["received_packets"] > 1000 and row["achieved_mbps"] > 10
    assert row["net_rx_softirqs"] > 0
    # The phenomenon (5.4x measured by hand here): the victim's core does the receiver's softirq work.
    assert row["penalty_factor"] > 1.3, row.to_dict()
    prov = (tmp_path / "results" / "tiny-udp-receiver" / "provenance.json").read_text()
    assert '"status": "complete"' in prov and '"kernel"' in prov and '"cgroup_version"' in prov
    # Re-running skips the finished repetition and touches no testbed.
    again = run(path, scale=None, results_root=tmp_path / "results", build_dir=tmp_path / "build")
    assert (again.done, again.skipped) == (0, 1)


def test_sigkill_mid_run_resumes_without_lost_or_duplicated_rows(tr_names, isolated_state, write_spec, tmp_path):
    spec = tiny_spec(name="tiny-crash", repetitions=4)
    spec["params"]["topology"] = {"containers_per_core": 2, "interferer": "udp_sender"}
    spec["params"]["workload"] = {"victim_events": 200, "warmup_s": 0.1}
    spec["metrics"] = ["penalty_factor", "victim_time_base_s", "victim_time_net_s"]
    path = write_spec(spec)
    results = tmp_path / "results"
    rows_dir = results / "tiny-crash" / "rows"
    env = dict(os.environ, NFVLAB_RESULTS=str(results), NFVLAB_BUILD=str(tmp_path / "build"),
               NFVLAB_STATE_DIR=str(isolated_state))
    cmd = [sys.executable, "-m", "nfvlab.cli", "run", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    deadline = time.monotonic() + 400  # (the run may first wait for another helper's testbed)
    while time.monotonic() < deadline and len(list(rows_dir.glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(list(rows_dir.glob("*.json")))
    assert 2 <= kept < 4, proc.stderr.read().decode()[-2000:]
    run_when_free(_clean_mine)  # the crash left the testbed up; clean removes it
    assert tr_leftovers() == []
    summary = run_when_free(run, path, scale=None, results_root=results, build_dir=tmp_path / "build")
    assert summary.skipped == kept and summary.done == 4 - kept
    df = pd.read_csv(results / "tiny-crash" / "results.csv")
    assert sorted(df["repetition"]) == [0, 1, 2, 3]


def _clean_mine() -> None:
    from nfvlab.clean import CleanRefused
    from nfvlab.testbeds.local import TestbedBusy

    try:
        clean(prefix=TR_PREFIX)
    except CleanRefused as e:
        raise TestbedBusy(str(e)) from e


def test_a_job_sized_in_cpu_time_runs_the_machines_own_rate(tr_names, write_spec, tmp_path):
    # victim_cpu_ms: the driver measures sysbench's events per CPU second on the victim's core once per
    # run and sizes the job from it, so a slow and a fast machine run jobs of the same CFS periods.
    spec = tiny_spec(name="tiny-cpu-sized", repetitions=2)
    spec["params"]["workload"] = {"victim_cpu_ms": 150, "warmup_s": 0.1}
    spec["metrics"] = ["penalty_factor", "victim_time_base_s", "victim_share_base", "victim_events_run",
                       "sysbench_events_per_cpu_s", "network_first"]
    path = write_spec(spec)
    run_when_free(run, path, scale=None, results_root=tmp_path / "results", build_dir=tmp_path / "build")
    df = pd.read_csv(tmp_path / "results" / "tiny-cpu-sized" / "results.csv")
    rate = df["sysbench_events_per_cpu_s"]
    assert (rate > 200).all() and rate.nunique() == 1, df.to_dict()  # measured once per run
    assert (df["victim_events_run"] == (rate * 0.150).round()).all()
    assert sorted(df["network_first"]) == [0, 1]  # run_order alternate: the second repetition runs traffic first
    # the baseline victim used about the CPU it was sized for: share of the core x wall time
    cpu_s = df["victim_time_base_s"] * df["victim_share_base"] * 0.5  # tiny spec: 2 containers, quota 1/2
    assert ((cpu_s > 0.150 * 0.8) & (cpu_s < 0.150 * 1.25)).all(), (cpu_s.tolist(), df.to_dict())


def test_the_job_size_is_given_exactly_once():
    import pytest
    from pydantic import ValidationError

    from nfvlab.experiments.iron_interference import WorkloadParams

    with pytest.raises(ValidationError, match="set exactly one"):
        WorkloadParams(victim_events=100, victim_cpu_ms=100)
    with pytest.raises(ValidationError, match="set exactly one"):
        WorkloadParams()
    assert WorkloadParams(victim_cpu_ms=100).victim_events is None
