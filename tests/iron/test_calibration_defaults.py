"""Where IronRuntime takes the hidden per-IRQ costs from: environment, saved calibration, or 0."""

from __future__ import annotations

import json
import os

from nfvlab.iron.runtime import CALIBRATION_FILE, default_irq_extra_ns


def _save(d, **fields) -> None:
    (d / CALIBRATION_FILE).write_text(json.dumps({"kernel": os.uname().release, **fields}))


def test_nothing_saved_means_zero(tmp_path, monkeypatch):
    monkeypatch.delenv("NFVLAB_IRON_IRQ_EXTRA_NS", raising=False)
    monkeypatch.delenv("NFVLAB_IRON_TIMER_EXTRA_NS", raising=False)
    assert default_irq_extra_ns(tmp_path) == (0, 0)


def test_saved_calibration_gives_both_values(tmp_path, monkeypatch):
    monkeypatch.delenv("NFVLAB_IRON_IRQ_EXTRA_NS", raising=False)
    monkeypatch.delenv("NFVLAB_IRON_TIMER_EXTRA_NS", raising=False)
    _save(tmp_path, irq_extra_ns=7584, timer_extra_ns=8827)
    assert default_irq_extra_ns(tmp_path) == (7584, 8827)


def test_older_calibration_without_timer_uses_irq_value(tmp_path, monkeypatch):
    monkeypatch.delenv("NFVLAB_IRON_IRQ_EXTRA_NS", raising=False)
    monkeypatch.delenv("NFVLAB_IRON_TIMER_EXTRA_NS", raising=False)
    _save(tmp_path, irq_extra_ns=7000)
    assert default_irq_extra_ns(tmp_path) == (7000, 7000)


def test_calibration_of_another_kernel_is_ignored(tmp_path, monkeypatch):
    monkeypatch.delenv("NFVLAB_IRON_IRQ_EXTRA_NS", raising=False)
    monkeypatch.delenv("NFVLAB_IRON_TIMER_EXTRA_NS", raising=False)
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"kernel": "0.0-other", "irq_extra_ns": 7000}))
    assert default_irq_extra_ns(tmp_path) == (0, 0)


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    _save(tmp_path, irq_extra_ns=7584, timer_extra_ns=8827)
    monkeypatch.setenv("NFVLAB_IRON_IRQ_EXTRA_NS", "5000")
    monkeypatch.delenv("NFVLAB_IRON_TIMER_EXTRA_NS", raising=False)
    assert default_irq_extra_ns(tmp_path) == (5000, 5000)  # one value for both, as before
    monkeypatch.setenv("NFVLAB_IRON_TIMER_EXTRA_NS", "9000")
    assert default_irq_extra_ns(tmp_path) == (5000, 9000)
    monkeypatch.delenv("NFVLAB_IRON_IRQ_EXTRA_NS")
    assert default_irq_extra_ns(tmp_path) == (7584, 9000)
