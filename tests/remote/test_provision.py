"""The playbooks over ssh (ansible-runner, not a local connection) on the emulated nodes: a first run
provisions them, a second run changes nothing (asserted from the runner's stats); the kernel play is
checked for syntax and in check mode only (it cannot reboot a namespace)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from nfvlab.provision import PLAYBOOKS, ansible_inventory, build_wheel, run_playbook
from nfvlab.testbeds.inventory import load_inventory

from .conftest import needs_nodes

pytestmark = [needs_nodes, pytest.mark.slow]


def test_inventory_for_ansible_groups_roles_and_checks_host_keys(emulated_nodes):
    inv = ansible_inventory(load_inventory(emulated_nodes.inventory_path))
    assert set(inv["all"]["children"]) == {"victim_host", "nf_host", "traffic_generator", "store"}
    n1 = inv["all"]["hosts"]["n1"]
    assert n1["ansible_host"] == "198.18.64.11" and n1["ansible_python_interpreter"] == "/usr/bin/python3"
    assert "StrictHostKeyChecking=yes" in n1["ansible_ssh_common_args"] and n1["nfvlab_shared_host"] is True


def test_site_playbook_provisions_then_changes_nothing(emulated_nodes, tmp_path):
    wheel = build_wheel(tmp_path / "wheel")
    first = run_playbook(emulated_nodes.inventory_path, "site", wheel=wheel, extravars={"nfvlab_offline": True},
                         quiet=True)
    assert first.ok, first.failures
    assert set(first.stats["processed"]) == {"n1", "n2", "n3"} and first.total("failures") == 0
    second = run_playbook(emulated_nodes.inventory_path, "site", wheel=wheel, extravars={"nfvlab_offline": True},
                          quiet=True)
    assert second.ok, second.failures
    assert second.changed == 0, f"second run changed something: {second.stats['changed']}"
    assert second.total("ok") > 0 and second.total("failures") == 0

    work = Path(emulated_nodes.work) / "remote"
    # base: the package landed in each node's own directory
    for n in ("n1", "n2", "n3"):
        assert (work / n / "site" / "nfvlab" / "__init__.py").is_file()
    # NIC tuning on the victim host: RPS of its NIC's queue steered to its core (1)
    rps = subprocess.run(["ip", "netns", "exec", "nfvlab-rn-n1", "cat", "/sys/class/net/eth0/queues/rx-0/rps_cpus"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert int(rps, 16) == 1 << 1
    # TRex on the generator: not installed (no tarball here), but its config is templated
    cfg = yaml.safe_load((work / "n2" / "trex" / "trex_cfg.yaml").read_text())
    assert cfg[0]["interfaces"][0] == "eth0" and cfg[0]["port_info"][0]["ip"] == "198.18.64.12"
    assert not (work / "n2" / "trex" / "v3.04").exists()
    # CHC store: a real redis-server answering on the store node's experiment address
    pong = subprocess.run(["redis-cli", "-h", "198.18.64.13", "-p", "6379", "ping"], capture_output=True, text=True,
                          timeout=10)
    assert pong.stdout.strip() == "PONG"
    # ... with CHC's Functions library loaded, and the data plane built from source on the NF host
    libs = subprocess.run(["redis-cli", "-h", "198.18.64.13", "-p", "6379", "--raw", "FUNCTION", "LIST"],
                          capture_output=True, text=True, timeout=10).stdout.split()
    assert "chc" in libs and "chc_incr" in libs
    scopes = subprocess.run([str(work / "n1" / "chc" / "build" / "chc-nf"), "--nf", "nat", "--scopes"],
                            capture_output=True, text=True, timeout=10)
    assert scopes.returncode == 0 and "5tuple" in scopes.stdout
    assert not (work / "n2" / "chc" / "build").exists()  # the generator is no NF host


def test_kernel_play_syntax_and_check_mode(emulated_nodes):
    out = subprocess.run([str(Path(__import__("sys").executable).parent / "ansible-playbook"), "--syntax-check",
                          "-i", "localhost,", "kernel.yml"], cwd=PLAYBOOKS, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    running = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    want = {"kernel_release": running, "kernel_package": "linux-image-amd64", "kernel_hosts": "n1"}
    # emulated nodes share this machine: the play refuses them outright
    refused = run_playbook(emulated_nodes.inventory_path, "kernel", check=True, extravars=want, quiet=True)
    assert not refused.ok and any("shares its machine" in f for f in refused.failures), refused.failures
    # as if it were a real host already running the wanted kernel: nothing to install, no reboot
    same = run_playbook(emulated_nodes.inventory_path, "kernel", check=True, quiet=True,
                        extravars=want | {"nfvlab_shared_host": False})
    assert same.ok, same.failures
    assert same.changed == 0
