"""``nfvlab kernel boot``: boot a built kernel in qemu with the busybox initramfs, check ``uname -r``.

The check passes when the serial console shows the release the build recorded and the guest
powers off on its own before the timeout.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field

from .build import BUILD_ROOT, BuildResult
from .initramfs import MARK, InitramfsError, build_initramfs
from .qemu import QemuError, accel_args, direct_boot_args, qemu_binary

DEFAULT_TIMEOUT_S = {"kvm": 60.0, "tcg": 300.0}


class BootError(Exception):
    pass


@dataclass
class BootCheck:
    recipe: str
    expected: str
    accel: str
    seconds: float
    release: str | None = None
    powered_off: bool = False
    timed_out: bool = False
    lines: dict[str, str] = field(default_factory=dict)  # MARK lines: key -> rest
    console_tail: str = ""

    @property
    def passed(self) -> bool:
        return self.release == self.expected and self.powered_off and not self.timed_out

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        out = [f"boot check {verdict}: {self.recipe} under {self.accel.upper()} in {self.seconds:.1f} s",
               f"  expected release: {self.expected}", f"  console release:  {self.release or '(none)'}"]
        out += [f"  {k}: {v}" for k, v in self.lines.items() if k != "release"]
        if self.timed_out:
            out.append("  timed out before the guest powered off")
        if not self.passed:
            out.append("  console (last lines):\n    " + "\n    ".join(self.console_tail.splitlines()[-15:]))
        return "\n".join(out)


def boot_check(built: BuildResult, *, kvm: bool = True, timeout_s: float | None = None) -> BootCheck:
    try:
        initrd = build_initramfs(BUILD_ROOT)
        qemu = qemu_binary()
    except (InitramfsError, QemuError) as e:
        raise BootError(str(e)) from e
    accel, accel_flags = accel_args(kvm)
    timeout = timeout_s or DEFAULT_TIMEOUT_S[accel]
    args = [qemu, *accel_flags, *direct_boot_args(built.bzimage, "console=ttyS0 panic=-1 loglevel=4",
                                                   initrd=str(initrd))]
    started = time.monotonic()
    timed_out = False
    try:
        res = subprocess.run(args, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        console = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:  # subprocess.run kills qemu (its own child) on timeout
        timed_out = True
        console = (e.stdout or b"").decode(errors="replace")
    check = BootCheck(recipe=built.recipe, expected=built.release, accel=accel,
                      seconds=round(time.monotonic() - started, 1), timed_out=timed_out,
                      console_tail=console[-4000:])
    for m in re.finditer(rf"^{MARK} (\S+) ?(.*?)\r?$", console, re.M):
        check.lines[m.group(1)] = m.group(2)
    check.release = check.lines.get("release")
    check.powered_off = "done" in check.lines and not timed_out
    return check
