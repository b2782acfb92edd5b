"""sysbench wrapper: argv builders, the parser on real captured output and on garbage, the runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nfvlab.workloads.sysbench import (
    SysbenchError,
    SysbenchResult,
    find_sysbench,
    parse_sysbench_cpu,
    run_sysbench_cpu,
    sysbench_cpu_argv,
    sysbench_forever_argv,
)

DATA = Path(__file__).parent / "data"

needs_sysbench = pytest.mark.skipif(shutil.which("sysbench") is None, reason="sysbench not installed")


def test_parse_real_single_thread_output() -> None:
    r = parse_sysbench_cpu((DATA / "sysbench_cpu_1thread.txt").read_text())
    assert r == SysbenchResult(
        total_time_s=0.4451,
        events=2000,
        events_per_s=4486.97,
        latency_min_ms=0.22,
        latency_avg_ms=0.22,
        latency_max_ms=0.31,
        latency_p95_ms=0.24,
        threads=1,
    )


def test_parse_real_two_thread_output() -> None:
    r = parse_sysbench_cpu((DATA / "sysbench_cpu_2threads.txt").read_text())
    assert r.threads == 2
    assert r.events == 1000
    assert r.total_time_s > 0
    assert r.latency_min_ms <= r.latency_avg_ms <= r.latency_max_ms
    assert r.latency_min_ms <= r.latency_p95_ms <= r.latency_max_ms


def test_parse_real_time_limited_output() -> None:
    r = parse_sysbench_cpu((DATA / "sysbench_cpu_time1s.txt").read_text())
    assert r.total_time_s == pytest.approx(1.0, abs=0.01)
    assert r.events > 0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ("hello world\n", "missing"),
        ("<html>502 Bad Gateway</html>", "missing"),
        ("FATAL: invalid option '--bogus'\n", "FATAL"),
    ],
)
def test_parse_garbage_raises_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(SysbenchError, match=fragment):
        parse_sysbench_cpu(text)


def test_parse_truncated_output_names_missing_fields() -> None:
    full = (DATA / "sysbench_cpu_1thread.txt").read_text()
    truncated = full[: full.index("Latency (ms):")]
    with pytest.raises(SysbenchError) as exc:
        parse_sysbench_cpu(truncated)
    assert "latency_p95_ms" in str(exc.value)
    assert "total_time_s" not in str(exc.value)


def test_fixed_events_argv() -> None:
    argv = sysbench_cpu_argv(5000, threads=2, prime=20000)
    assert argv == [
        "sysbench",
        "cpu",
        "--events=5000",
        "--time=0",
        "--threads=2",
        "--cpu-max-prime=20000",
        "run",
    ]


@pytest.mark.parametrize("events", [0, -1])
def test_fixed_events_argv_refuses_endless_run(events: int) -> None:
    with pytest.raises(ValueError, match="events"):
        sysbench_cpu_argv(events)


def test_forever_argv_has_a_time_limit() -> None:
    argv = sysbench_forever_argv(30)
    assert "--time=30" in argv and "--events=0" in argv
    assert "--time=1" in sysbench_forever_argv(0.2)  # rounded up, never 0
    assert "--time=3" in sysbench_forever_argv(2.5)
    for bad in (0, -5):
        with pytest.raises(ValueError):
            sysbench_forever_argv(bad)


def test_bad_threads_or_prime() -> None:
    with pytest.raises(ValueError, match="threads"):
        sysbench_cpu_argv(10, threads=0)
    with pytest.raises(ValueError, match="prime"):
        sysbench_forever_argv(1, prime=1)


def test_find_sysbench_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SysbenchError, match=r"sysbench not found: apt-get install sysbench"):
        find_sysbench()


@needs_sysbench
def test_run_real_sysbench() -> None:
    r = run_sysbench_cpu(300, prime=2000, timeout=30)
    assert r.events == 300
    assert r.total_time_s > 0
    assert r.events_per_s > 0


@needs_sysbench
def test_run_failure_is_reported() -> None:
    # `false` ignores the sysbench argv after it and exits 1
    with pytest.raises(SysbenchError, match="exited with status 1"):
        run_sysbench_cpu(10, prefix=["false"])
