"""Compile Iron's BPF programs (libbpf CO-RE, clang -target bpf), cached by source hash.

``vmlinux.h`` is generated from the running kernel's BTF with bpftool; the object file name carries
a hash of the BPF source, the vmlinux.h and the compiler flags, so a rebuild happens only when one of
them changes. Default build dir: ``<repo>/build/iron`` in a checkout, else ``~/.cache/nfvlab/iron``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parent / "bpf"
SOURCE = BPF_DIR / "iron.bpf.c"
CFLAGS = ["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wall", "-Wno-unused-function"]
VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")


class BuildError(RuntimeError):
    pass


def default_build_dir() -> Path:
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").exists() and os.access(repo, os.W_OK):
        return repo / "build" / "iron"
    return Path.home() / ".cache" / "nfvlab" / "iron"


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")
    if not path:
        raise BuildError(f"{name} not found; run scripts/bootstrap.sh (deps/apt.txt installs clang, bpftool)")
    return path


def vmlinux_h(build_dir: Path) -> Path:
    """vmlinux.h for the running kernel, regenerated when the kernel's BTF changes."""
    if not VMLINUX_BTF.exists():
        raise BuildError("no /sys/kernel/btf/vmlinux: the kernel lacks CONFIG_DEBUG_INFO_BTF")
    btf_hash = hashlib.sha256(VMLINUX_BTF.read_bytes()).hexdigest()[:16]
    out = build_dir / f"vmlinux-{btf_hash}.h"
    if not out.exists():
        build_dir.mkdir(parents=True, exist_ok=True)
        res = subprocess.run([_tool("bpftool"), "btf", "dump", "file", str(VMLINUX_BTF), "format", "c"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise BuildError(f"bpftool btf dump failed: {res.stderr.strip()}")
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(res.stdout)
        tmp.replace(out)
    return out


def build(build_dir: Path | None = None) -> Path:
    """Return the path of the compiled ``iron.bpf.o``, compiling it if the cache has none."""
    build_dir = Path(build_dir) if build_dir else default_build_dir()
    vh = vmlinux_h(build_dir)
    h = hashlib.sha256()
    h.update(SOURCE.read_bytes())
    h.update(vh.name.encode())
    h.update(" ".join(CFLAGS).encode())
    obj = build_dir / f"iron-{h.hexdigest()[:16]}.bpf.o"
    if obj.exists():
        return obj
    inc = build_dir / "include"
    inc.mkdir(parents=True, exist_ok=True)
    link = inc / "vmlinux.h"
    tmp_link = inc / f".vmlinux.h.{os.getpid()}"
    shutil.copyfile(vh, tmp_link)
    tmp_link.replace(link)
    tmp = obj.with_suffix(f".tmp{os.getpid()}")
    cmd = [_tool("clang"), *CFLAGS, "-I", str(inc), "-c", str(SOURCE), "-o", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"clang failed ({' '.join(cmd)}):\n{res.stderr}")
    tmp.replace(obj)
    return obj
