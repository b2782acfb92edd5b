"""CFS bandwidth files of one container cgroup, for cgroup v1 (cpu.cfs_*) and v2 (cpu.max)."""

from __future__ import annotations

from pathlib import Path

from nfvlab.testbeds.model import CgroupPaths

MIN_QUOTA_US = 1000  # the kernel's minimum cfs quota


class CfsFiles:
    def __init__(self, cg: CgroupPaths) -> None:
        self.version = cg.version
        self.dir = Path(cg.cpu)
        self.acct = Path(cg.cpuacct)

    # quota/period in microseconds; quota -1 = unlimited
    def read(self) -> tuple[int, int]:
        if self.version == 1:
            q = int((self.dir / "cpu.cfs_quota_us").read_text())
            p = int((self.dir / "cpu.cfs_period_us").read_text())
            return q, p
        q, p = (self.dir / "cpu.max").read_text().split()
        return (-1 if q == "max" else int(q)), int(p)

    def write_quota(self, quota_us: int) -> None:
        if self.version == 1:
            (self.dir / "cpu.cfs_quota_us").write_text(str(quota_us))
        else:
            _, p = self.read()
            (self.dir / "cpu.max").write_text(f"{'max' if quota_us < 0 else quota_us} {p}")

    def stat(self) -> dict[str, int]:
        """nr_periods, nr_throttled, throttled_ns."""
        out: dict[str, int] = {}
        for line in (self.dir / "cpu.stat").read_text().splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
        if "throttled_time" in out:
            out["throttled_ns"] = out["throttled_time"]
        elif "throttled_usec" in out:
            out["throttled_ns"] = out["throttled_usec"] * 1000
        return out

    def nr_periods(self) -> int:
        with open(self.dir / "cpu.stat", "rb") as f:
            first = f.readline()  # "nr_periods N" is the first line in v1 and after usage lines in v2
            if first.startswith(b"nr_periods"):
                return int(first.split()[1])
        return self.stat().get("nr_periods", 0)

    def usage_ns(self) -> int:
        """CPU time the group's tasks used so far, up to now (also for the task running right now)."""
        if self.version == 1:
            return int((self.acct / "cpuacct.usage").read_text())
        for line in (self.dir / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) * 1000
        return 0
