"""The local testbed on real namespaces, veths, cgroups and qdiscs: create, check, tear down, and
`nfvlab clean` after a crash. On the suite's own names (prefix nfvlab-tr, 198.18.2.0/24) under the
machine-wide lock, so that another helper's live testbed is never touched (nor breaks the test)."""

from __future__ import annotations

import dataclasses
import json
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nfvlab import state
from nfvlab.clean import clean
from nfvlab.testbeds import cgroups, cpuidle, network
from nfvlab.testbeds.local import LocalTestbed, TestbedBusy

from .conftest import TR_PREFIX, TR_SUBNET, needs_root, run_when_free, tr_leftovers

pytestmark = [needs_root]


def _pm_qos_latency() -> int:
    with open(cpuidle.PM_QOS_DEVICE, "rb") as f:  # reading returns the system's current target (s32)
        return struct.unpack("i", f.read(4))[0]


def test_poll_idle_request_is_held_and_released():
    if not Path(cpuidle.PM_QOS_DEVICE).exists():
        pytest.skip("no PM QoS device")
    before = _pm_qos_latency()
    with cpuidle.PollIdle() as req:
        assert req.held and _pm_qos_latency() == 0
    assert not req.held and _pm_qos_latency() == before
    assert cpuidle.PollIdle("/nonexistent/cpu_dma_latency").acquire() is False


def _in_ns(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=True).stdout


def _mine() -> LocalTestbed:
    return LocalTestbed(prefix=TR_PREFIX, subnet=TR_SUBNET)


def test_default_and_prefixed_names():
    from nfvlab.testbeds.local import LocalConfig

    cfg = LocalConfig()  # the testbed's own names, as the docs and `nfvlab clean` know them
    assert (cfg.container_name(3), cfg.peer_name, cfg.bridge_name, cfg.cgroup_run) == (
        "nfvlab-c3", "nfvlab-peer", "nfvlab-br0", "local")
    cfg = LocalConfig(prefix="nfvlab-ti")
    assert (cfg.container_name(3), cfg.peer_name, cfg.bridge_name, cfg.cgroup_run) == (
        "nfvlab-ti-c3", "nfvlab-ti-p", "nfvlab-ti-br0", "nfvlab-ti")  # -peer-h would exceed 15 characters
    with pytest.raises(ValueError):
        LocalConfig(prefix="other")  # clean finds everything by the nfvlab prefix


def test_up_creates_containers_and_down_removes_them(tr_names):
    qos = Path(cpuidle.PM_QOS_DEVICE).exists()
    with _mine() as tb:
        run_when_free(tb.up, ["victim", "udp_sender", "udp_sender"], core_rate_mbps=300)
        topo = tb.topology
        assert [c.name for c in topo.containers] == ["nfvlab-tr-c0", "nfvlab-tr-c1", "nfvlab-tr-c2"]
        for c in topo.containers:
            assert c.quota_us == c.period_us // 3
            if c.cgroup.version == 1:
                assert int((c.cgroup.cpu / "cpu.cfs_quota_us").read_text()) == c.quota_us
                assert (c.cgroup.cpuset / "cpuset.cpus").read_text().strip() == str(c.cpu)
            else:
                assert (c.cgroup.cpu / "cpu.max").read_text().split() == [str(c.quota_us), str(c.period_us)]
            assert c.ip.startswith("198.18.")
            assert c.ip in _in_ns(c.netns, "ip", "-4", "addr", "show", "dev", "eth0")
            rps = _in_ns(c.netns, "cat", "/sys/class/net/eth0/queues/rx-0/rps_cpus")
            assert int(rps, 16) == 1 << c.cpu
        # the peer reaches every container over the bridge
        out = _in_ns(topo.peer.netns, "ping", "-c", "1", "-W", "2", topo.containers[2].ip)
        assert "1 received" in out
        classes = subprocess.run(["tc", "class", "show", "dev", topo.peer.host_ifname],
                                 capture_output=True, text=True).stdout
        assert "rate 300Mbit" in classes and classes.count("rate 100Mbit") == 3
        with pytest.raises(TestbedBusy):
            LocalTestbed().up(["victim", "sysbench"])  # one testbed per machine, whatever its names
        if qos:  # idle CPUs poll while the testbed is up
            assert _pm_qos_latency() == 0
            assert tb._idle.held
    assert tr_leftovers() == []
    assert not tb._idle.held  # the request ended with the testbed (others' requests may still hold 0)


def test_process_joins_container_cgroups(tr_names, tmp_path):
    from nfvlab.testbeds import processes

    with _mine() as tb:
        topo = run_when_free(tb.up, ["victim", "sysbench"])
        p = processes.start_in_container(topo.victim, "sleeper", ["sleep", "30"], tmp_path)
        try:
            cg = Path(f"/proc/{p.pid}/cgroup").read_text()  # start_in_container returns once it is inside
            assert "nfvlab/nfvlab-tr/nfvlab-tr-c0" in cg
            assert Path(f"/proc/{p.pid}/ns/net").resolve() != Path("/proc/self/ns/net").resolve()
            assert any(e.get("pid") == p.pid for e in state.entries())
        finally:
            p.stop()
        assert not p.running()


def test_start_all_puts_each_process_in_its_container_and_stops_all_on_a_failure(tr_names, tmp_path):
    from nfvlab.testbeds import processes

    with _mine() as tb:
        topo = run_when_free(tb.up, ["victim", "sysbench", "sysbench"])
        jobs = [(c, f"sleeper{c.index}", ["sleep", "30"]) for c in topo.containers]
        ps = processes.start_all_in_containers(jobs, tmp_path)
        try:
            for c, p in zip(topo.containers, ps, strict=True):  # returned once every one is inside
                assert processes.not_in(p.pid, c.cgroup, c.netns) == []
        finally:
            processes.stop_all(ps)
        assert not any(p.running() for p in ps)
        # the last launcher cannot join (its "cgroup" is a plain directory): the ones before it are stopped
        plain = tmp_path / "not-a-cgroup"
        plain.mkdir()
        c = topo.containers[2]
        fake = dataclasses.replace(c, cgroup=dataclasses.replace(c.cgroup, cpu=plain, cpuset=plain, cpuacct=plain))
        bad = [*jobs[:2], (fake, "outside", ["sleep", "30"])]
        before = {e.get("pid") for e in state.entries()}
        with pytest.raises(processes.NotInContainer):
            processes.start_all_in_containers(bad, tmp_path)
        mine = [e["pid"] for e in state.entries()
                if e.get("pid") not in before and e.get("name", "").startswith("sleeper")]
        assert len(mine) == 2
        assert not [pid for pid in mine if Path(f"/proc/{pid}").exists()
                    and b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_cpu_usage_counts_what_runs_in_the_container(tr_names, tmp_path):
    """The experiments read a container's CPU time through the testbed (the remote ones over ssh)."""
    from nfvlab.testbeds import processes

    with _mine() as tb:
        topo = run_when_free(tb.up, ["victim", "sysbench"])
        before_victim, before_other = tb.cpu_usage_s(topo.victim), tb.cpu_usage_s(topo.containers[1])
        spin = [sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"]
        p = processes.start_in_container(topo.victim, "spin", spin, tmp_path)
        assert p.wait(30) == 0
        used = tb.cpu_usage_s(topo.victim) - before_victim
        assert 0.3 <= used < 2.0   # the loop's 0.3 s plus the interpreter's start
        assert tb.cpu_usage_s(topo.containers[1]) - before_other < 0.05


CRASHER = """
import os, signal, subprocess
from nfvlab.testbeds.local import LocalTestbed
from nfvlab.testbeds import processes
from pathlib import Path
tb = LocalTestbed()
topo = tb.up(["victim", "udp_receiver"], core_rate_mbps=100)
processes.start_in_container(topo.victim, "orphan", ["sleep", "300"], Path(os.environ["LOGS"]))
print("up", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _crash(env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", CRASHER], capture_output=True, text=True, env=env)
    if "TestbedBusy" in out.stderr:
        raise TestbedBusy(out.stderr[-200:])
    return out


def _clean_mine() -> list[str]:
    from nfvlab.clean import CleanRefused

    try:
        return clean(prefix=TR_PREFIX)
    except CleanRefused as e:
        raise TestbedBusy(str(e)) from e


def test_clean_after_sigkill_removes_everything(tr_names, isolated_state, tmp_path):
    env = {"NFVLAB_STATE_DIR": str(isolated_state), "LOGS": str(tmp_path), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "NFVLAB_TESTBED_PREFIX": TR_PREFIX, "NFVLAB_TESTBED_SUBNET": TR_SUBNET}
    out = run_when_free(_crash, env)
    assert out.returncode == -signal.SIGKILL and "up" in out.stdout, out.stderr
    assert tr_leftovers(), "the crashed run left its testbed behind (as a crash would)"
    orphans = [e for e in state.entries() if e["kind"] == "process"]
    assert len(orphans) == 1
    # the harness's processes die with it (parent-death signal): no 300 s sleep survives the crash
    deadline = time.monotonic() + 3
    while state.process_start_time(orphans[0]["pid"]) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.process_start_time(orphans[0]["pid"]) is None
    removed = run_when_free(_clean_mine)  # (a full `nfvlab clean` would also remove other helpers' objects)
    assert any(r.startswith("netns nfvlab-tr-c0") for r in removed)
    assert tr_leftovers() == []
    assert not any((r / TR_PREFIX).exists() for r in cgroups.harness_roots())
    assert "nfvlab-tr-br0" not in network.list_links("nfvlab-tr-")
    json.dumps(removed)


def test_core_load_sees_a_busy_core(tmp_path):
    from nfvlab.testbeds.local import core_load

    spin = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        load = core_load(1, 0.5)
        assert load.busy_pct > 80 and 0 <= load.irq_pct <= load.busy_pct
    finally:
        spin.kill()
        spin.wait()
    assert 0 <= core_load(0, 0.2).busy_pct <= 100


def test_refused_up_leaves_the_running_testbed_alone(tr_names):
    with _mine() as tb:
        run_when_free(tb.up, ["victim", "sysbench"])
        with pytest.raises(TestbedBusy), _mine() as other:
            other.up(["victim", "sysbench"])
        assert network.netns_exists("nfvlab-tr-c0") and network.netns_exists("nfvlab-tr-p")
    assert tr_leftovers() == []
