"""What every CHC experiment driver shares: the data plane built (once, `make chc` is a no-op when
current) and a work folder per topology under ``build/chc-runs/``."""

from __future__ import annotations

import hashlib
from pathlib import Path

from nfvlab.chc import build


class ChcDriver:
    def __init__(self, build_dir: Path):
        self.bin_dir = build.build(sanitize=False)
        self.build_dir = build_dir

    def work_dir(self, name: str, key: object = None) -> Path:
        """``build/chc-runs/<name>[-<hash of key>]``, created: one folder per topology key."""
        if key is not None:
            name = f"{name}-{hashlib.sha256(repr(key).encode()).hexdigest()[:12]}"
        work = self.build_dir / "chc-runs" / name
        work.mkdir(parents=True, exist_ok=True)
        return work
