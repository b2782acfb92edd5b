"""Run a spec inside a VM on a recipe's kernel; results come back with the guest's provenance.

    nfvlab kernel vm-run RECIPE SPEC [--scale quick] [--repetitions N] [--no-kvm]

The guest runs the same checkout (synced into a working copy of the Debian image) with the same
``nfvlab run``; its results/<spec>/ lands in results/<spec>@vm-<recipe>/ here, next to
``guest.json`` (the guest kernel's release and recipe hash, from ``kernel_provenance`` in the guest).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..build import BuildResult
from ..recipe import REPO
from .machine import VM
from .rootfs import VM_ROOT, base_image, sync_checkout
from .stock import StockKernel


@dataclass
class VmRun:
    spec: str
    recipe: str
    accel: str
    pinned: dict[int, int]
    boot_s: float
    run_s: float
    exit_status: int
    results: Path
    guest: dict

    def summary(self) -> str:
        return (f"vm-run {self.spec} on {self.guest.get('release')} ({self.accel}, vCPUs pinned {self.pinned}): "
                f"boot {self.boot_s:.0f} s, run {self.run_s:.0f} s, exit {self.exit_status}; results in {self.results}")


def working_image(log=print, modules: Path | None = None) -> Path:
    """A copy of the cached base image with this checkout (and a stock kernel's modules) synced in."""
    base = base_image(log)
    work = VM_ROOT / "work.ext4"
    # sparse copy: the image is 6 GB with ~1 GB used
    subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(base), str(work)], check=True)
    sync_checkout(work, log, modules=modules)
    return work


def guest_spec_path(spec: str) -> str:
    """The spec's path in the guest's checkout (same path as here): a file of this checkout, else
    experiments/<name>.yaml (``vm-run RECIPE NAME``)."""
    path = Path(spec)
    if path.is_file():
        try:
            return str(path.resolve().relative_to(REPO))
        except ValueError:
            raise ValueError(f"{spec}: a VM run needs a spec inside this checkout ({REPO}), which is synced "
                             "into the guest") from None
    return f"experiments/{path.stem}.yaml"


def guest_run_command(spec_in_guest: str, scale: str, repetitions: int | None) -> str:
    # --testbed local: inside the guest a spec's `testbed: vm` must not boot another VM
    reps = f" --repetitions {int(repetitions)}" if repetitions else ""
    return (f".venv/bin/nfvlab run {shlex.quote(spec_in_guest)} --scale {shlex.quote(scale)}{reps}"
            " --testbed local")


def run_spec(built: BuildResult | StockKernel, spec: str, *, scale: str = "quick", repetitions: int | None = None,
             kvm: bool = True, log=print) -> VmRun:
    spec_in_guest = guest_spec_path(spec)  # before booting: a spec the guest cannot see fails now
    image = working_image(log, built.modules if isinstance(built, StockKernel) else None)
    vm = VM(built, image, kvm=kvm)
    boot_s = vm.start()
    log(f"vm: {built.release} up under {vm.accel} in {boot_s:.0f} s, vCPUs pinned {vm.pinned}")
    try:
        assert vm.ssh is not None
        repo = shlex.quote(str(REPO))
        guest = json.loads(vm.ssh.run(
            f"cd {repo} && .venv/bin/python -c 'import json; from nfvlab.kernel.provenance import kernel_provenance;"
            f" print(json.dumps(kernel_provenance()))'").stdout)
        name = Path(spec).stem
        cmd = f"cd {repo} && {guest_run_command(spec_in_guest, scale, repetitions)}"
        started = time.monotonic()
        res = vm.ssh.run(cmd, timeout=3 * 3600, check=False)
        run_s = time.monotonic() - started
        log(res.stdout[-2000:] + res.stderr[-2000:])
        dest = REPO / "results" / f"{name}@vm-{built.recipe}"
        if vm.ssh.run(f"test -d {repo}/results/{shlex.quote(name)}", check=False).returncode == 0:
            vm.ssh.pull(f"{REPO}/results/{name}", dest)
        dest.mkdir(parents=True, exist_ok=True)
        guest |= {"recipe_hash": getattr(built, "recipe_hash", None), "accel": vm.accel, "vcpus_pinned": vm.pinned}
        (dest / "guest.json").write_text(json.dumps(guest, indent=2) + "\n")
        return VmRun(spec=name, recipe=built.recipe, accel=vm.accel, pinned=vm.pinned, boot_s=boot_s, run_s=run_s,
                     exit_status=res.returncode, results=dest, guest=guest)
    finally:
        vm.stop()


def run_command(built: BuildResult | StockKernel, command: str, *, kvm: bool = True, timeout: float = 1800,
                log=print) -> tuple[int, str, str, VM]:
    """Boot a VM on the kernel, run one shell command in the checkout as root, power off."""
    modules = built.modules if isinstance(built, StockKernel) else None
    vm = VM(built, working_image(log, modules), kvm=kvm)
    boot_s = vm.start()
    log(f"vm: {built.release} up under {vm.accel} in {boot_s:.0f} s, vCPUs pinned {vm.pinned}")
    try:
        assert vm.ssh is not None
        res = vm.ssh.run(f"cd {shlex.quote(str(REPO))} && {command}", timeout=timeout, check=False)
        return res.returncode, res.stdout, res.stderr, vm
    finally:
        vm.stop()
