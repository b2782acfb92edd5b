"""A journal of everything the harness creates, so `nfvlab clean` can remove it after any crash.

Each creation is appended (and fsynced) to a JSON-lines file *before* the object exists, so a crash
between the two leaves at most a journal entry for something absent, which clean tolerates.
Processes are recorded with their start time so clean never signals a recycled pid.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

PREFIX = "nfvlab"
STATE_DIR = Path(os.environ.get("NFVLAB_STATE_DIR", "/run/nfvlab"))
JOURNAL = STATE_DIR / "created.jsonl"


def record(kind: str, **fields: object) -> None:
    """kind: 'netns' | 'link' | 'cgroup' | 'process' | 'qdisc' | 'bpf'."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"kind": kind, **fields}) + "\n"
    with open(JOURNAL, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def entries() -> Iterator[dict]:
    try:
        lines = JOURNAL.read_text().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a crash


def reset() -> None:
    JOURNAL.unlink(missing_ok=True)


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])
