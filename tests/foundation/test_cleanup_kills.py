"""Cleanup that cannot half-fail, on real namespaces and cgroups (nfvlab-tr-*, 198.18.2.0/24): a stray
process in a container cgroup goes with its cgroup (`nfvlab clean`, and `LocalTestbed.down`); a join
that does not take is an error; a failing teardown step still releases the lock and the PM QoS request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from nfvlab.testbeds import cgroups, cpuidle, local, network, processes
from nfvlab.testbeds.local import LocalTestbed, TeardownError

from .conftest import REPO, TR_PREFIX, TR_SUBNET, needs_root, run_when_free, tr_leftovers

pytestmark = [needs_root]


def _up(roles: list[str]) -> LocalTestbed:
    tb = LocalTestbed(prefix=TR_PREFIX, subnet=TR_SUBNET)
    run_when_free(tb.up, roles)
    return tb


def _stray(c) -> subprocess.Popen:
    """A process the harness did not start or journal, moved into the container's cgroups."""
    p = subprocess.Popen(["sleep", "1000"])
    cgroups.join(c.cgroup, p.pid)
    return p


def _gone(p: subprocess.Popen, timeout_s: float = 5.0) -> int:
    return p.wait(timeout_s)


def test_clean_kills_a_stray_process_and_removes_its_cgroup(tr_names, isolated_state):
    tb = _up(["victim", "other"])
    c = tb.topology.containers[1]
    stray = _stray(c)
    assert stray.pid in cgroups.tasks(c.cgroup.cpu)
    # the run "crashes": its lock and PM QoS request go (the kernel drops them), nothing is torn down
    tb._lock_file.close()
    tb._lock_file = None
    tb._idle.release()
    env = dict(os.environ, NFVLAB_STATE_DIR=str(isolated_state))
    deadline = time.monotonic() + 300
    while True:
        out = subprocess.run([sys.executable, "-m", "nfvlab.cli", "clean", "--prefix", TR_PREFIX], env=env,
                             capture_output=True, text=True, cwd=REPO)
        if "clean refused" not in out.stderr or time.monotonic() > deadline:
            break
        time.sleep(3)  # someone else took the testbed lock meanwhile
    assert out.returncode == 0, out.stderr
    assert _gone(stray) == -signal.SIGKILL
    assert f"process {stray.pid} (in an nfvlab cgroup)" in out.stdout
    assert not c.cgroup.cpu.exists() and not c.cgroup.cpuset.exists()
    assert c.cgroup.freezer is None or not c.cgroup.freezer.exists()
    assert tr_leftovers() == []


def test_down_kills_what_runs_in_the_containers(tr_names):
    tb = _up(["victim", "sysbench"])
    c = tb.topology.containers[1]
    long_job = _stray(c)  # e.g. a 1200 s interferer sysbench a crashed driver never stopped
    tb.down()
    assert _gone(long_job) == -signal.SIGKILL
    assert not c.cgroup.cpu.exists()


def test_a_join_that_does_not_take_raises(tr_names, tmp_path):
    tb = _up(["victim"])
    try:
        c = tb.topology.containers[0]
        # a "hierarchy" that is a plain directory: the write lands in a file, the read-back shows no move
        bogus = replace(c.cgroup, freezer=tmp_path / "not-a-cgroup")
        bogus.freezer.mkdir()
        p = subprocess.Popen(["sleep", "30"])
        try:
            with pytest.raises(cgroups.CgroupJoinError, match="not a cgroup"):
                cgroups.join(bogus, p.pid)
        finally:
            p.kill()
            p.wait()
        with pytest.raises(processes.NotInContainer, match="joining its cgroups failed"):
            processes.start_in_container(replace(c, cgroup=bogus), "bogus", ["sleep", "30"], tmp_path)
        ok = processes.start_in_container(c, "fine", ["sleep", "30"], tmp_path)  # the real one verifies
        assert processes.not_in(ok.pid, c.cgroup, c.netns) == []
        ok.stop()
    finally:
        tb.down()


def test_a_failing_teardown_step_still_releases_lock_and_pm_qos(tr_names, monkeypatch):
    tb = _up(["victim"])
    assert tb._idle.held or not Path(cpuidle.PM_QOS_DEVICE).exists()

    def refuse(name: str) -> bool:
        raise OSError("injected: netns busy")

    monkeypatch.setattr(network, "delete_netns", refuse)
    with pytest.raises(TeardownError, match="injected: netns busy"):
        tb.down()
    assert not tb._idle.held  # PM QoS request released
    assert tb._lock_file is None  # the testbed lock released (another helper may take it at once)
    assert tb.topology is None
    monkeypatch.undo()
    from nfvlab.clean import clean

    run_when_free(_clean_prefix, clean)
    assert tr_leftovers() == []


def _clean_prefix(clean) -> None:
    from nfvlab.clean import CleanRefused

    try:
        clean(prefix=TR_PREFIX)
    except CleanRefused as e:
        raise local.TestbedBusy(str(e)) from e
