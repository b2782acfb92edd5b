"""qemu-system-x86_64 command lines: KVM when /dev/kvm opens, TCG otherwise (or when asked)."""

from __future__ import annotations

import os
import shutil


class QemuError(Exception):
    pass


def kvm_usable() -> bool:
    """True if /dev/kvm can be opened read-write (CI machines often cannot)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def qemu_binary() -> str:
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise QemuError("qemu-system-x86_64 missing: apt-get install qemu-system-x86")
    return path


def accel_args(kvm: bool) -> tuple[str, list[str]]:
    """('kvm'|'tcg', args). kvm=True asks for KVM and falls back to TCG if it cannot be used."""
    if kvm and kvm_usable():
        return "kvm", ["-enable-kvm", "-cpu", "host"]
    return "tcg", ["-accel", "tcg", "-cpu", "max"]


def direct_boot_args(bzimage: str, append: str, *, initrd: str | None = None, cpus: int = 2,
                     memory_mb: int = 512) -> list[str]:
    """A headless VM booting bzimage directly, serial console on stdio, exits on guest reset/poweroff."""
    args = ["-M", "pc", "-m", str(memory_mb), "-smp", str(cpus), "-kernel", bzimage, "-append", append,
            "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nodefaults"]
    if initrd:
        args += ["-initrd", initrd]
    return args
