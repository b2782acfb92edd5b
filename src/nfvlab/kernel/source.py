"""Getting a recipe's base source: Debian's linux-source tarball or a checked kernel.org tarball."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import urllib.request
from pathlib import Path

from .recipe import DebianBase, TarballBase


class SourceError(Exception):
    pass


def base_tarball(base: DebianBase | TarballBase, downloads: Path) -> Path:
    """The tarball to unpack; a download is kept only once its sha256 matches."""
    if isinstance(base, DebianBase):
        tar = Path("/usr/src") / f"{base.debian_package}.tar.xz"
        if not tar.is_file():
            raise SourceError(f"{tar} missing: apt-get install {base.debian_package}")
        return tar
    downloads.mkdir(parents=True, exist_ok=True)
    tar = downloads / base.url.rsplit("/", 1)[-1]
    if not tar.is_file() or sha256(tar) != base.sha256:
        part = tar.with_suffix(tar.suffix + ".part")
        with urllib.request.urlopen(base.url, timeout=60) as r, part.open("wb") as f:
            shutil.copyfileobj(r, f)
        got = sha256(part)
        if got != base.sha256:
            part.unlink()
            raise SourceError(f"{base.url}: sha256 {got} does not match the recipe's base.sha256 {base.sha256}")
        part.rename(tar)
    return tar


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack(tarball: Path, into: Path) -> Path:
    """Unpack into `into` and return the single top directory (renamed to `linux`)."""
    tmp = into / "unpack.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    subprocess.run(["nice", "-n", "10", "tar", "-xf", str(tarball), "-C", str(tmp)], check=True)
    tops = list(tmp.iterdir())
    if len(tops) != 1 or not (tops[0] / "Makefile").is_file():
        raise SourceError(f"{tarball}: expected one kernel source directory, found {[t.name for t in tops]}")
    dest = into / "linux"
    tops[0].rename(dest)
    tmp.rmdir()
    return dest


def apply_patches(tree: Path, patches: list[Path], log) -> None:
    """Apply a series in order; a patch that does not apply cleanly stops the build, naming it."""
    for p in patches:
        for dry in (True, False):
            args = ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-i", str(p)]
            res = subprocess.run(args + (["--dry-run"] if dry else []), cwd=tree, capture_output=True, text=True)
            if res.returncode != 0:
                raise SourceError(f"patch {p.name} does not apply:\n{res.stdout}{res.stderr}")
        log(f"applied {p.name}")
