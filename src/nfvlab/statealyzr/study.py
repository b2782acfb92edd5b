"""The StateAlyzr study: Table 4.13 (variables and their properties), Fig 4.14 (flowspace
dimensions of keyed variables) and Table 4.17 (compile/analysis time, peak memory), measured on the
corpus and put next to the dissertation's numbers.

Each middlebox is built once (bear + clang-14 IR, cached under the work directory); the analysis
runs in a child process so its peak memory (ru_maxrss) is its own. Outputs in ``out``:
``<name>.json`` (full result), ``table.csv``, ``flowspace.csv``, ``cost.csv``, ``fig4-14.png`` and
``summary.md`` (paper vs measured).
"""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from . import corpus

PAPER_ROWS = {   # Table 4.13 / 4.17, and which paper middlebox a corpus entry stands next to
    "haproxy": ("HAProxy", dict(all=7876, persistent=272, top_level=176, updateable=115, pkt_output=101,
                                log_output=109, compile_h=0.25, analysis_h=6, memory_gb=6)),
    "openvpn": ("OpenVPN", dict(all=8704, persistent=156, top_level=131, updateable=106, pkt_output=97,
                                log_output=102, compile_h=0.5, analysis_h=5, memory_gb=7.3)),
    "p0f": ("PRADS (same kind: passive pcap monitor)", dict(all=1529, persistent=61, top_level=29,
                                                            updateable=10, pkt_output=None, log_output=6,
                                                            compile_h=0.2, analysis_h=0.25, memory_gb=0.3)),
    "tcpdump": ("- (Snort 2.9 not reachable; tcpdump is the pcap_loop monitor)",
                dict(all=None, persistent=None, top_level=None, updateable=None, pkt_output=None,
                     log_output=None, compile_h=None, analysis_h=None, memory_gb=None)),
}
COLS = ["all", "persistent", "top_level", "updateable", "pkt_output", "log_output"]


def _analyze_child(target: str, out_json: Path, workdir: Path) -> tuple[dict, float]:
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = subprocess.run([sys.executable, "-m", "nfvlab.statealyzr.cli", "analyze", target, "--json", str(out_json),
                        "--workdir", str(workdir)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"analysis of {target} failed:\n{r.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = json.loads(out_json.read_text())
    res["stats"]["child_peak_rss_mb"] = round(max(after, before) / 1024, 1)
    return res, wall


def _ratio(a, b):
    return round(100.0 * (1 - a / b), 1) if a is not None and b else None


def run_table(recipes: list[str] | None, out: Path, workdir: Path, include_gt: bool = True,
              log=print) -> int:
    out.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    # by default only recipes whose sources this machine can reach (apt or a local path); URL
    # recipes (PRADS, Snort) run when named explicitly
    names = recipes if recipes is not None else [n for n in corpus.recipes()
                                                 if "url" not in corpus.load_recipe(n).source]
    rows, flows, costs, failures = [], [], [], []
    targets = [(n, "recipe") for n in names] + ([(g, "ground truth") for g in corpus.ground_truths()]
                                                  if include_gt else [])
    for name, kind in targets:
        log(f"statealyzr: {name} ({kind})")
        try:
            build_t = {}
            target = name
            if kind == "recipe":
                r = corpus.load_recipe(name)
                t0 = time.perf_counter()
                ll, build_t = corpus.build_ir(r, workdir, log)
                build_t["wall_s"] = round(time.perf_counter() - t0, 2)
                target = str(ll)
            res, wall = _analyze_child(target, out / f"{name}.json", workdir)
        except Exception as e:  # one middlebox failing must not lose the others
            log(f"statealyzr: {name}: FAILED: {e}")
            failures.append({"name": name, "error": str(e)[-2000:]})
            continue
        c = res["counts"]
        paper_name, paper = PAPER_ROWS.get(name, ("-", {}))
        row = {"middlebox": name, "kind": kind, **{k: c[k] for k in COLS}, "keyed": c["keyed"],
               "persistent_pct_of_all": round(100.0 * c["persistent"] / c["all"], 1) if c["all"] else None,
               "top_level_reduction_pct": _ratio(c["top_level"], c["persistent"]),
               "updateable_reduction_pct": _ratio(c["updateable"], c["top_level"]),
               "paper_middlebox": paper_name,
               **{f"paper_{k}": paper.get(k) for k in COLS},
               "paper_top_level_reduction_pct": _ratio(paper.get("top_level"), paper.get("persistent")),
               "paper_updateable_reduction_pct": _ratio(paper.get("updateable"), paper.get("top_level")),
               "functions": res["stats"]["functions"], "instructions": res["stats"]["instructions"]}
        rows.append(row)
        hist: dict[int, int] = {}
        for v in res["variables"]:
            if "keyed" in v["classes"]:
                hist[len(v["flowspace"])] = hist.get(len(v["flowspace"]), 0) + 1
                flows.append({"middlebox": name, "variable": v["key"], "n_fields": len(v["flowspace"]),
                              "fields": " ".join(v["flowspace"])})
        t = res["timings_s"]
        costs.append({"middlebox": name, "build_s": build_t.get("build_s"),
                      "ir_compile_s": build_t.get("ir_compile_s", t.get("compile")),
                      "link_s": build_t.get("link_s"), "units": build_t.get("units"),
                      "parse_ir_s": t.get("parse_ir"), "analysis_s": t.get("total"),
                      "points_to_sdg_s": t.get("points_to_and_sdg"), "flowspace_s": t.get("flowspace"),
                      "child_wall_s": round(wall, 2),
                      "peak_rss_mb": res["stats"].get("child_peak_rss_mb"),
                      "paper_compile_h": paper.get("compile_h"), "paper_analysis_h": paper.get("analysis_h"),
                      "paper_memory_gb": paper.get("memory_gb")})
    _write_csv(out / "table.csv", rows)
    _write_csv(out / "flowspace.csv", flows)
    _write_csv(out / "cost.csv", costs)
    (out / "failures.json").write_text(json.dumps(failures, indent=1))
    _figure(out, flows)
    _summary(out, rows, costs, flows, failures)
    log(f"statealyzr: wrote {out}/summary.md")
    return 1 if failures else 0


def instrument_recipe(name: str, result_json: Path, workdir: Path, log=print) -> dict:
    """Apply the update-tracking patch to a copy of a recipe's tree and rebuild it with the
    recipe's own commands: does the instrumented middlebox compile?"""
    import shutil

    from .analysis import Result  # noqa: F401  (documentation of the JSON shape)
    from .instrument import make_patch
    r = corpus.load_recipe(name)
    tree = corpus.fetch(r, workdir, log)
    res = json.loads(Path(result_json).read_text())
    dst = workdir / f"{name}-instrumented"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(tree, dst, symlinks=True)
    diff, info = make_patch(res["instrumentation"], dst, root=tree)
    (workdir / f"{name}-instrumentation.patch").write_text(diff)
    t0 = time.perf_counter()
    ok, err = True, ""
    for c in r.make:
        p = subprocess.run(c, shell=True, cwd=dst, capture_output=True, text=True)
        if p.returncode != 0:
            ok, err = False, (p.stdout + p.stderr)[-1500:]
            break
    return {"middlebox": name, "settings_inserted": res["instrumentation"]["n_inserted"],
            "settings_pruned": res["instrumentation"]["n_pruned"], **info["placed"],
            "files_patched": len(info["files"]), "patch_lines": diff.count("\n+") ,
            "instrumented_build_ok": ok, "build_s": round(time.perf_counter() - t0, 1), "error": err}


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    keys = list(rows[0])
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def _figure(out: Path, flows: list[dict]) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    boxes = sorted({f["middlebox"] for f in flows})
    if not boxes:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(boxes)
    for i, b in enumerate(boxes):
        counts: dict[int, int] = {}
        for f in flows:
            if f["middlebox"] == b:
                counts[f["n_fields"]] = counts.get(f["n_fields"], 0) + 1
        xs = sorted(counts)
        ax.bar([x + i * width for x in xs], [counts[x] for x in xs], width, label=b)
    ax.set_xlabel("header fields in the flowspace key")
    ax.set_ylabel("keyed variables")
    ax.set_title("Flowspace dimensions of keyed variables (cf. Fig 4.14)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fig4-14.png", dpi=120)
    plt.close(fig)


def _summary(out: Path, rows, costs, flows, failures) -> None:
    L = ["# StateAlyzr study (Table 4.13, Fig 4.14, Table 4.17)", ""]
    L += ["## Table 4.13: variables and their properties (measured | paper)", "",
          "| middlebox | all | persistent | top-level | updateable | pkt out | log out | keyed | "
          "persist→top red. % | top→upd red. % | paper row |", "|---" * 11 + "|"]

    def pp(v):
        return "-" if v is None else str(v)
    for r in rows:
        L.append(f"| {r['middlebox']} | {r['all']} | {r['persistent']} | {r['top_level']} | {r['updateable']} | "
                 f"{r['pkt_output']} | {r['log_output']} | {r['keyed']} | {pp(r['top_level_reduction_pct'])} "
                 f"(paper {pp(r['paper_top_level_reduction_pct'])}) | {pp(r['updateable_reduction_pct'])} "
                 f"(paper {pp(r['paper_updateable_reduction_pct'])}) | {r['paper_middlebox']}: "
                 + " / ".join(pp(r[f'paper_{k}']) for k in COLS) + " |")
    L += ["", "Paper reductions: persistent→top-level 16-53 %, top-level→updateable 19-65 %.", "",
          "## Table 4.17: cost (measured on this 2-core machine | paper with CodeSurfer)", "",
          "| middlebox | build s | IR compile s | units | analysis s | peak RSS MB | paper compile h | "
          "paper analysis h | paper GB |", "|---" * 9 + "|"]
    for c in costs:
        L.append(f"| {c['middlebox']} | {pp(c['build_s'])} | {pp(c['ir_compile_s'])} | {pp(c['units'])} | "
                 f"{pp(c['analysis_s'])} | {pp(c['peak_rss_mb'])} | {pp(c['paper_compile_h'])} | "
                 f"{pp(c['paper_analysis_h'])} | {pp(c['paper_memory_gb'])} |")
    L += ["", "## Fig 4.14: keyed variables by number of flowspace fields", ""]
    by: dict[str, dict[int, int]] = {}
    for f in flows:
        by.setdefault(f["middlebox"], {}).setdefault(f["n_fields"], 0)
        by[f["middlebox"]][f["n_fields"]] += 1
    for b, h in sorted(by.items()):
        L.append(f"- {b}: " + ", ".join(f"{n} field(s): {k}" for n, k in sorted(h.items())))
    L += ["", "Paper: PRADS keys use at most 3 fields, Snort up to 5-6.", ""]
    if failures:
        L += ["## Failures", ""] + [f"- {f['name']}: {f['error'][:300]}" for f in failures]
    (out / "summary.md").write_text("\n".join(L) + "\n")
