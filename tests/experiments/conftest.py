"""Fixtures for the Iron microbenchmark kinds: spec files in tmp dirs, root/tool guards, and a
guard that a real run leaves no testbed, Iron pins or changed sysctl behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SPECS = ["iron-cpu-cap", "iron-throughput", "iron-packet-cost", "iron-overhead"]


def need_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, cgroups, BPF)")
    for tool in ("clang", "bpftool", "ip", "sysbench"):
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")):
            pytest.skip(f"{tool} not installed")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("needs kernel BTF")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")


def my_iron_pins() -> list[str]:
    root = Path("/sys/fs/bpf/nfvlab")
    return sorted(str(p) for p in root.glob(f"iron-{os.getpid()}-*")) if root.is_dir() else []


@pytest.fixture
def write_spec(tmp_path):
    def write(name: str, **changes) -> Path:
        """A copy of experiments/<name>.yaml with top-level fields replaced."""
        data = yaml.safe_load((REPO / "experiments" / f"{name}.yaml").read_text())
        data.update(changes)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def real_run(monkeypatch):
    """Root + tools; wait at most a minute for another run's testbed; check nothing is left behind."""
    need_root_tools()
    from nfvlab.experiments import iron_cpu_cap
    from nfvlab.testbeds.local import TestbedBusy

    monkeypatch.setattr(iron_cpu_cap, "TESTBED_WAIT_S", 60.0)
    # an explicit, recorded calibration (calibration_source "env"): these runs check behaviour, and the
    # real measurement (nfvlab.iron.calibrate) takes minutes
    monkeypatch.setenv("NFVLAB_IRON_IRQ_EXTRA_NS", "0")
    stats_before = Path("/proc/sys/kernel/bpf_stats_enabled").read_text()

    def run(path: Path, tmp: Path):
        from nfvlab.runner import run as run_spec

        try:
            return run_spec(path, scale=None, results_root=tmp / "results", build_dir=tmp / "build")
        except TestbedBusy:
            pytest.skip("the local testbed stayed busy (another developer's run)")

    yield run
    assert my_iron_pins() == []
    assert Path("/proc/sys/kernel/bpf_stats_enabled").read_text() == stats_before
