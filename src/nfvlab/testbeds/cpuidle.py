"""Keep idle CPUs polling while a testbed is up: a PM QoS request of 0 µs on /dev/cpu_dma_latency.

Why: in a VM whose cpuidle driver halts the vCPU (here Firecracker, driver haltpoll with
guest_halt_poll_ns=0), the host runs other work on the physical core while the guest idles, and the
task that runs next starts with cold caches. A sysbench victim throttled to 10 % of an otherwise idle
core took 3-5 % longer than the same job beside busy neighbours; with this request held the two were
equal (docs/iron.md). Iron's charging leaves the core idle where the baseline keeps it busy (CFS
bandwidth control is not work-conserving), so halting would bias every Iron penalty factor upward
for a reason that has nothing to do with network processing.

A latency request of 0 keeps the cpuidle governor in the POLL state, as pyperf's ``system tune`` and
tuned's latency-performance profile do. The kernel drops the request when the file is closed, also
when the process dies, so it never outlives the run; idle time still counts as idle in /proc/stat.
"""

from __future__ import annotations

import logging
import os
import struct

log = logging.getLogger(__name__)

PM_QOS_DEVICE = "/dev/cpu_dma_latency"


class PollIdle:
    """Hold the request from ``acquire()`` until ``release()`` (idempotent; also a context manager)."""

    def __init__(self, device: str = PM_QOS_DEVICE) -> None:
        self.device = device
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> bool:
        """True if the request is in force; False (logged) where the device is missing or refused."""
        if self.fd is not None:
            return True
        try:
            fd = os.open(self.device, os.O_WRONLY)
        except OSError as e:
            log.warning("cpu idle stays as configured (%s: %s): penalty factors may include wake-up costs",
                        self.device, e.strerror)
            return False
        try:
            os.write(fd, struct.pack("i", 0))
        except OSError as e:
            os.close(fd)
            log.warning("cpu idle stays as configured (%s: %s)", self.device, e.strerror)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> PollIdle:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
