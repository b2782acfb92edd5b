"""`nfvlab statealyzr ...` — analyse middleboxes, check ground truth, build the study tables.

    nfvlab statealyzr list
    nfvlab statealyzr analyze <groundtruth|recipe|RECIPE.yaml|file.c|file.ll|DIR> [--build CMD]
        [--configure CMD] [--receive FUNC ...] [--exclude GLOB ...] [--json PATH] [--plan PATH]
    nfvlab statealyzr check [NAME ...]             hand-labelled soundness/precision
    nfvlab statealyzr dynamic [NAME ...]           run under gdb, compare changed globals
    nfvlab statealyzr table [RECIPE ...] [--out DIR]   Table 4.13 / Fig 4.14 / Table 4.17 rows
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import corpus


def _print_result(res) -> None:
    c = res.counts
    print(f"{res.name}: all={c['all']} persistent={c['persistent']} top-level={c['top_level']} "
          f"updateable={c['updateable']} keyed={c['keyed']} pkt-output={c['pkt_output']} "
          f"log-output={c['log_output']}  ({res.timings.get('total', 0):.2f}s analysis)")
    print(f"  loop procedures: {', '.join(res.loop_procs) or '-'};  receive sites: "
          f"{', '.join(res.recv_sites[:6])}{' ...' if len(res.recv_sites) > 6 else ''}")
    w = max([len(v.key) for v in res.variables if v.classes] + [8])
    print(f"  {'variable':<{w}}  {'P':1} {'T':1} {'U':1} {'K':1} {'O':1} {'L':1}  flowspace")
    for v in res.variables:
        if not v.classes:
            continue
        m = ["x" if c in v.classes else "." for c in corpus.CLASSES]
        print(f"  {v.key:<{w}}  {' '.join(m)}  {','.join(v.flowspace)}")


def _analyze_recipe(r, workdir: Path, config, log):
    from . import analyze_ll
    from .analysis import Config
    cfg = corpus.recipe_config(r, config or Config())
    ll, bt = corpus.build_ir(r, workdir, log)
    res = analyze_ll(ll, r.name, cfg)
    res.timings.update({k: v for k, v in bt.items() if k != "units"})
    res.stats["units"] = bt.get("units")
    return res


def resolve_and_analyze(target: str, workdir: Path, config=None, log=print, build=None, configure=None,
                        receive=None, exclude=None):
    """Analyse a ground truth, a recipe (by name or as a .yaml file anywhere), a source tree
    (built with --build under bear, or its *.c files compiled directly), a .c or a .ll file."""
    from . import analyze_ll, analyze_sources
    from .analysis import Config
    cfg = config or Config()
    cfg.extra_recv += list(receive or [])
    p = Path(target)
    if target in corpus.ground_truths() and not p.exists():
        gt = corpus.load_ground_truth(target)
        return corpus.analyze_ground_truth(gt, cfg)
    if target in corpus.recipes() and not p.exists():
        return _analyze_recipe(corpus.load_recipe(target), workdir, cfg, log)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ValueError(f"{p}: recipe file not found")
        return _analyze_recipe(corpus.load_recipe_file(p), workdir, cfg, log)
    if p.is_dir():
        if build:
            r = corpus.tree_recipe(p, build, configure or [], [], exclude or [])
            return _analyze_recipe(r, workdir, cfg, log)
        if configure:
            raise ValueError(f"{p}: --configure needs --build (the command that compiles the tree)")
        srcs = [s for s in sorted(p.rglob("*.c"))
                if not any(s.match(g) or g in str(s.relative_to(p)) for g in exclude or [])]
        if not srcs:
            raise ValueError(f"{p}: no .c file (pass --build CMD for a tree with its own build)")
        return analyze_sources(srcs, p.name, cfg)
    if p.suffix == ".ll" and p.exists():
        return analyze_ll(p, p.stem, cfg)
    if p.suffix == ".c" and p.exists():
        return analyze_sources([p], p.stem, cfg)
    raise ValueError(f"{target}: not a ground truth ({', '.join(corpus.ground_truths())}), recipe "
                     f"({', '.join(corpus.recipes())}), recipe .yaml, source directory, .c or .ll file")


def cmd_list(a) -> int:
    print("ground truth:", " ".join(corpus.ground_truths()))
    print("recipes:     ", " ".join(corpus.recipes()))
    return 0


def cmd_analyze(a) -> int:
    from .analysis import Config, NoReceiveCall
    progress = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    log = (lambda m: None) if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        res = resolve_and_analyze(a.target, Path(a.workdir), Config(output_scope=a.output_scope,
                                                                    progress=progress), log,
                                  build=a.build, configure=a.configure, receive=a.receive,
                                  exclude=a.exclude)
    except (corpus.BuildError, NoReceiveCall, ValueError) as e:
        print(f"statealyzr: error: {e}", file=sys.stderr)
        return 2
    _print_result(res)
    if a.json:
        plan = a.plan or str(Path(a.json).with_suffix(".plan.json"))
        res.write_json(a.json, plan)
        print(f"wrote {a.json} (instrumentation plan: {plan})")
    if a.patch:
        from .instrument import make_patch
        diff, info = make_patch(res.instrumentation, None)
        Path(a.patch).write_text(diff)
        print(f"wrote {a.patch}: {info['placed']}")
    return 0


def cmd_check(a) -> int:
    bad = 0
    rows = {}
    for name in a.names or corpus.ground_truths():
        gt = corpus.load_ground_truth(name)
        res = corpus.analyze_ground_truth(gt)
        cmp = corpus.compare(res, gt)
        rows[name] = cmp["per_class"]
        ok = not cmp["missed"] and not cmp["flowspace_mismatch"]
        bad += not ok
        print(f"{name}: {'SOUND' if ok else 'UNSOUND'} missed={len(cmp['missed'])} "
              f"extra={len(cmp['unexpected_extra'])} forbidden={len(cmp['forbidden_flagged'])} "
              f"precision={cmp['precision']}")
        for m in cmp["missed"]:
            print("    missed:", m)
        for m in cmp["flowspace_mismatch"]:
            print("    flowspace:", m)
        for m in cmp["forbidden_flagged"]:
            print("    must not be flagged:", m)
        for m in cmp["unexpected_extra"]:
            print("    extra:", m)
    table = corpus.precision_table(rows)
    print(table)
    if a.table:
        Path(a.table).parent.mkdir(parents=True, exist_ok=True)
        Path(a.table).write_text(table + "\n")
        Path(a.table).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 1 if bad else 0


def cmd_dynamic(a) -> int:
    from .dynamic import dynamic_check
    bad = 0
    from .dynamic import dynamic_check_recipe
    for name in a.names or corpus.ground_truths():
        if name in corpus.recipes():
            rep = dynamic_check_recipe(name, Path(a.table_out) / f"{name}.json", Path(a.recipe_workdir))
            Path(a.table_out, f"{name}-dynamic.json").write_text(json.dumps(rep, indent=1))
        else:
            rep = dynamic_check(name, Path(a.workdir))
        print(json.dumps(rep, indent=1))
        bad += bool(rep.get("missed"))
    return 1 if bad else 0


def cmd_table(a) -> int:
    from .study import run_table
    return run_table(a.recipes or None, Path(a.out), Path(a.workdir), include_gt=not a.no_ground_truth)


def cmd_instrument(a) -> int:
    from .study import instrument_recipe
    out = Path(a.out)
    rep = instrument_recipe(a.recipe, out / f"{a.recipe}.json", Path(a.workdir).resolve())
    (out / f"{a.recipe}-instrumentation.json").write_text(json.dumps(rep, indent=1))
    print(json.dumps(rep, indent=1))
    return 0 if rep["instrumented_build_ok"] else 1


def cmd_transfer(a) -> int:
    from .transfer import TRANSFER_CORPUS, TRANSFER_GT, run_transfer, summarize, write_study
    out = Path(a.out)
    results = []
    for name in a.names or TRANSFER_GT + TRANSFER_CORPUS:
        r = run_transfer(name, Path(a.workdir), a.packets, cost_packets=a.cost_packets,
                         recipe_workdir=Path(a.recipe_workdir))
        results.append(r)
        print(json.dumps({"middlebox": name, **summarize(r)}))
    write_study(results, out)
    print(f"wrote {out}/rows.csv, checks.csv, summary.csv, fig4-15a.png, fig4-15b.png")
    bad = [c for r in results for c in r["checks"] if c["model"] != "none" and not c["logs_equal"]]
    return 1 if bad else 0


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("statealyzr", help="StateAlyzr: find the state of C middleboxes (ch. 4)")
    sp = p.add_subparsers(dest="statealyzr_cmd", required=True)
    x = sp.add_parser("list", help="list ground-truth middleboxes and recipes")
    x.set_defaults(func=cmd_list)
    x = sp.add_parser("analyze", help="analyse a middlebox and print its variables")
    x.add_argument("target", help="ground-truth name, recipe name, recipe .yaml file, source directory, "
                                  ".c file or .ll file")
    x.add_argument("--build", action="append", metavar="CMD",
                   help="for a directory: the command that builds it (recorded with bear; repeatable)")
    x.add_argument("--configure", action="append", metavar="CMD", help="run before --build (not recorded)")
    x.add_argument("--receive", action="append", default=[], metavar="FUNC",
                   help="a function that hands the program its packets, beyond pcap/recv/DAQ (repeatable)")
    x.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="compilation units to leave out (path glob or substring; repeatable)")
    x.add_argument("--quiet", action="store_true", help="no build log or progress lines on stderr")
    x.add_argument("--json", help="write the full result (counts, variables, evidence) here, streamed")
    x.add_argument("--plan", help="where the instrumentation plan goes (default: JSON path with .plan.json)")
    x.add_argument("--patch", help="write the update-tracking instrumentation as a unified diff")
    x.add_argument("--workdir", default="results/statealyzr-work")
    x.add_argument("--output-scope", choices=["program", "pkt_procs"], default="program")
    x.set_defaults(func=cmd_analyze)
    x = sp.add_parser("check", help="compare the analysis with the hand labels (precision/recall per class)")
    x.add_argument("names", nargs="*")
    x.add_argument("--table", help="write the precision/recall table (markdown; .json beside it)")
    x.set_defaults(func=cmd_check)
    x = sp.add_parser("dynamic", help="run ground-truth middleboxes under gdb and check soundness")
    x.add_argument("names", nargs="*")
    x.add_argument("--workdir", default="results/statealyzr-dynamic")
    x.add_argument("--table-out", default="results/statealyzr-table",
                   help="for recipes: where `table` wrote <recipe>.json")
    x.add_argument("--recipe-workdir", default="results/statealyzr-work")
    x.set_defaults(func=cmd_dynamic)
    x = sp.add_parser("table", help="run the corpus: Table 4.13, Fig 4.14, Table 4.17 rows")
    x.add_argument("recipes", nargs="*")
    x.add_argument("--out", default="results/statealyzr-table")
    x.add_argument("--workdir", default="results/statealyzr-work")
    x.add_argument("--no-ground-truth", action="store_true")
    x.set_defaults(func=cmd_table)
    x = sp.add_parser("transfer", help="primary/hot-standby state transfer (Fig 4.15/4.16): ground truth, "
                                       "p0f, tcpdump")
    x.add_argument("names", nargs="*")
    x.add_argument("--packets", type=int, default=300)
    x.add_argument("--cost-packets", type=int, default=100000, help="trace length for the instrumentation cost")
    x.add_argument("--out", default="results/statealyzr-transfer")
    x.add_argument("--workdir", default="results/statealyzr-transfer-work")
    x.add_argument("--recipe-workdir", default="results/statealyzr-work",
                   help="where corpus sources are fetched and analysed (shared with analyze/table)")
    x.set_defaults(func=cmd_transfer)
    x = sp.add_parser("instrument", help="patch a recipe's tree with update tracking and rebuild it")
    x.add_argument("recipe")
    x.add_argument("--out", default="results/statealyzr-table", help="where the table put <recipe>.json")
    x.add_argument("--workdir", default="results/statealyzr-work")
    x.set_defaults(func=cmd_instrument)
    return p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="nfvlab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    register(sub)
    args = ap.parse_args(["statealyzr", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
