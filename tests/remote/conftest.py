"""Fixtures for the remote-testbed tests: three emulated ssh nodes (sshd in network namespaces) shared
by the whole session, and a guard that the tests leave none of our namespaces, links or cgroups."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from .sshnodes import BRIDGE, PREFIX, SSHD, EmulatedNodes

needs_nodes = pytest.mark.skipif(os.geteuid() != 0 or not Path(SSHD).exists(),
                                 reason="needs root and openssh-server for emulated ssh nodes")


def leftovers() -> list[str]:
    found = [f"netns {p.name}" for p in Path("/run/netns").glob(f"{PREFIX}-*")] if Path("/run/netns").exists() else []
    found += [f"link {p.name}" for p in Path("/sys/class/net").iterdir() if p.name.startswith(PREFIX)]
    for ctl in ("cpu", "cpuset", "cpuacct", "unified"):
        found += [f"cgroup {p}" for p in (Path("/sys/fs/cgroup") / ctl).glob(f"{PREFIX}-*")]
    return found


@pytest.fixture(scope="session")
def emulated_nodes():
    if os.geteuid() != 0 or not Path(SSHD).exists():
        pytest.skip("needs root and openssh-server")
    if leftovers():
        pytest.fail(f"leftovers of an earlier (killed?) run block the emulated nodes: {leftovers()}; "
                    f"remove them with: python tests/remote/sshnodes.py --clean  (bridge {BRIDGE})")
    work = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-ci-"))
    try:
        with EmulatedNodes(work, n=3) as nodes:
            yield nodes
        assert not leftovers(), f"emulated nodes left behind: {leftovers()}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
