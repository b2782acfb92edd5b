"""Boot check in qemu: runs only when a built image is cached (CI never builds a kernel)."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import pytest

from nfvlab.kernel.boot import boot_check
from nfvlab.kernel.build import BUILD_ROOT, cached_result
from nfvlab.kernel.initramfs import BUSYBOX, build_initramfs
from nfvlab.kernel.qemu import kvm_unusable_reason
from nfvlab.kernel.recipe import RecipeError, load_recipe


def _cached(name: str):
    try:
        return cached_result(load_recipe(name))
    except RecipeError:
        return None


@pytest.mark.skipif(not BUSYBOX.is_file() or shutil.which("cpio") is None, reason="busybox-static/cpio missing")
def test_initramfs_has_init_and_busybox() -> None:
    path = build_initramfs(BUILD_ROOT)
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=gzip.decompress(path.read_bytes()),
                             capture_output=True, check=True).stdout.decode().split()
    assert {"init", "bin/busybox", "bin/sh", "dev", "proc", "sys"} <= set(listing)
    assert build_initramfs(BUILD_ROOT) == path  # cached


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vanilla", "iron"])
@pytest.mark.parametrize("accel", ["kvm", "tcg"])
def test_boot_check_passes(name: str, accel: str) -> None:
    built = _cached(name)
    if built is None:
        pytest.skip(f"no cached build of kernels/{name} (run `make kernel-{name}`; tests never build kernels)")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 missing (deps/apt.txt: qemu-system-x86)")
    if accel == "kvm" and (reason := kvm_unusable_reason()):
        pytest.skip(reason)
    check = boot_check(built, kvm=accel == "kvm")
    assert check.accel == accel
    assert check.passed, check.summary()
    assert check.lines["cpus"] == "2"
    if name == "iron":
        assert check.lines["iron"].startswith("1 enabled 1"), check.lines
    else:
        assert check.lines["iron"] == "absent"


@pytest.mark.slow
def test_boot_check_of_a_downloaded_debian_kernel_under_tcg() -> None:
    """The checker itself, on Debian's own 6.1 kernel when it was downloaded (tests never download it)."""
    from nfvlab.kernel.boot import boot_image, image_release
    from nfvlab.kernel.vm.stock import STOCK_ROOT

    images = sorted((STOCK_ROOT / "x" / "boot").glob("vmlinuz-*"))
    if not images or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no Debian kernel in build/kernel/stock (nfvlab kernel vm-exec debian-stock fetches it) or no qemu")
    release = image_release(images[-1])
    assert release == images[-1].name.removeprefix("vmlinuz-")
    check = boot_image(str(images[-1]), release, "debian-stock", kvm=False)
    assert check.accel == "tcg" and check.passed, check.summary()
    assert check.lines["iron"] == "absent"
