"""The `nfvlab` command line.

    nfvlab list                      the experiment specs in experiments/
    nfvlab validate SPEC...          check specs without running anything (exit 2 if invalid)
    nfvlab run SPEC [--scale quick|paper] [--testbed local|vm|testbed/NAME.yaml] [--repetitions N] [--keep-stale]
                                     [--retries N]
    nfvlab report [--scale S]        figures, verdicts + results/report/index.html from whatever results exist
    nfvlab artifact                  ARTIFACT.md: the artifact-evaluation guide, generated from the specs
    nfvlab clean                     remove everything the harness created on this machine
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from nfvlab import __version__

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
# Subsystems that add their own subcommands: module with register(subparsers).
PLUGINS = ("nfvlab.iron.cli", "nfvlab.statealyzr.cli", "nfvlab.cloudlab.cli", "nfvlab.kernel.cli", "nfvlab.provision",
           "nfvlab.chc.cli")

err = Console(stderr=True)


def cmd_list(args: argparse.Namespace) -> int:
    from nfvlab.spec import SpecError, load_spec

    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        try:
            spec = load_spec(path)
            print(f"{spec.name:28s} Fig/Table {', '.join(spec.paper.figures):14s} {spec.description.splitlines()[0]}")
        except SpecError as e:
            print(f"{path.name:28s} INVALID: {e.problems[0]}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from nfvlab.plan import expand
    from nfvlab.spec import SpecError, load_spec

    status = 0
    for path in args.specs:
        try:
            spec = load_spec(path)
        except SpecError as e:
            err.print(f"[red]{escape(str(e))}[/]", highlight=False)
            status = 2
            continue
        counts = {s: expand(spec, s).total_runs for s in spec.scales} or {"default": expand(spec).total_runs}
        runs = ", ".join(f"{s}: {n} runs" for s, n in counts.items())
        print(f"{path}: ok ({spec.name}, kind {spec.kind}; {runs})")
    return status


def cmd_run(args: argparse.Namespace) -> int:
    from nfvlab.runner import RETRIES, RunError, RunFailed, run
    from nfvlab.spec import SpecError

    try:
        summary = run(Path(args.spec), args.scale, args.repetitions, keep_stale=args.keep_stale,
                      testbed=args.testbed, retries=RETRIES if args.retries is None else args.retries)
    except RunFailed as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        s = e.summary
        err.print(f"{s.spec}: {s.done} run, {len(s.failures)} failed, {s.skipped} current; run again to retry")
        return 1
    except SpecError as e:
        err.print(f"[red]{escape(str(e))}[/]", highlight=False)
        return 2
    except (RunError, ValueError) as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        return 2 if isinstance(e, ValueError) else 1
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: finished repetitions are kept; run again to resume[/]")
        return 130
    stale = f", {summary.stale} stale re-measured" if summary.stale else ""
    kept = f", {summary.kept_stale} stale kept (--keep-stale)" if summary.kept_stale else ""
    err.print(f"{summary.spec}: {summary.done} run, {summary.skipped} skipped{stale}{kept}, "
              f"{summary.seconds:.0f} s; results in results/{summary.spec}/")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from nfvlab.analysis.report import build_report

    path = build_report(scale=args.scale)
    print(f"report: {path}")
    return 0


def cmd_artifact(args: argparse.Namespace) -> int:
    from nfvlab.analysis.artifact import write_artifact

    path = write_artifact(args.output)
    print(f"artifact guide: {path}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from nfvlab.clean import CleanIncomplete, CleanRefused, clean

    try:
        removed = clean(force=args.force, prefix=args.prefix)
    except CleanRefused as e:
        err.print(f"[red]clean refused:[/] {escape(str(e))}")
        return 1
    except CleanIncomplete as e:
        for item in e.removed:
            print(f"removed {item}")
        err.print(f"[red]clean incomplete:[/] {escape(str(e))}")
        return 1
    for item in removed:
        print(f"removed {item}")
    print(f"clean: {len(removed)} objects removed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nfvlab", description="Reproduce 'Paving the Way for NFV' experiments.")
    p.add_argument("--version", action="version", version=f"nfvlab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list the experiment specs")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("validate", help="validate specs without running them")
    s.add_argument("specs", nargs="+", type=Path)
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("run", help="run an experiment spec (resumes: finished repetitions are skipped)")
    s.add_argument("spec")
    s.add_argument("--scale", choices=["quick", "paper"], default="quick")
    s.add_argument("--testbed", default=None, metavar="local|vm|INVENTORY",
                   help="where to run (default: the spec's testbed:): local (this machine), vm (a VM on the spec's "
                        "vm.recipe kernel, docs/kernel.md) or an ssh inventory, testbed/NAME.yaml (docs/remote.md)")
    s.add_argument("--repetitions", type=int, default=None, help="override the spec's repetitions")
    s.add_argument("--keep-stale", action="store_true",
                   help="reuse stored rows whose stamps (code, testbed config, calibration) differ from the "
                        "current ones instead of measuring them again (recorded in rows and provenance)")
    s.add_argument("--retries", type=int, default=None, metavar="N",
                   help="measure a failed repetition again up to N times, on a fresh testbed (default 1, "
                        "nfvlab.runner.RETRIES; every failed attempt stays in failures.json)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("report", help="rebuild figures, verdicts and results/report/index.html")
    s.add_argument("--scale", choices=["quick", "paper"], default=None,
                   help="evaluate every spec at this scale (default: the scale of each spec's newest row)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("artifact", help="write ARTIFACT.md, the artifact-evaluation guide, from the specs")
    s.add_argument("--output", type=Path, default=None, help="where to write it (default: <repo>/ARTIFACT.md)")
    s.set_defaults(func=cmd_artifact)

    s = sub.add_parser("clean", help="remove every namespace, cgroup, qdisc, BPF program and process nfvlab made")
    s.add_argument("--force", action="store_true", help="even while another run holds the local testbed")
    s.add_argument("--prefix", default=None,
                   help="only the objects of a testbed with this name prefix (LocalTestbed(prefix=...), e.g. a test's)")
    s.set_defaults(func=cmd_clean)

    for module in PLUGINS:
        try:
            plugin = import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # subsystem not in this checkout
        plugin.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
