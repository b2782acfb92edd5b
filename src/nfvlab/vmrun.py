"""``testbed: vm``: the runner hands such a spec to nfvlab.kernel.vm.run, which boots a Debian VM on
the spec's kernel recipe and runs the same ``nfvlab run`` (with ``--testbed local``) inside it.

The guest writes the rows and provenance.json; they come back to results/<spec>@vm-<recipe>/ with
guest.json. The summary here is read from the guest's provenance (what the guest says it ran).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nfvlab.spec import Spec, VmTestbed


class VmRunError(RuntimeError):
    pass


def resolve_kernel(spec: Spec, spec_path: Path) -> Any:
    """The cached build (or Debian's stock kernel) the spec's ``vm.recipe`` names; nothing is built here."""
    from nfvlab.kernel.build import cached_result
    from nfvlab.kernel.recipe import load_recipe

    name = (spec.vm or VmTestbed()).recipe  # --testbed vm on a local spec: the default recipe
    if name == "debian-stock":
        from nfvlab.kernel.vm.stock import stock_kernel

        return stock_kernel()
    built = cached_result(load_recipe(name))
    if built is None:
        raise VmRunError(f"{spec_path}: vm.recipe: kernel {name!r} is not built; run `make kernel-{name}` first")
    return built


def guest_summary(results: Path) -> dict[str, Any]:
    """The guest's latest run record (done/skipped/status), or {} when it wrote none."""
    try:
        return json.loads((results / "provenance.json").read_text()).get("latest", {})
    except (OSError, ValueError):
        return {}


def run_in_vm(spec: Spec, spec_path: Path, scale: str | None, repetitions: int | None,
              log: Callable[[str], Any] = print) -> tuple[Any, dict[str, Any]]:
    from nfvlab.kernel.vm.run import run_spec

    built = resolve_kernel(spec, spec_path)
    vm_run = run_spec(built, str(spec_path), scale=scale or "quick", repetitions=repetitions,
                      kvm=(spec.vm or VmTestbed()).kvm,
                      log=log)
    log(vm_run.summary())
    latest = guest_summary(vm_run.results)
    if vm_run.exit_status != 0:
        raise VmRunError(f"{spec.name}: the guest's nfvlab run exited {vm_run.exit_status}"
                         f" (status {latest.get('status', 'unknown')}); results in {vm_run.results}")
    return vm_run, latest
