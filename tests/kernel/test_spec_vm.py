"""`testbed: vm` in a spec: validated before anything is set up, dispatched to nfvlab.kernel.vm.run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nfvlab import runner
from nfvlab.kernel import build as kbuild
from nfvlab.kernel.recipe import REPO, load_recipe
from nfvlab.kernel.vm import run as vmrun_mod
from nfvlab.kernel.vm.run import VmRun, guest_run_command, guest_spec_path
from nfvlab.spec import SpecError, load_spec
from nfvlab.vmrun import guest_summary


def _spec(**overrides) -> dict:
    spec = {
        "name": "tiny-udp-receiver",
        "description": "one UDP receiver beside the victim",
        "paper": {"figures": ["2.4"]},
        "kind": "iron-interference",
        "params": {
            "topology": {"containers_per_core": 2, "interferer": "udp_receiver", "receivers": 1},
            "workload": {"victim_events": 1500, "flows": 2, "warmup_s": 0.3},
        },
        "repetitions": 1,
        "metrics": ["penalty_factor", "achieved_mbps"],
    }
    spec.update(overrides)
    return spec


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _problems(tmp_path: Path, data: dict) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert str(path) in str(e.value)
    return str(e.value)


def test_vm_testbed_loads_with_its_recipe(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, _spec(testbed="vm", vm={"recipe": "vanilla", "kvm": False})))
    assert spec.testbed == "vm" and spec.vm is not None
    assert (spec.vm.recipe, spec.vm.kvm) == ("vanilla", False)


def test_vm_testbed_defaults_to_the_iron_recipe(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, _spec(testbed="vm")))
    assert spec.vm is not None and (spec.vm.recipe, spec.vm.kvm) == ("iron", True)
    assert load_spec(_write(tmp_path, _spec())).vm is None  # local specs carry no vm section


def test_unknown_recipe_names_the_field(tmp_path: Path) -> None:
    msg = _problems(tmp_path, _spec(testbed="vm", vm={"recipe": "no-such-kernel"}))
    assert "vm.recipe" in msg and "no-such-kernel" in msg and "cannot read" in msg


def test_vm_section_needs_testbed_vm(tmp_path: Path) -> None:
    msg = _problems(tmp_path, _spec(vm={"recipe": "iron"}))
    assert "vm:" in msg and "testbed: vm" in msg


def test_unknown_testbed_and_vm_field(tmp_path: Path) -> None:
    msg = _problems(tmp_path, _spec(testbed="cloud"))
    assert "testbed" in msg and "'local'" in msg and "'vm'" in msg
    msg = _problems(tmp_path, _spec(testbed="vm", vm={"recipe": "iron", "cpus": 4}))
    assert "vm.cpus" in msg and "Extra inputs are not permitted" in msg


def test_unbuilt_kernel_fails_before_anything_is_created(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(kbuild, "BUILD_ROOT", tmp_path / "kernel")  # an empty kernel cache
    path = _write(tmp_path, _spec(testbed="vm", vm={"recipe": "vanilla"}))
    results = tmp_path / "results"
    with pytest.raises(runner.RunError) as e:
        runner.run(path, results_root=results, build_dir=tmp_path / "build")
    assert str(path) in str(e.value) and "vm.recipe" in str(e.value) and "make kernel-vanilla" in str(e.value)
    assert not results.exists() and not (tmp_path / "build").exists()


def _cache_a_build(root: Path, recipe_name: str) -> None:
    recipe = load_recipe(recipe_name)
    d = root / recipe.hash
    d.mkdir(parents=True)
    (d / "bzImage").write_bytes(b"\0")
    (d / "result.json").write_text(json.dumps({
        "recipe": recipe.name, "recipe_hash": recipe.hash, "release": f"6.1.192-nfvlab-{recipe.name}-{recipe.hash[:8]}",
        "bzimage": str(d / "bzImage"), "debs": [], "seconds": 1.0, "finished": "now", "jobs": 2,
        "seeded_from": None}))


def test_runner_dispatches_to_the_vm_with_the_specs_kernel(tmp_path: Path, monkeypatch) -> None:
    # Booting the VM takes minutes (test_vm.py does it when an image is cached); here the boundary is
    # run_spec: which kernel, which spec, which accel the runner hands it, and what it makes of the result.
    monkeypatch.setattr(kbuild, "BUILD_ROOT", tmp_path / "kernel")
    _cache_a_build(tmp_path / "kernel", "vanilla")
    guest_results = tmp_path / "guest"
    guest_results.mkdir()
    (guest_results / "provenance.json").write_text(json.dumps({"latest": {"done": 2, "skipped": 0,
                                                                          "status": "complete"}}))
    seen: dict = {}

    def run_spec(built, spec, *, scale, repetitions, kvm, log):
        seen.update(release=built.release, spec=spec, scale=scale, kvm=kvm)
        return VmRun(spec="tiny-udp-receiver", recipe=built.recipe, accel="tcg", pinned={0: 0, 1: 1}, boot_s=1,
                     run_s=1, exit_status=0, results=guest_results, guest={"release": built.release})

    monkeypatch.setattr(vmrun_mod, "run_spec", run_spec)
    path = _write(tmp_path, _spec(testbed="vm", vm={"recipe": "vanilla", "kvm": False}, repetitions=2))
    summary = runner.run(path, results_root=tmp_path / "results", build_dir=tmp_path / "build")
    assert seen["release"].startswith("6.1.192-nfvlab-vanilla-") and seen["spec"] == str(path)
    assert seen["kvm"] is False
    assert (summary.spec, summary.total, summary.done) == ("tiny-udp-receiver", 2, 2)

    def failing(built, spec, **kw):
        return VmRun(spec="x", recipe="vanilla", accel="tcg", pinned={}, boot_s=1, run_s=1, exit_status=1,
                     results=tmp_path / "none", guest={})

    monkeypatch.setattr(vmrun_mod, "run_spec", failing)
    with pytest.raises(runner.RunError, match="exited 1"):
        runner.run(path, results_root=tmp_path / "results", build_dir=tmp_path / "build")


def test_guest_runs_the_checkouts_spec_on_its_local_testbed(tmp_path: Path) -> None:
    shipped = sorted((REPO / "experiments").glob("*.yaml"))[0]
    assert guest_spec_path(str(shipped)) == f"experiments/{shipped.name}"
    assert guest_spec_path("iron-cpu-cap") == "experiments/iron-cpu-cap.yaml"
    outside = _write(tmp_path, _spec())
    with pytest.raises(ValueError, match="inside this checkout"):
        guest_spec_path(str(outside))
    cmd = guest_run_command("experiments/a b.yaml", "quick", 2)
    assert cmd == ".venv/bin/nfvlab run 'experiments/a b.yaml' --scale quick --repetitions 2 --testbed local"


def test_guest_summary_reads_the_guests_latest_run(tmp_path: Path) -> None:
    assert guest_summary(tmp_path) == {}
    (tmp_path / "provenance.json").write_text(json.dumps({"latest": {"done": 3, "status": "complete"}}))
    assert guest_summary(tmp_path)["done"] == 3


def test_vm_spec_loads_where_the_base_package_is_missing(tmp_path: Path, monkeypatch) -> None:
    # The guest loads the same spec (with --testbed local) and has no linux-source-6.1 installed:
    # that must not make the spec invalid there (it did, in the first vm-run on the iron kernel).
    from nfvlab.kernel import recipe as recipe_mod

    monkeypatch.setattr(recipe_mod, "debian_package_version", lambda name: None)
    spec = load_spec(_write(tmp_path, _spec(testbed="vm", vm={"recipe": "iron"})))
    assert spec.vm is not None and spec.vm.recipe == "iron"
    with pytest.raises(recipe_mod.RecipeError, match="is not installed"):
        recipe_mod.load_recipe("iron")  # a build still needs it
