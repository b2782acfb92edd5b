from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def results_root(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    root.mkdir()
    return root
