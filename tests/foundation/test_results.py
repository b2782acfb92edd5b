"""Crash safety of the result store: a writer killed with SIGKILL at any moment leaves only whole rows,
and the CSV view always agrees with them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pandas as pd

from nfvlab.results import ResultStore

WRITER = """
import sys
from pathlib import Path
from nfvlab.results import ResultStore
store = ResultStore(Path(sys.argv[1]), "crashy")
print("ready", flush=True)
for i in range(100000):
    store.write_row(f"p={i}", 0, {"point_index": i, "value": i * 0.5, "pad": "x" * 2000})
"""


def test_rows_survive_sigkill_at_any_moment(tmp_path):
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE)
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = ResultStore(tmp_path, "crashy")
        for f in store.rows_dir.glob("*.json"):
            json.loads(f.read_text())  # every row file is whole
        rows = store.rows()
        assert rows, "the writer had time to write rows"
        store.rebuild_csv()
        df = pd.read_csv(store.csv_path)
        assert len(df) == len(rows) == len({r["point_id"] for r in rows})


def test_has_and_csv_are_tidy(tmp_path):
    store = ResultStore(tmp_path, "s")
    store.write_row("a=1", 0, {"point_index": 0, "rate": float("inf"), "penalty_factor": 2.0})
    store.write_row("a=1", 1, {"point_index": 0, "rate": float("inf"), "penalty_factor": 3.0})
    store.write_row("a=1", 1, {"point_index": 0, "rate": float("inf"), "penalty_factor": 3.0})  # rewrite
    assert store.has("a=1", 0) and store.has("a=1", 1) and not store.has("a=1", 2)
    df = pd.read_csv(store.csv_path)
    assert list(df["repetition"]) == [0, 1]
    assert df["penalty_factor"].median() == 2.5
    assert store.frame()["rate"].iloc[0] == float("inf")
