"""Crash-safe result storage for one spec: one JSON file per measured repetition, written
atomically (temp file + rename), and a tidy results.csv rebuilt atomically from them.

A SIGKILL at any moment leaves either the complete row file or none, so a resumed run neither loses
nor duplicates rows; results.csv is a derived view and is rebuilt from the row files at every write.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


def atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return v


class ResultStore:
    def __init__(self, results_root: Path, spec_name: str):
        self.dir = results_root / spec_name
        self.rows_dir = self.dir / "rows"
        self.raw_dir = self.dir / "raw"
        self.csv_path = self.dir / "results.csv"
        self.figures_dir = self.dir / "figures"

    @classmethod
    def row_key(cls, point_id: str, repetition: int) -> str:
        return f"{cls.point_hash(point_id)}-r{repetition}"

    def has(self, point_id: str, repetition: int) -> bool:
        return (self.rows_dir / f"{self.row_key(point_id, repetition)}.json").exists()

    @staticmethod
    def point_hash(point_id: str) -> str:
        return hashlib.sha1(point_id.encode()).hexdigest()[:16]

    def raw_path(self, point_slug: str, repetition: int, fresh: bool = False) -> Path:
        """The raw-output folder of one repetition. Slugs carry the point's hash (runner.point_slug), so
        the folder is keyed like the row: another scale's points never share it. ``fresh`` empties it
        first (a re-measured repetition must not keep the stale measurement's logs beside the new)."""
        p = self.raw_dir / point_slug / f"r{repetition}"
        if fresh and p.exists():
            shutil.rmtree(p)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def row(self, point_id: str, repetition: int) -> dict[str, Any] | None:
        try:
            return json.loads((self.rows_dir / f"{self.row_key(point_id, repetition)}.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def update_row(self, point_id: str, repetition: int, changes: dict[str, Any]) -> None:
        """Add columns to a stored row (e.g. that --keep-stale kept it), atomically."""
        old = self.row(point_id, repetition)
        if old is None:
            raise KeyError(f"no row for {point_id} repetition {repetition}")
        old.pop("point_id", None)
        old.pop("repetition", None)
        self.write_row(point_id, repetition, {**old, **changes}, rebuild=False)

    def write_row(self, point_id: str, repetition: int, row: dict[str, Any], rebuild: bool = True) -> None:
        record = {"point_id": point_id, "repetition": repetition, **row}
        text = json.dumps({k: _jsonable(v) for k, v in record.items()}, sort_keys=False)
        atomic_write(self.rows_dir / f"{self.row_key(point_id, repetition)}.json", text)
        if rebuild:
            self.rebuild_csv()

    def rows(self) -> list[dict[str, Any]]:
        if not self.rows_dir.is_dir():
            return []
        out = []
        for f in sorted(self.rows_dir.glob("*.json")):
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, json.JSONDecodeError):
                continue  # never produced by atomic_write; ignore foreign files
        return out

    def frame(self) -> pd.DataFrame:
        rows = self.rows()
        df = pd.DataFrame(rows)
        if df.empty:
            return df
        return df.replace({"inf": math.inf}).sort_values(["point_index", "repetition"], ignore_index=True)

    def rebuild_csv(self) -> None:
        df = self.frame()
        atomic_write(self.csv_path, df.to_csv(index=False))
