"""Nodes: LocalNode on this machine, SshNode over fabric on emulated nodes (real sshd, real ssh)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nfvlab.testbeds.containers import NodeContainers
from nfvlab.testbeds.node import LocalNode, NodeError, SshNode, run_parallel
from nfvlab.testbeds.testbed import SshTestbed, start_in_node_container, start_on_node_peer

from .conftest import leftovers, needs_nodes


def test_local_node_runs_and_names_failures(tmp_path):
    node = LocalNode("here")
    assert node.run(["echo", "hi"]).stdout == "hi\n"
    with pytest.raises(NodeError, match=r"node here: `sh -c 'exit 3'` exited 3"):
        node.run(["sh", "-c", "exit 3"])
    with pytest.raises(NodeError, match=r"node here: `sleep 5` timed out after 0.2 s"):
        node.run(["sleep", "5"], timeout=0.2)
    assert node.run("cat", timeout=5).stdout == ""  # no stdin: cat sees EOF at once
    (tmp_path / "a").write_text("x")
    node.put(tmp_path / "a", tmp_path / "sub" / "b")
    assert (tmp_path / "sub" / "b").read_text() == "x"


def test_local_node_process_stopped_by_pid(tmp_path):
    node = LocalNode("here")
    p = node.start("sleeper", ["sleep", "30"], tmp_path)
    assert p.running() and node.alive(p.pid)
    p.stop(grace_s=2)
    assert not p.running() and not node.alive(p.pid)


def ssh_nodes(emulated) -> list[SshNode]:
    return SshTestbed(emulated.inventory_path).nodes  # type: ignore[return-value]


@needs_nodes
def test_ssh_node_runs_commands_in_its_own_namespace(emulated_nodes):
    nodes = ssh_nodes(emulated_nodes)
    try:
        run_parallel(nodes, "true", timeout=60)  # connect first: the timing below is of the commands only
        t0 = time.monotonic()
        res = run_parallel(nodes, "sleep 3; ip -o -4 addr show eth0", timeout=30)
        took = time.monotonic() - t0
        for n, e in zip(nodes, emulated_nodes.nodes, strict=True):
            assert f"{e.address}/24" in res[n.name].stdout  # each answers from its own address
        assert took < 3 * len(nodes) - 0.5, f"parallel run took {took:.1f} s"  # one after another: >= 9 s
        with pytest.raises(NodeError, match=r"node n2: `false` exited 1"):
            nodes[1].run("false")
        with pytest.raises(NodeError, match=r"node n1: `sleep 10` timed out after 0.5 s"):
            nodes[0].run("sleep 10", timeout=0.5)
        assert nodes[0].run("cat", timeout=5).stdout == ""  # no stdin over ssh either
        assert nodes[0].run("echo after-timeout").stdout.strip() == "after-timeout"
    finally:
        for n in nodes:
            n.close()


@needs_nodes
def test_ssh_node_rejects_unknown_host_key(emulated_nodes, tmp_path):
    (tmp_path / "known_hosts").write_text("")
    e = emulated_nodes.nodes[0]
    node = SshNode("n1", e.address, key=emulated_nodes.key, known_hosts=tmp_path / "known_hosts")
    with pytest.raises(NodeError, match=r"node n1: `true` could not run over ssh .*(not found in known_hosts|BadHost)"):
        node.run("true")


@needs_nodes
def test_ssh_node_processes_and_files(emulated_nodes, tmp_path):
    node = ssh_nodes(emulated_nodes)[2]
    try:
        remote = node.workdir / "t"
        p = node.start("sleeper", ["sh", "-c", "echo started; exec sleep 60"], remote)
        assert p.running()
        p.stop(grace_s=2)
        assert not p.running() and not node.alive(p.pid)
        assert node.run(f"pgrep -s {p.pid}", check=False).stdout == ""  # the whole session is gone
        assert p.stdout() == "started\n"
        q = node.start("exit7", ["sh", "-c", "echo oops >&2; exit 7"], remote)
        assert q.wait(10) == 7 and q.stderr() == "oops\n"
        (tmp_path / "up.txt").write_text("payload\n")
        node.put(tmp_path / "up.txt", remote / "up.txt")
        node.get(remote / "up.txt", tmp_path / "down.txt")
        assert (tmp_path / "down.txt").read_text() == "payload\n"
        got = node.get_tree(remote, tmp_path / "tree")
        assert {g.name for g in got} >= {"sleeper.out", "exit7.err", "up.txt"}
    finally:
        node.close()


@needs_nodes
def test_containers_on_an_ssh_node_reach_the_peer_node_and_go_away(emulated_nodes, tmp_path):
    with SshTestbed(emulated_nodes.inventory_path) as tb:
        topo = tb.up(["victim", "udp_receiver"])
        v = topo.victim
        assert v.cgroup.cpu.is_dir() and Path("/sys/fs/cgroup/cpu") / "nfvlab-rn-n1" / "c0" == v.cgroup.cpu
        assert (v.cgroup.cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (v.cgroup.cpuset / "cpuset.cpus").read_text().strip() == "1"
        # the NIC's receive queue is steered to the containers' core while the topology is up
        nic = tb.node("victim_host").run("cat /sys/class/net/eth0/queues/rx-0/rps_cpus").stdout.strip()
        assert int(nic, 16) == 1 << 1
        sb = start_in_node_container(v, "victim", ["sh", "-c", "cat /proc/self/cgroup; ip -o -4 addr"], tmp_path)
        assert sb.wait(20) == 0
        out = (tmp_path / "victim.out").read_text()  # fetched back from the node
        assert "/nfvlab-rn-n1/c0" in out and v.ip in out
        ping = start_on_node_peer(topo.peer, "ping", ["ping", "-c", "2", "-i", "0.2", topo.containers[1].ip],
                                  tmp_path)
        assert ping.wait(20) == 0, ping.stdout()
        assert "2 received" in ping.stdout()
    assert not [x for x in leftovers() if "-c" in x.split("/")[-1] or "/c" in x], leftovers()
    assert not (Path("/sys/fs/cgroup/cpu") / "nfvlab-rn-n1").exists()


@needs_nodes
def test_container_subnet_outside_benchmark_range_refused(emulated_nodes):
    node = ssh_nodes(emulated_nodes)[0]
    with pytest.raises(ValueError, match="outside 198.18.0.0/15"):
        NodeContainers(node, "10.0.0.0/28", "eth0")


@needs_nodes
def test_facts_name_nic_driver_and_tuning(emulated_nodes):
    with SshTestbed(emulated_nodes.inventory_path) as tb:
        facts = tb.facts()
    n1 = facts["nodes"]["n1"]
    assert facts["kind"] == "ssh" and set(facts["nodes"]) == {"n1", "n2", "n3"}
    assert n1["nic"]["driver"] == "veth" and n1["nic"]["rps_cpus"] == {"rx-0": "0"}
    assert n1["kernel"] and n1["kernel_cmdline"] and n1["roles"] == ["victim_host", "nf_host"]
    assert "irqbalance" in n1 and "cpu_governor" in n1
