"""sysbench CPU workload: argv builders, a parser for ``sysbench cpu run`` output, and a runner.

The Iron experiments (dissertation §2.1.3) measure a *victim* running ``sysbench cpu`` for a fixed
amount of work and compare its completion time under sysbench vs. network interferers. So the victim
runs a fixed number of events (``--events=N --time=0``) and interferers run until they are killed.

Never pass ``--events=0 --time=0``: sysbench then runs forever. The builders here refuse to.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "SysbenchError",
    "SysbenchResult",
    "find_sysbench",
    "parse_sysbench_cpu",
    "run_sysbench_cpu",
    "sysbench_cpu_argv",
    "sysbench_forever_argv",
    "sysbench_version",
]

_INSTALL_HINT = "apt-get install sysbench (Debian/Ubuntu; it is listed in deps/apt.txt)"


class SysbenchError(RuntimeError):
    """sysbench is missing, failed, or printed output that cannot be parsed."""


@dataclass(frozen=True)
class SysbenchResult:
    """The numbers of one ``sysbench cpu run``. Times in seconds, latencies in milliseconds."""

    total_time_s: float
    events: int
    events_per_s: float
    latency_min_ms: float
    latency_avg_ms: float
    latency_max_ms: float
    latency_p95_ms: float
    threads: int | None = None


def find_sysbench() -> str:
    """Return the path of the sysbench binary or raise :class:`SysbenchError` saying how to get it."""
    path = shutil.which("sysbench")
    if path is None:
        raise SysbenchError(f"sysbench not found: {_INSTALL_HINT}")
    return path


def sysbench_version(binary: str | None = None) -> str:
    """``sysbench --version`` output, e.g. ``"sysbench 1.0.20"`` (for provenance)."""
    binary = binary or find_sysbench()
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SysbenchError(f"{binary} --version failed: {exc}") from exc
    return out.stdout.strip()


def _check_common(threads: int, prime: int) -> None:
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if prime < 3:
        raise ValueError(f"prime (--cpu-max-prime) must be >= 3, got {prime}")


def sysbench_cpu_argv(events: int, threads: int = 1, prime: int = 10000, binary: str = "sysbench") -> list[str]:
    """argv for a fixed-work run: ``events`` prime computations, no time limit.

    >>> sysbench_cpu_argv(2000)
    ['sysbench', 'cpu', '--events=2000', '--time=0', '--threads=1', '--cpu-max-prime=10000', 'run']
    """
    if events < 1:
        # events=0 together with time=0 means "run forever"
        raise ValueError(f"events must be >= 1 for a fixed-work run, got {events}")
    _check_common(threads, prime)
    return [
        binary,
        "cpu",
        f"--events={events}",
        "--time=0",
        f"--threads={threads}",
        f"--cpu-max-prime={prime}",
        "run",
    ]


def sysbench_forever_argv(seconds: float, threads: int = 1, prime: int = 10000, binary: str = "sysbench") -> list[str]:
    """argv for an interferer that burns CPU until killed, with ``seconds`` as a safety limit.

    sysbench's ``--time`` is whole seconds; it is rounded up so the interferer never stops early.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0 (a time limit is required), got {seconds}")
    _check_common(threads, prime)
    whole = int(seconds) if float(seconds).is_integer() else int(seconds) + 1
    return [
        binary,
        "cpu",
        "--events=0",
        f"--time={whole}",
        f"--threads={threads}",
        f"--cpu-max-prime={prime}",
        "run",
    ]


_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_PATTERNS: dict[str, str] = {
    "events_per_s": rf"events per second:\s*{_NUM}",
    "total_time_s": rf"total time:\s*{_NUM}s",
    "events": r"total number of events:\s*([0-9]+)",
    "latency_min_ms": rf"^\s*min:\s*{_NUM}",
    "latency_avg_ms": rf"^\s*avg:\s*{_NUM}",
    "latency_max_ms": rf"^\s*max:\s*{_NUM}",
    "latency_p95_ms": rf"^\s*95th percentile:\s*{_NUM}",
}


def parse_sysbench_cpu(text: str) -> SysbenchResult:
    """Parse the stdout of ``sysbench cpu ... run`` (sysbench 1.0.x).

    Raises :class:`SysbenchError` naming the missing fields when the text is not such output.
    """
    if not text.strip():
        raise SysbenchError("cannot parse sysbench cpu output: it is empty")
    if "FATAL" in text:
        fatal = next(line for line in text.splitlines() if "FATAL" in line)
        raise SysbenchError(f"sysbench reported an error: {fatal.strip()}")
    latency = text.find("Latency (ms):")
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, pattern in _PATTERNS.items():
        # min/avg/max lines must come from the latency block, not e.g. "Threads fairness"
        haystack = text[latency:] if name.startswith("latency_") and latency >= 0 else text
        if name.startswith("latency_") and latency < 0:
            missing.append(name)
            continue
        m = re.search(pattern, haystack, re.MULTILINE)
        if m is None:
            missing.append(name)
        else:
            values[name] = m.group(1)
    if missing:
        head = text.strip().splitlines()[0][:120]
        raise SysbenchError(
            f"cannot parse sysbench cpu output: missing {', '.join(missing)} (output starts with {head!r})"
        )
    threads_m = re.search(r"Number of threads:\s*([0-9]+)", text)
    return SysbenchResult(
        total_time_s=float(values["total_time_s"]),
        events=int(values["events"]),
        events_per_s=float(values["events_per_s"]),
        latency_min_ms=float(values["latency_min_ms"]),
        latency_avg_ms=float(values["latency_avg_ms"]),
        latency_max_ms=float(values["latency_max_ms"]),
        latency_p95_ms=float(values["latency_p95_ms"]),
        threads=int(threads_m.group(1)) if threads_m else None,
    )


def run_sysbench_cpu(
    events: int,
    threads: int = 1,
    prime: int = 10000,
    *,
    prefix: Sequence[str] = (),
    timeout: float | None = None,
) -> SysbenchResult:
    """Run a fixed-work ``sysbench cpu`` to completion and parse it.

    ``prefix`` is prepended to the argv (e.g. ``["taskset", "-c", "1"]`` or
    ``["ip", "netns", "exec", "ns"]``). Raises :class:`SysbenchError` on a missing binary, a non-zero
    exit, a timeout or unparsable output.
    """
    argv = [*prefix, *sysbench_cpu_argv(events, threads, prime, binary=find_sysbench())]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SysbenchError(f"sysbench did not finish within {timeout} s: {' '.join(argv)}") from exc
    except OSError as exc:
        raise SysbenchError(f"cannot run {' '.join(argv)}: {exc}") from exc
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip()[-500:]
        raise SysbenchError(f"sysbench exited with status {proc.returncode}: {err}")
    return parse_sysbench_cpu(proc.stdout)
