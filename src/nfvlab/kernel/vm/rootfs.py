"""A Debian root filesystem image for the VM testbed, built by mmdebstrap from this machine's apt mirror.

The image holds the testbed's system packages, an ssh server that accepts nfvlab's own key, DHCP on
the virtio NIC (qemu's user-mode network), and a copy of this checkout (with its .venv) at the same
path as on the host, so the guest runs exactly the code under test (same Debian, same Python).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..recipe import REPO

VM_ROOT = REPO / "build" / "kernel" / "vm"
SUITE = "bookworm"
# What a spec needs in the guest (the run-time part of deps/apt.txt). gcc/make/libc6-dev: the traffic
# generator (nfvflood) is compiled at run time; clang/llvm/libbpf-dev: eBPF Iron's object is too.
PACKAGES = ["systemd-sysv", "udev", "openssh-server", "python3", "python3-venv", "iproute2", "iputils-ping",
            "procps", "ethtool", "kmod", "sysbench", "iperf3", "sockperf", "netsniff-ng", "ca-certificates",
            "netbase", "rsync", "libbpf1", "bpftool", "gcc", "make", "libc6-dev", "clang", "llvm", "libbpf-dev"]
IMAGE_MB = 6144
# Everything copied into the image that is not the repo's working tree.
EXCLUDE = ["/build/", "/results/", ".git/", "__pycache__/", ".pytest_cache/", ".ruff_cache/"]


class RootfsError(Exception):
    pass


def apt_mirrors() -> list[str]:
    """deb lines for the guest: the mirror(s) this machine's own apt uses."""
    uris = set()
    for f in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("debian.sources")]:
        if f.is_file():
            uris |= set(re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", f.read_text(), re.M))
    main = next((u for u in sorted(uris) if "security" not in u), "http://deb.debian.org/debian")
    sec = next((u for u in sorted(uris) if "security" in u), None)
    lines = [f"deb {main} {SUITE} main", f"deb {main} {SUITE}-updates main"]
    if sec:
        lines.append(f"deb {sec} {SUITE}-security main")
    return lines


def ssh_key() -> Path:
    """nfvlab's own key pair for the guest (build/kernel/vm/id_ed25519)."""
    key = VM_ROOT / "id_ed25519"
    if not key.is_file():
        VM_ROOT.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nfvlab-vm", "-f", str(key)], check=True)
    return key


def image_key() -> str:
    h = hashlib.sha256(" ".join(PACKAGES + apt_mirrors() + [str(IMAGE_MB)]).encode())
    h.update(ssh_key().with_suffix(".pub").read_bytes())
    return h.hexdigest()[:12]


def base_image(log=print) -> Path:
    """The Debian image without the checkout, cached by packages + mirror + key."""
    target = VM_ROOT / f"debian-{SUITE}-{image_key()}.ext4"
    if target.is_file():
        return target
    for tool in ("mmdebstrap", "mkfs.ext4"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            raise RootfsError(f"{tool} missing (deps/apt.txt: mmdebstrap, e2fsprogs)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nfvlab-kv-rootfs-", dir=VM_ROOT) as tmp:
        root = Path(tmp) / "root"
        log(f"vm: mmdebstrap {SUITE} ({len(PACKAGES)} packages) from {apt_mirrors()[0].split()[1]}")
        subprocess.run(["nice", "-n", "10", "mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                        SUITE, str(root), *apt_mirrors()], check=True, stdout=subprocess.DEVNULL)
        _configure(root)
        part = target.with_suffix(".part")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "nfvlab-root", "-d", str(root), str(part), f"{IMAGE_MB}M"],
                       check=True)
        part.rename(target)
    log(f"vm: base image {target.name} in {time.monotonic() - started:.0f} s")
    return target


def _configure(root: Path) -> None:
    (root / "etc" / "hostname").write_text("nfvlab-vm\n")
    (root / "etc" / "fstab").write_text("LABEL=nfvlab-root / ext4 rw,relatime 0 1\n")
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(ssh_key().with_suffix(".pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    net = root / "etc" / "systemd" / "network"
    net.mkdir(parents=True, exist_ok=True)
    (net / "10-slirp.network").write_text("[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n")
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "systemd-networkd.service"
    if not link.exists():
        link.symlink_to("/lib/systemd/system/systemd-networkd.service")
    # a serial console login is not needed; keep the boot short
    (root / "etc" / "ssh" / "sshd_config.d").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "ssh" / "sshd_config.d" / "nfvlab.conf").write_text(
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")


def sync_checkout(image: Path, log=print, modules: Path | None = None) -> None:
    """Copy this checkout (with .venv) into the image at the same path (the image is mounted loop, offline).

    ``modules``: a kernel's lib/modules/<release> to install too (a stock kernel's drivers are modules).
    """
    with tempfile.TemporaryDirectory(prefix="nfvlab-kv-mnt-") as mnt:
        subprocess.run(["mount", "-o", "loop", str(image), mnt], check=True)
        try:
            dest = Path(mnt) / str(REPO).lstrip("/")
            dest.mkdir(parents=True, exist_ok=True)
            args = ["rsync", "-a", "--delete", *[f"--exclude={e}" for e in EXCLUDE], f"{REPO}/", f"{dest}/"]
            subprocess.run(args, check=True)
            _repoint_venv(dest / ".venv")
            if modules is not None:
                mdest = Path(mnt) / "lib" / "modules" / modules.name
                mdest.mkdir(parents=True, exist_ok=True)
                subprocess.run(["rsync", "-a", f"{modules}/", f"{mdest}/"], check=True)
        finally:
            subprocess.run(["umount", mnt], check=True)
    log(f"vm: checkout {REPO} synced into {image.name}")


def _repoint_venv(venv: Path) -> None:
    """The host's venv may sit on another interpreter (pyenv); in the guest it uses Debian's python3.

    Same Debian release, same Python minor version (3.11), so the installed wheels fit.
    """
    if not venv.is_dir():
        return
    py = venv / "bin" / "python3"
    if py.is_symlink():
        py.unlink()
        py.symlink_to("/usr/bin/python3")
    cfg = venv / "pyvenv.cfg"
    if cfg.is_file():
        lines = [("home = /usr/bin" if ln.startswith("home =") else ln) for ln in cfg.read_text().splitlines()
                 if not ln.startswith(("executable =", "command ="))]
        cfg.write_text("\n".join(lines) + "\n")
