"""qemu-system-x86_64 command lines: KVM when /dev/kvm opens, TCG otherwise (or when asked)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class QemuError(Exception):
    pass


def kvm_unusable_reason() -> str | None:
    """Why KVM cannot boot an ordinary guest kernel here, or None if it can."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"/dev/kvm does not open ({e.strerror})"
    os.close(fd)
    modules = Path("/sys/module")
    if (modules / "kvm_pvm").is_dir() and not any((modules / m).is_dir() for m in ("kvm_intel", "kvm_amd")):
        # PVM (page-table based KVM for nested clouds) runs only guests built as PVM guests; an ordinary
        # kernel stops after the real-mode setup (measured: "Probing EDD", then nothing in 150 s).
        return "/dev/kvm is kvm_pvm here, which boots only PVM-enabled guest kernels"
    return None


def kvm_usable() -> bool:
    """True if /dev/kvm opens and is hardware KVM (CI machines often lack it; PVM hosts cannot use it)."""
    return kvm_unusable_reason() is None


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
