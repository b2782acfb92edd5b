"""Fixtures for CHC tests: real redis-servers started and stopped by the test itself."""

from __future__ import annotations

import shutil

import pytest

from nfvlab.chc import store as chc_store


def _need_redis() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server/redis-cli not installed (deps/apt.txt lists them)")


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    _need_redis()
    with chc_store.start_standalone(1, tmp_path_factory.mktemp("redis")) as s:
        yield s


@pytest.fixture
def clean_standalone(standalone):
    for srv in standalone.servers:
        srv.client().flushall()
    return standalone


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _need_redis()
    with chc_store.start_cluster(3, tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="session")
def chc_bin():
    """The sanitizer build of the data plane (built once per session); returns name -> path."""
    from nfvlab.chc import build

    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    build.build(sanitize=True)
    return lambda name: str(build.binary(name, sanitize=True))


@pytest.fixture(scope="session")
def bin_dir(chc_bin):
    from pathlib import Path

    return Path(chc_bin("chc-nf")).parent


@pytest.fixture(scope="session")
def deployment(tmp_path_factory, chc_bin):
    """One local deployment (bridge, containers, a redis-server in its own container) for the
    session's chain tests; removed at the end."""
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, cgroups)")
    _need_redis()
    from nfvlab.chc.deploy import LocalDeployment

    with LocalDeployment(tmp_path_factory.mktemp("chcdep")) as dep:
        yield dep, dep.start_store(1)
