"""``nfvlab kernel boot``: boot a built kernel in qemu with the busybox initramfs, check ``uname -r``.

The check passes when the serial console shows the release the build recorded and the guest
powers off on its own before the timeout.
"""

from __future__ import annotations

import re
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

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


def image_release(bzimage: str | Path) -> str | None:
    """The release a bzImage carries (x86 boot protocol: setup header 'HdrS', kernel_version at 0x20E)."""
    data = Path(bzimage).read_bytes()[:0x10000]
    if data[0x202:0x206] != b"HdrS":
        return None
    off = struct.unpack_from("<H", data, 0x20E)[0] + 0x200
    text = data[off:off + 256].split(b"\0", 1)[0].decode(errors="replace")
    return text.split(" ", 1)[0] or None


def boot_check(built: BuildResult, *, kvm: bool = True, timeout_s: float | None = None) -> BootCheck:
    """Boot a recipe build; the expected release is the one its build recorded."""
    return boot_image(built.bzimage, built.release, built.recipe, kvm=kvm, timeout_s=timeout_s)


def boot_image(bzimage: str, expected: str, name: str, *, kvm: bool = True,
               timeout_s: float | None = None) -> BootCheck:
    try:
        initrd = build_initramfs(BUILD_ROOT)
        qemu = qemu_binary()
    except (InitramfsError, QemuError) as e:
        raise BootError(str(e)) from e
    accel, accel_flags = accel_args(kvm)
    timeout = timeout_s or DEFAULT_TIMEOUT_S[accel]
    args = ["nice", "-n", "10", qemu, *accel_flags, *direct_boot_args(bzimage, "console=ttyS0 panic=-1 loglevel=4",
                                                   initrd=str(initrd))]
    started = time.monotonic()
    timed_out = False
    try:
        res = subprocess.run(args, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        console = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:  # subprocess.run kills qemu (its own child) on timeout
        timed_out = True
        console = (e.stdout or b"").decode(errors="replace")
    check = BootCheck(recipe=name, expected=expected, accel=accel,
                      seconds=round(time.monotonic() - started, 1), timed_out=timed_out,
                      console_tail=console[-4000:])
    for m in re.finditer(rf"^{MARK} (\S+) ?(.*?)\r?$", console, re.M):
        check.lines[m.group(1)] = m.group(2)
    check.release = check.lines.get("release")
    check.powered_off = "done" in check.lines and not timed_out
    return check
