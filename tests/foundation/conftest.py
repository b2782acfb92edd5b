"""Fixtures for the foundation tests: spec files in tmp dirs, and a guard that root tests leave no
namespace, link or cgroup of the local testbed behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from nfvlab.testbeds import cgroups
from nfvlab.testbeds.local import load_config, owned_links, owned_netns

REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and cgroups")


def leftovers() -> list[str]:
    found = [f"netns {n}" for n in owned_netns()] + [f"link {n}" for n in owned_links(load_config())]
    for root in cgroups.harness_roots():
        if (root / "local").exists():
            found.append(f"cgroup {root / 'local'}")
    return found


@pytest.fixture
def no_leftovers():
    assert leftovers() == [], "the local testbed is in use before the test"
    yield
    assert leftovers() == []


@pytest.fixture
def isolated_state(tmp_path, monkeypatch):
    """A private creation journal, so a test's clean() sees only what the test made."""
    from nfvlab import state

    monkeypatch.setattr(state, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(state, "JOURNAL", tmp_path / "state" / "created.jsonl")
    return tmp_path / "state"


def tiny_spec(**overrides) -> dict:
    """A real, small interference spec: one UDP receiver and the victim at 50 % each."""
    spec = {
        "name": "tiny-udp-receiver",
        "description": "one UDP receiver beside the victim",
        "paper": {"figures": ["2.4"]},
        "kind": "iron-interference",
        "params": {
            "topology": {"containers_per_core": 2, "interferer": "udp_receiver", "receivers": 1},
            "workload": {"victim_events": 1500, "flows": 2, "warmup_s": 0.3},
        },
        "repetitions": 1,
        "metrics": ["penalty_factor", "victim_time_base_s", "victim_time_net_s", "achieved_mbps",
                    "received_packets", "net_rx_softirqs"],
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def write_spec(tmp_path):
    def write(data: dict, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


# --- a testbed of this suite's own names (the machine-wide lock is shared with everyone) -------------
TR_PREFIX, TR_SUBNET = "nfvlab-tr", "198.18.2.0/24"
BUSY_WAIT_S = 300.0


@pytest.fixture
def tr_names(monkeypatch, isolated_state):
    """Drivers' LocalTestbed() builds nfvlab-tr-* in 198.18.2.0/24 (not the testbed's own names)."""
    from nfvlab.testbeds import local

    monkeypatch.setenv(local.ENV_PREFIX, TR_PREFIX)
    monkeypatch.setenv(local.ENV_SUBNET, TR_SUBNET)
    yield local.LocalConfig(prefix=TR_PREFIX, subnet=TR_SUBNET)
    assert tr_leftovers() == []


def tr_leftovers() -> list[str]:
    from nfvlab.testbeds.local import LocalConfig

    cfg = LocalConfig(prefix=TR_PREFIX)
    found = [f"netns {n}" for n in owned_netns(cfg)] + [f"link {n}" for n in owned_links(cfg)]
    found += [f"cgroup {r / TR_PREFIX}" for r in cgroups.harness_roots() if (r / TR_PREFIX).exists()]
    return found


def run_when_free(fn, *args, **kw):
    """fn(*args, **kw), retried while another helper's run holds the testbed lock; skip after a while."""
    import time

    from nfvlab.testbeds.local import TestbedBusy

    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        try:
            return fn(*args, **kw)
        except TestbedBusy:
            if time.monotonic() > deadline:
                pytest.skip("the local testbed stayed busy (another developer's run)")
            time.sleep(3.0)
