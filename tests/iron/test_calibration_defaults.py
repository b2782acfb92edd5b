"""Iron's calibration is a recorded input: where IronRuntime takes the hidden per-IRQ costs from
(environment, a current saved calibration), when a saved one is stale, and that stale means
re-measured, never 0 (the measurement is injected here; the real one runs on the testbed)."""

from __future__ import annotations

import json

import pytest

from nfvlab.iron import calibration
from nfvlab.iron.calibration import CALIBRATION_FILE, CalibrationStale, current, ensure_current

HERE = {"kernel": "6.18-test", "cpu_model": "Test CPU", "cores": 2, "testbed_hash": "abc"}


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("NFVLAB_IRON_IRQ_EXTRA_NS", raising=False)
    monkeypatch.delenv("NFVLAB_IRON_TIMER_EXTRA_NS", raising=False)
    monkeypatch.setattr(calibration, "machine", lambda: dict(HERE))


def _save(d, **fields) -> None:
    (d / CALIBRATION_FILE).write_text(json.dumps({**HERE, "measured_at": 1.7e9, **fields}))


def test_nothing_saved_is_an_error_not_zero(tmp_path):
    with pytest.raises(CalibrationStale, match="not measured yet"):
        current(tmp_path)


def test_saved_calibration_gives_both_values_and_an_id(tmp_path):
    _save(tmp_path, irq_extra_ns=7584, timer_extra_ns=8827)
    cal = current(tmp_path)
    assert (cal.irq_extra_ns, cal.timer_extra_ns, cal.source) == (7584, 8827, "measured")
    assert cal.id and cal.measured_at.startswith("2023-")
    _save(tmp_path, irq_extra_ns=7584, timer_extra_ns=8828)
    assert current(tmp_path).id != cal.id  # another measurement, another id


def test_older_calibration_without_timer_uses_irq_value(tmp_path):
    _save(tmp_path, irq_extra_ns=7000)
    assert current(tmp_path).timer_extra_ns == 7000


@pytest.mark.parametrize("field,value", [("kernel", "0.0-other"), ("cpu_model", "Other CPU"), ("cores", 8),
                                         ("testbed_hash", "edited")])
def test_calibration_of_another_kernel_machine_or_testbed_is_stale(tmp_path, field, value):
    _save(tmp_path, irq_extra_ns=7000, **{field: value})
    with pytest.raises(CalibrationStale, match=f"{field} changed"):
        current(tmp_path)


def test_calibration_without_machine_fields_is_stale(tmp_path):
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"kernel": HERE["kernel"], "irq_extra_ns": 7000}))
    with pytest.raises(CalibrationStale, match="recorded without cpu_model"):
        current(tmp_path)


def test_stale_calibration_is_measured_again(tmp_path):
    _save(tmp_path, irq_extra_ns=7000, timer_extra_ns=7000, kernel="0.0-other")
    calls = []

    def measure():
        calls.append(1)
        return {"irq_extra_ns": 6100, "timer_extra_ns": 8400, "estimates": {"irq": [6000, 6100, 6200]}}

    cal = ensure_current(measure, tmp_path, log=lambda m: None)
    assert calls == [1] and (cal.irq_extra_ns, cal.timer_extra_ns) == (6100, 8400)
    saved = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert {k: saved[k] for k in HERE} == HERE  # saved with what it is valid for
    again = ensure_current(measure, tmp_path, log=lambda m: None)
    assert calls == [1] and again.id == cal.id  # current now: not measured twice


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    _save(tmp_path, irq_extra_ns=7584, timer_extra_ns=8827)
    monkeypatch.setenv("NFVLAB_IRON_IRQ_EXTRA_NS", "5000")
    cal = current(tmp_path)
    assert (cal.irq_extra_ns, cal.timer_extra_ns, cal.source) == (5000, 5000, "env")
    monkeypatch.setenv("NFVLAB_IRON_TIMER_EXTRA_NS", "9000")
    assert (current(tmp_path).irq_extra_ns, current(tmp_path).timer_extra_ns) == (5000, 9000)
    monkeypatch.delenv("NFVLAB_IRON_IRQ_EXTRA_NS")
    cal = current(tmp_path)
    assert (cal.irq_extra_ns, cal.timer_extra_ns, cal.source) == (7584, 9000, "measured+env")
