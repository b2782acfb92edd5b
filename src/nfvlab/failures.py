"""Failures are errors, not rows: what makes a measured repetition invalid, and how it is reported.

A driver (or the runner) raises :class:`PointFailed` when a repetition cannot stand as a result: the
Iron controller thread died or stopped, a flood moved no traffic or far less than asked, a workload
could not join its cgroup, the victim ran outside its container, or a metric the spec lists is
missing. The runner then writes **no row** for it, prints the reason, records it (the run's
provenance entry and ``results/<spec>/failures.json``), goes on with the other points (on a fresh
testbed setup) and exits non-zero at the end. The next run measures the failed repetition again.
"""

from __future__ import annotations

import math
from typing import Any

# A flood is invalid when it delivers less than this share of what was asked. A paced flood is asked
# for its rate; an unpaced one ("inf", as fast as the sender can) for at least FLOOR_MBPS, the rate
# below which no experiment of the paper is "at maximum rate" (a broken path moves ~0).
MIN_SHARE_OF_REQUESTED = 0.10
FLOOR_MBPS = 10.0


class PointFailed(RuntimeError):
    """This repetition produced no valid result; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")


def check_flood(offered_mbps: float, requested_mbps: float, what: str = "flood") -> None:
    """Raise PointFailed when a flood moved no traffic or far less than asked.

    ``offered_mbps`` is what the senders put on the wire over the window; ``requested_mbps`` the
    configured rate (inf = as fast as possible: then at least FLOOR_MBPS)."""
    want = FLOOR_MBPS if math.isinf(requested_mbps) else requested_mbps * MIN_SHARE_OF_REQUESTED
    if not offered_mbps or math.isnan(offered_mbps) or offered_mbps < want:
        asked = "as fast as possible" if math.isinf(requested_mbps) else f"{requested_mbps:g} Mbit/s"
        raise PointFailed("flood_too_small", f"{what} moved {offered_mbps or 0:.3g} Mbit/s, asked {asked} "
                                             f"(at least {want:g} Mbit/s needed)")


def missing_metrics(metrics: dict[str, Any], listed: list[str]) -> list[str]:
    """The spec's metrics the driver did not report (absent or None; NaN means 'not applicable')."""
    return [m for m in listed if metrics.get(m) is None]
