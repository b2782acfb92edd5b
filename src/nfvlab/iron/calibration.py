"""Iron's fitted calibration as a recorded input: where it is stored, when it is stale, and the one
way every user gets it.

The calibration (``python -m nfvlab.iron.calibrate``, saved to ``build/iron/calibration.json``) holds
the per hard-IRQ costs no tracepoint sees (``irq_extra_ns``, ``timer_extra_ns``). It was measured on
one kernel, one machine and one testbed configuration; it is **stale** when any of them changed:

* ``kernel`` (``uname -r``), ``cpu_model`` and ``cores`` (``/proc/cpuinfo``, ``os.cpu_count()``),
* ``testbed_hash`` (the parsed ``testbed/local.yaml``, nfvlab.stamps.testbed_hash).

A stale or missing calibration is never silently 0: :func:`current` raises :class:`CalibrationStale`
naming the reasons, and :func:`ensure_current` measures it again (the runner does this before the
first point that uses Iron). ``NFVLAB_IRON_IRQ_EXTRA_NS`` / ``NFVLAB_IRON_TIMER_EXTRA_NS`` override the
file explicitly; such a calibration has ``source == "env"`` and its own id, so rows show it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build import default_build_dir

CALIBRATION_FILE = "calibration.json"  # in Iron's build dir
ENV_IRQ, ENV_TIMER = "NFVLAB_IRON_IRQ_EXTRA_NS", "NFVLAB_IRON_TIMER_EXTRA_NS"
MACHINE_KEYS = ("kernel", "cpu_model", "cores", "testbed_hash")


class CalibrationStale(RuntimeError):
    """No current calibration: missing, unreadable, or measured on another kernel/machine/testbed."""

    def __init__(self, path: Path, reasons: list[str]):
        self.path, self.reasons = path, reasons
        super().__init__(f"Iron calibration {path} is not current: {'; '.join(reasons)} "
                         "(re-measure: make iron-calibrate)")


@dataclass(frozen=True)
class Calibration:
    irq_extra_ns: int
    timer_extra_ns: int
    id: str  # stable name of this calibration (hash of the saved file's values), recorded in rows
    source: str  # "measured" (the saved file), "env" (environment override) or "explicit"
    measured_at: str | None = None  # ISO time of the measurement

    @classmethod
    def explicit(cls, irq_extra_ns: int, timer_extra_ns: int, why: str) -> Calibration:
        """Values chosen by the caller (e.g. 0 while measuring the calibration itself)."""
        return cls(int(irq_extra_ns), int(timer_extra_ns), f"explicit-{why}-{irq_extra_ns}-{timer_extra_ns}",
                   "explicit")


def path_for(build_dir: Path | None = None) -> Path:
    return Path(build_dir or default_build_dir()) / CALIBRATION_FILE


def machine() -> dict[str, Any]:
    """What a calibration is valid for: this kernel, CPU, core count and testbed configuration."""
    from nfvlab.provenance import cpu_model
    from nfvlab.stamps import testbed_hash

    return {"kernel": os.uname().release, "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "testbed_hash": testbed_hash()}


def stale_reasons(doc: dict[str, Any], now: dict[str, Any]) -> list[str]:
    reasons = []
    for key in MACHINE_KEYS:
        if key not in doc:
            reasons.append(f"recorded without {key}")
        elif doc[key] != now[key]:
            reasons.append(f"{key} changed ({doc[key]} -> {now[key]})")
    return reasons


def _id(doc: dict[str, Any]) -> str:
    keys = ("irq_extra_ns", "timer_extra_ns", "measured_at", *MACHINE_KEYS)
    return hashlib.sha256(json.dumps({k: doc.get(k) for k in keys}, sort_keys=True).encode()).hexdigest()[:12]


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


def from_environment() -> Calibration | None:
    env_irq, env_timer = os.environ.get(ENV_IRQ), os.environ.get(ENV_TIMER)
    if not env_irq:
        return None
    irq = int(env_irq)
    timer = int(env_timer) if env_timer else irq
    return Calibration(irq, timer, f"env-{irq}-{timer}", "env")


def current(build_dir: Path | None = None, now: dict[str, Any] | None = None) -> Calibration:
    """The calibration to use now; raises CalibrationStale (never falls back to 0)."""
    env = from_environment()
    if env is not None:
        return env
    path = path_for(build_dir)
    try:
        doc = json.loads(path.read_text())
        irq = int(doc["irq_extra_ns"])
        timer = int(doc.get("timer_extra_ns", irq))
    except FileNotFoundError:
        raise CalibrationStale(path, ["not measured yet"]) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CalibrationStale(path, [f"unreadable ({e})"]) from None
    reasons = stale_reasons(doc, now or machine())
    if reasons:
        raise CalibrationStale(path, reasons)
    if os.environ.get(ENV_TIMER):  # only the timer value overridden: still the file's id, plus the override
        timer = int(os.environ[ENV_TIMER])
        return Calibration(irq, timer, f"{_id(doc)}+env-timer-{timer}", "measured+env", _iso(doc.get("measured_at")))
    return Calibration(irq, timer, _id(doc), "measured", _iso(doc.get("measured_at")))


def save(values: dict[str, Any], build_dir: Path | None = None, now: dict[str, Any] | None = None) -> Path:
    """Store a measurement (``irq_extra_ns``, ``timer_extra_ns``, and whatever detail it has) together
    with what it is valid for."""
    from nfvlab.results import atomic_write

    doc = {**values, **(now or machine()), "measured_at": values.get("measured_at", time.time())}
    out = path_for(build_dir)
    atomic_write(out, json.dumps(doc, indent=1))
    return out


def ensure_current(measure: Callable[[], dict[str, Any]] | None = None, build_dir: Path | None = None,
                   log: Callable[[str], None] | None = None) -> Calibration:
    """The current calibration, measuring (and saving) it first when it is missing or stale.

    ``measure`` returns the values to save (default: nfvlab.iron.calibrate.measure on the local
    testbed under its lock; tests inject their own)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    now = machine()
    try:
        return current(build_dir, now)
    except CalibrationStale as e:
        log(f"{e}; measuring it now")
    if measure is None:
        from .calibrate import measure as measure_default

        measure = measure_default
    save(measure(), build_dir, now)
    return current(build_dir, now)
