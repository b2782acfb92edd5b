"""``nfvlab kernel build|boot RECIPE`` (also ``python -m nfvlab.kernel.cli``).

``build``: unpack, patch, configure and ``make bindeb-pkg`` a recipe from kernels/, cached by hash.
``boot``: boot the cached bzImage under qemu with a busybox initramfs and check ``uname -r``.
``vm-run``: run a spec inside a VM (Debian image, the recipe's kernel); results/<spec>@vm-<recipe>/.
Exit status: 0 ok, 1 build/boot failed, 2 invalid recipe or nothing to boot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .recipe import RecipeError, load_recipe

err = Console(stderr=True)


def cmd_build(args: argparse.Namespace) -> int:
    from .build import BuildError, build

    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as e:
        err.print(f"[red]{escape(str(e))}[/]", highlight=False)
        return 2
    try:
        result = build(recipe, log=lambda m: print(m, flush=True))
    except BuildError as e:
        err.print(f"[red]build failed:[/] {escape(str(e))}", highlight=False)
        return 1
    print(f"kernel {result.release}: {result.bzimage}")
    for deb in result.debs:
        print(f"  {deb}")
    return 0


def cmd_boot(args: argparse.Namespace) -> int:
    from .boot import BootError, boot_check, boot_image, image_release
    from .build import cached_result

    if args.image:  # any bzImage, e.g. a distribution kernel: the release is read from its header
        release = image_release(args.image)
        if release is None:
            err.print(f"[red]{args.image}: not an x86 bzImage[/]")
            return 2
        try:
            check = boot_image(args.image, release, args.recipe or Path(args.image).name, kvm=not args.no_kvm,
                               timeout_s=args.timeout)
        except BootError as e:
            err.print(f"[red]boot check failed to start:[/] {escape(str(e))}", highlight=False)
            return 1
        print(check.summary())
        return 0 if check.passed else 1
    if not args.recipe:
        err.print("[red]name a recipe, or --image PATH[/]")
        return 2
    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as e:
        err.print(f"[red]{escape(str(e))}[/]", highlight=False)
        return 2
    built = cached_result(recipe)
    if built is None:
        err.print(f"[red]no cached build of {recipe.name} ({recipe.hash}):[/] run `nfvlab kernel build {args.recipe}`")
        return 2
    try:
        check = boot_check(built, kvm=not args.no_kvm, timeout_s=args.timeout)
    except BootError as e:
        err.print(f"[red]boot check failed to start:[/] {escape(str(e))}", highlight=False)
        return 1
    print(check.summary())
    return 0 if check.passed else 1


def cmd_vm_run(args: argparse.Namespace) -> int:
    from .build import cached_result
    from .vm.run import run_spec
    from .vm.stock import stock_kernel

    if args.recipe == "debian-stock":
        run = run_spec(stock_kernel(), args.spec, scale=args.scale, repetitions=args.repetitions,
                       kvm=not args.no_kvm, log=lambda m: print(m, flush=True))
        print(run.summary())
        return 0 if run.exit_status == 0 else 1
    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as e:
        err.print(f"[red]{escape(str(e))}[/]", highlight=False)
        return 2
    built = cached_result(recipe)
    if built is None:
        err.print(f"[red]no cached build of {recipe.name}:[/] run `nfvlab kernel build {args.recipe}`")
        return 2
    run = run_spec(built, args.spec, scale=args.scale, repetitions=args.repetitions, kvm=not args.no_kvm,
                   log=lambda m: print(m, flush=True))
    print(run.summary())
    return 0 if run.exit_status == 0 else 1


def cmd_vm_exec(args: argparse.Namespace) -> int:
    from .build import cached_result
    from .vm.run import run_command
    from .vm.stock import stock_kernel

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.recipe == "debian-stock":  # Debian's linux-image-cloud-amd64, no build needed
        rc, out, errout, _ = run_command(stock_kernel(), " ".join(command), kvm=not args.no_kvm,
                                         log=lambda m: print(m, flush=True))
        sys.stdout.write(out)
        sys.stderr.write(errout)
        return rc
    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as e:
        err.print(f"[red]{escape(str(e))}[/]", highlight=False)
        return 2
    built = cached_result(recipe)
    if built is None:
        err.print(f"[red]no cached build of {recipe.name}:[/] run `nfvlab kernel build {args.recipe}`")
        return 2
    rc, out, errout, _ = run_command(built, " ".join(command), kvm=not args.no_kvm,
                                     log=lambda m: print(m, flush=True))
    sys.stdout.write(out)
    sys.stderr.write(errout)
    return rc


def register(subparsers: argparse._SubParsersAction) -> None:
    k = subparsers.add_parser("kernel", help="build kernel recipes (kernels/) and boot-check them in qemu")
    ksub = k.add_subparsers(dest="kernel_command", required=True)
    s = ksub.add_parser("build", help="build a recipe's .debs and bzImage (cached by recipe hash)")
    s.add_argument("recipe", help="recipe name (kernels/<name>) or path to recipe.yaml")
    s.set_defaults(func=cmd_build)
    s = ksub.add_parser("boot", help="boot the cached image in qemu and check uname -r on the serial console")
    s.add_argument("recipe", nargs="?")
    s.add_argument("--image", help="boot this bzImage instead of a recipe build (release read from its header)")
    s.add_argument("--no-kvm", action="store_true", help="force TCG even when /dev/kvm opens")
    s.add_argument("--timeout", type=float, default=None, help="seconds (default 60 with KVM, 300 with TCG)")
    s.set_defaults(func=cmd_boot)
    s = ksub.add_parser("vm-run", help="run a spec inside a VM on the recipe's kernel (Debian image, ssh on 127.0.0.1)")
    s.add_argument("recipe")
    s.add_argument("spec", help="experiments/NAME.yaml or NAME")
    s.add_argument("--scale", choices=["quick", "paper"], default="quick")
    s.add_argument("--repetitions", type=int, default=None)
    s.add_argument("--no-kvm", action="store_true")
    s.set_defaults(func=cmd_vm_run)
    s = ksub.add_parser("vm-exec", help="run one command (in the checkout, as root) inside a VM on the recipe's kernel")
    s.add_argument("recipe", help="a recipe, or debian-stock (Debian's linux-image-cloud-amd64)")
    s.add_argument("--no-kvm", action="store_true")
    s.add_argument("command", nargs=argparse.REMAINDER, help="e.g. -- .venv/bin/python -m nfvlab.kernel.vm.iron_smoke")
    s.set_defaults(func=cmd_vm_exec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nfvlab-kernel")
    register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
