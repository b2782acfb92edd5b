"""A tiny busybox-static initramfs: prints the running kernel's release on the serial console and powers off.

It also reports whether the kernel has Iron's cgroup files (cpu.iron) and switches Iron on for a
scratch cgroup, so a boot of the patched kernel exercises the patch series' cgroup interface.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
MARK = "NFVLAB-BOOT"

# PID 1. /dev/console is not in the archive (no mknod without root), so the script mounts
# devtmpfs first and sends its output to the serial port itself.
INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec >/dev/ttyS0 2>&1
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "{MARK} release $(/bin/busybox uname -r)"
echo "{MARK} cpus $(/bin/busybox grep -c ^processor /proc/cpuinfo)"
if /bin/busybox mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null; then
  echo +cpu > /sys/fs/cgroup/cgroup.subtree_control
  /bin/busybox mkdir /sys/fs/cgroup/nfvlab-kv-boot
  if [ -e /sys/fs/cgroup/nfvlab-kv-boot/cpu.iron ]; then
    echo "50000 100000" > /sys/fs/cgroup/nfvlab-kv-boot/cpu.max
    echo 1 > /sys/fs/cgroup/nfvlab-kv-boot/cpu.iron
    echo "{MARK} iron $(/bin/busybox cat /sys/fs/cgroup/nfvlab-kv-boot/cpu.iron)" \\
         "$(/bin/busybox tr '\\n' ' ' < /sys/fs/cgroup/nfvlab-kv-boot/cpu.iron.stat)"
    echo 0 > /sys/fs/cgroup/nfvlab-kv-boot/cpu.iron
  else
    echo "{MARK} iron absent"
  fi
  /bin/busybox rmdir /sys/fs/cgroup/nfvlab-kv-boot
fi
echo "{MARK} done"
/bin/busybox poweroff -f
"""


class InitramfsError(Exception):
    pass


def build_initramfs(out_dir: Path) -> Path:
    """The archive, cached by the hash of busybox and the init script."""
    if not BUSYBOX.is_file():
        raise InitramfsError(f"{BUSYBOX} missing: apt-get install busybox-static")
    if shutil.which("cpio") is None:
        raise InitramfsError("cpio missing: apt-get install cpio")
    key = hashlib.sha256(BUSYBOX.read_bytes() + INIT.encode()).hexdigest()[:12]
    target = out_dir / f"initramfs-{key}.cpio.gz"
    if target.is_file():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nfvlab-kv-initramfs-") as tmp:
        root = Path(tmp)
        for d in ("bin", "dev", "proc", "sys"):
            (root / d).mkdir()
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        os.symlink("busybox", root / "bin" / "sh")
        (root / "init").write_text(INIT)
        (root / "init").chmod(0o755)
        names = "\n".join(sorted(str(p.relative_to(root)) for p in root.rglob("*"))) + "\n"
        res = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "--owner=0:0"], cwd=root,
                             input=names.encode(), capture_output=True)
        if res.returncode != 0:
            raise InitramfsError(f"cpio failed: {res.stderr.decode(errors='replace')}")
        part = target.with_suffix(".part")
        part.write_bytes(gzip.compress(res.stdout))
        part.rename(target)
    return target
