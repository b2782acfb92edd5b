"""Debian's own kernel as a VM kernel (no build needed): linux-image-cloud-amd64 from the apt mirror.

Its virtio drivers are modules, so it boots with a small initramfs (busybox + the virtio modules)
that mounts /dev/vda and switch_root's into the image; the image gets the kernel's modules.
Used to check the VM testbed where no recipe build is cached (and as the stock kernel beside Iron's).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..build import BUILD_ROOT
from ..initramfs import BUSYBOX

STOCK_ROOT = BUILD_ROOT / "stock"
PACKAGE = "linux-image-cloud-amd64"
ROOT_MODULES = ["virtio_pci", "virtio_blk"]

INIT = """#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
for m in {modules}; do /bin/busybox modprobe $m; done
for i in $(/bin/busybox seq 1 50); do [ -b /dev/vda ] && break; /bin/busybox sleep 0.1; done
/bin/busybox mkdir -p /newroot
/bin/busybox mount -o rw /dev/vda /newroot || exec /bin/busybox sh
/bin/busybox umount /proc /sys
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /sbin/init
"""


@dataclass(frozen=True)
class StockKernel:
    release: str
    bzimage: Path
    modules: Path  # lib/modules/<release>
    initrd: Path
    recipe: str = "debian-stock"


def stock_kernel() -> StockKernel:
    STOCK_ROOT.mkdir(parents=True, exist_ok=True)
    debs = sorted(STOCK_ROOT.glob("linux-image-*-cloud-amd64_*.deb"))
    if not debs:
        dep = subprocess.run(["apt-cache", "depends", PACKAGE], capture_output=True, text=True, check=True).stdout
        m = re.search(r"Depends: (linux-image-\S+)", dep)
        if not m:
            raise RuntimeError(f"apt-cache depends {PACKAGE}: no linux-image dependency")
        subprocess.run(["apt-get", "download", m.group(1)], cwd=STOCK_ROOT, check=True, capture_output=True)
        debs = sorted(STOCK_ROOT.glob("linux-image-*-cloud-amd64_*.deb"))
    root = STOCK_ROOT / "x"
    if not (root / "boot").is_dir():
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True)
    image = sorted((root / "boot").glob("vmlinuz-*"))[-1]
    release = image.name.removeprefix("vmlinuz-")
    modules = root / "lib" / "modules" / release
    if not (modules / "modules.dep").is_file():
        depmod = shutil.which("depmod") or "/usr/sbin/depmod"
        subprocess.run([depmod, "-b", str(root), release], check=True)
    return StockKernel(release, image, modules, _root_initrd(release, modules))


def _root_initrd(release: str, modules: Path) -> Path:
    target = STOCK_ROOT / f"initrd-root-{release}.cpio.gz"
    if target.is_file():
        return target
    dep = dict(line.split(":", 1) for line in (modules / "modules.dep").read_text().splitlines() if ":" in line)
    by_name = {Path(k).name.split(".ko")[0].replace("-", "_"): k for k in dep}
    need: set[str] = set()

    def add(rel: str) -> None:
        if rel not in need:
            need.add(rel)
            for d in dep.get(rel, "").split():
                add(d)

    for m in ROOT_MODULES:
        add(by_name[m])
    with tempfile.TemporaryDirectory(prefix="nfvlab-kv-initrd-") as tmp:
        r = Path(tmp)
        for d in ("bin", "dev", "proc", "sys", "newroot"):
            (r / d).mkdir()
        shutil.copy2(BUSYBOX, r / "bin" / "busybox")
        mdir = r / "lib" / "modules" / release
        for rel in need:
            (mdir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(modules / rel, mdir / rel)
        (mdir / "modules.dep").write_text("".join(f"{k}:{dep[k]}\n" for k in sorted(need)))
        (r / "init").write_text(INIT.format(modules=" ".join(ROOT_MODULES)))
        os.chmod(r / "init", 0o755)
        names = "\n".join(sorted(str(p.relative_to(r)) for p in r.rglob("*"))) + "\n"
        out = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "--owner=0:0"], cwd=r, input=names.encode(),
                             capture_output=True, check=True).stdout
    target.write_bytes(gzip.compress(out))
    return target
