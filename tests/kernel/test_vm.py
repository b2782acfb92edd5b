"""The VM testbed: runs only when a kernel build and the Debian image are cached (CI builds neither)."""

from __future__ import annotations

import json

import pytest

from nfvlab.kernel.build import cached_result
from nfvlab.kernel.recipe import RecipeError, load_recipe
from nfvlab.kernel.vm.rootfs import VM_ROOT, image_key
from nfvlab.kernel.vm.stock import STOCK_ROOT


def _cached(name: str):
    try:
        return cached_result(load_recipe(name))
    except RecipeError:
        return None


def _image_cached() -> bool:
    return any(VM_ROOT.glob(f"debian-*-{image_key()}.ext4")) if (VM_ROOT / "id_ed25519").is_file() else False


@pytest.mark.slow
def test_vm_runs_the_checkout_on_the_recipe_kernel() -> None:
    built = _cached("iron") or _cached("vanilla")
    if built is None and any(STOCK_ROOT.glob("linux-image-*-cloud-amd64_*.deb")):
        from nfvlab.kernel.vm.stock import stock_kernel

        built = stock_kernel()  # the downloaded Debian kernel (tests never download or build one)
    if built is None:
        pytest.skip("no cached kernel build (make kernel-iron) nor a downloaded Debian kernel; tests never build")
    if not _image_cached():
        pytest.skip("no cached Debian image in build/kernel/vm (built by the first `nfvlab kernel vm-run`)")
    from nfvlab.kernel.vm.run import run_command

    rc, out, err, vm = run_command(built, ".venv/bin/python -c 'import json, os; "
                                   "from nfvlab.kernel.provenance import kernel_provenance as k; "
                                   "print(json.dumps([k(), os.cpu_count()]))'", timeout=600)
    assert rc == 0, err
    prov, cpus = json.loads(out)
    assert prov["release"] == built.release
    if hasattr(built, "recipe_hash"):
        assert prov["recipe"] == built.recipe and prov["recipe_hash8"] == built.recipe_hash[:8]
    else:
        assert prov["recipe"] is None
    assert cpus == 2 and len(vm.pinned) == 2
