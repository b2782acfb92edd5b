"""The state-transfer experiment (dissertation §4.5, §4.6.2, Fig 4.15/4.16), on ground-truth
middleboxes and on the corpus' passive monitors (p0f, tcpdump: their Debian sources, StateAlyzr's
analysis of them, every unit rebuilt -O0 -g from the recorded compile commands): a primary and a
hot standby; after each packet the primary sends state to the
standby, under

    model (i)    all updateable state (every updateable global and what it points to);
    model (ii)   only the state in the last packet's flowspace: for a keyed variable, the heap
                 objects holding the packet's values of its flowspace fields (StateAlyzr's
                 Fig 4.10 output), what they point to and the pointer slots leading there; for
                 an unkeyed variable (flowspace "*"), all of it;
    model (iii)  (ii), restricted to the variables the Fig 4.12 instrumentation marked updated
                 while the packet was processed.

Beyond the paper, the export/import code is generated from StateAlyzr's result and the binary's
DWARF types (transfer_gdb/agent.py, run inside gdb): the variables to send come from the
analysis, their layout and the pointers to follow from DWARF. Per packet we record the bytes
each model sends. Soundness as the paper checks it: for several switch-over points k, the
primary processes packets 1..k, the state a standby holds at that point is imported into a fresh
instance that processes k+1..N, and the concatenated output of primary and standby must equal
the output of one instance on the whole trace (the standby's own start-up output, before its
first packet, is not part of that log). This import is done for model (i) and for the
marked-updated variables sent whole ("marked": the last copy of every variable ever marked); the
flowspace-filtered models (ii)/(iii) are measured in bytes only (a standby merging per-flow
deltas is not built). A control standby that gets no state must produce a different output. The
instrumentation's per-packet cost is the run time of the instrumented build minus the plain one
(both -O2).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import corpus
from .dynamic import _data_symbols, build_recipe_binary, make_pcap
from .instrument import BITS, make_patch

AGENT = Path(__file__).parent / "transfer_gdb" / "agent.py"
CC = shutil.which("clang-14") or "cc"


def split_pcap(src: Path, k: int, dst: Path) -> Path:
    """The packets after the first k (the standby's part of the trace)."""
    data = src.read_bytes()
    out, off, i = [data[:24]], 24, 0
    while off + 16 <= len(data):
        incl = struct.unpack("<IIII", data[off:off + 16])[2]
        if i >= k:
            out.append(data[off:off + 16 + incl])
        off += 16 + incl
        i += 1
    dst.write_bytes(b"".join(out))
    return dst


def timestamps(pcap: Path) -> dict[str, int]:
    """Trace index of every packet by its "sec.usec" timestamp (make_pcap's are unique): the
    agent tells from a callback's pcap_pkthdr which packet it is at."""
    data = pcap.read_bytes()
    out, off, i = {}, 24, 0
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        out[f"{sec}.{usec}"] = i
        off += 16 + incl
        i += 1
    return out


_FIELD_AT = {  # header field -> (layer, offset, length) in an Ethernet/IPv4 frame
    "src_ip": ("ip", 12, 4), "dst_ip": ("ip", 16, 4), "proto": ("ip", 9, 1), "ttl": ("ip", 8, 1),
    "tos": ("ip", 1, 1), "src_port": ("l4", 0, 2), "dst_port": ("l4", 2, 2), "tcp_seq": ("tcp", 4, 4),
    "tcp_flags": ("tcp", 13, 1)}


def packet_fields(pcap: Path) -> list[dict[str, str]]:
    """Per packet, the header fields a flowspace can name, as network-order hex bytes."""
    data = pcap.read_bytes()
    out, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack("<IIII", data[off:off + 16])[2]
        fr = data[off + 16:off + 16 + incl]
        off += 16 + incl
        vals: dict[str, str] = {}
        if len(fr) >= 34 and fr[12:14] == b"\x08\x00":
            ip = fr[14:]
            l4 = ip[(ip[0] & 15) * 4:]
            for f, (layer, o, n) in _FIELD_AT.items():
                seg = ip if layer == "ip" else l4
                if layer != "ip" and (ip[9] not in (6, 17) or (layer == "tcp" and ip[9] != 6)):
                    continue
                if len(seg) >= o + n:
                    vals[f] = seg[o:o + n].hex()
        out.append(vals)
    return out


def _build(srcs: list[Path], out: Path, flags: list[str], libs: list[str], opt: str = "-O0") -> Path:
    cmd = [CC, opt, "-g", "-no-pie", "-fno-pie", "-w", *flags, *map(str, srcs), "-o", str(out), *libs, "-lpthread"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def _gdb(cfg: dict, path: Path, cwd: Path | None = None, timeout: int = 1800) -> str:
    path.write_text(json.dumps(cfg))
    cmd = ["gdb", "-q", "-batch", "-nx", "-ex", f"python CFG={str(path)!r}", "-x", str(AGENT), cfg["binary"]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return p.stdout + p.stderr


@dataclass
class Box:
    """A middlebox ready for the experiment: its instrumented -O0 build, what to transfer (the
    updateable globals and statics, as gdb names them), where packets enter, how to run it."""
    name: str
    binary: Path
    variables: list[dict]
    bits: list[str]
    sym_of: dict[str, str]
    entries: list[str]
    globals: tuple[int, int]
    argv: Callable[[Path, Path], str]            # (trace, run dir) -> argument string
    cost_builds: Callable[[], tuple[Path, Path]]  # -O2 plain and instrumented builds
    cwd: Path | None = None
    # start-up values drawn at random, fixed in every run: [{after: function, set: var, value: n}]
    deterministic: list[dict] = field(default_factory=list)


def gdb_names(variables: list[dict], keys: list[str]) -> dict[str, str]:
    """gdb's name of every updateable global or static among keys (locals of the loop procedure
    are re-filled by the standby's own receive loop). A name that several files define (p0f's
    `sigs` in fp_tcp.c and fp_http.c, its two dump_flags()::ret) gets the file: 'f.c'::var,
    'f.c'::fn::var."""
    by = {v["key"]: v for v in variables}
    # any kind: tcpdump's format_interval() has a static `i` in one file and a formal `i` in another
    count = Counter((v["name"], v["function"]) for v in variables)
    out = {}
    for k in keys:
        v = by[k]
        if v["kind"] not in ("global", "static"):
            continue
        name = f"{v['function']}::{v['name']}" if v["function"] else v["name"]
        if count[(v["name"], v["function"])] > 1:
            name = f"'{Path(v['file']).name}'::{name}"
        out[k] = name
    return out


def _globals_range(binary: Path) -> tuple[int, int]:
    syms = _data_symbols(binary)
    return min(a for a, _ in syms.values()), max(a + s for a, s in syms.values())


def prepare(name: str, wd: Path, recipe_workdir: Path | None = None) -> Box:
    if name in corpus.ground_truths():
        return _prepare_gt(name, wd)
    return _prepare_recipe(name, wd, Path(recipe_workdir or wd / "recipes").resolve())


def _prepare_gt(name: str, wd: Path) -> Box:
    gt = corpus.load_ground_truth(name)
    res = corpus.analyze_ground_truth(gt)
    plan = res.instrumentation
    make_patch(plan, wd / "instr", root=corpus.GT_DIR)
    isrcs = [wd / "instr" / s.name if (wd / "instr" / s.name).exists() else s for s in gt.sources]
    libs = gt.run.get("libs", ["-lpcap"])
    binary = _build(isrcs, wd / f"{name}-instr", gt.flags, libs)
    variables = res.to_json()["variables"]

    def argv(pcap: Path, d: Path) -> str:
        files = {}
        for fname, text in (gt.run.get("files") or {}).items():
            files[fname] = d / f"{fname}.txt"
            files[fname].write_text(text)
        return " ".join(a.format(pcap=pcap, out=d / "out.pcap", **files) for a in gt.run.get("argv", ["{pcap}"]))

    def cost_builds() -> tuple[Path, Path]:
        return (_build(gt.sources, wd / "plain-O2", gt.flags, libs, "-O2"),
                _build(isrcs, wd / "instr-O2", gt.flags, libs, "-O2"))
    return Box(name, binary, variables, plan["bits"], gdb_names(variables, plan["bits"]),
               sorted(res.stats["packet_entries"]), _globals_range(binary), argv, cost_builds)


def _analysis_key(recipe_file: Path) -> str:
    """The analysis' code and the recipe: a cached result is reused only for both unchanged."""
    h = hashlib.sha256(recipe_file.read_bytes())
    for f in sorted(Path(__file__).parent.glob("*.py")):
        if not f.name.startswith("transfer"):
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def analyze_recipe(name: str, rwd: Path) -> tuple[dict, dict]:
    """StateAlyzr's result and instrumentation plan for a corpus middlebox (analysed in a child
    process: tcpdump's analysis peaks at several GB), cached by _analysis_key."""
    key = _analysis_key(corpus.RECIPE_DIR / f"{name}.yaml")
    out = rwd / "transfer-analysis" / f"{name}-{key}.json"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".partial.json")
        r = subprocess.run([sys.executable, "-m", "nfvlab.statealyzr.cli", "analyze", name, "--json", str(tmp),
                            "--plan", str(out.with_suffix(".plan.json")), "--workdir", str(rwd), "--quiet"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"analysis of {name} failed:\n{r.stderr[-3000:]}")
        tmp.rename(out)
    return json.loads(out.read_text()), json.loads(out.with_suffix(".plan.json").read_text())


def _prepare_recipe(name: str, wd: Path, rwd: Path) -> Box:
    """A corpus middlebox: its tree patched with the Fig 4.12 instrumentation into a copy, every
    unit rebuilt from the recorded compile commands (-O0 -g, non-PIE) for the gdb agent."""
    r = corpus.load_recipe(name)
    dyn = r.dynamic or {}
    if not dyn:
        raise ValueError(f"recipe {name} has no dynamic: section (how to run it on a trace)")
    res, plan = analyze_recipe(name, rwd)
    tree = corpus.fetch(r, rwd)
    entries = json.loads((tree / "compile_commands.json").read_text())
    itree = wd / "instr-tree"
    shutil.copytree(tree, itree, symlinks=True)
    make_patch(plan, itree, root=tree)
    libs = dyn.get("libs", [])

    def build(tag: str, opt: str, remap: tuple[Path, Path] | None) -> Path:
        d = wd / f"obj-{tag}"
        d.mkdir(exist_ok=True)
        b, err = build_recipe_binary(entries, d, wd / tag, libs, opt, remap)
        if err:
            raise RuntimeError(f"{name}: link of {tag} failed:\n{err}")
        return b
    binary = build("instr-O0", "-O0", (tree, itree))

    def argv(pcap: Path, d: Path) -> str:
        return " ".join(a.format(pcap=pcap, tree=tree, out=d / "out") for a in dyn.get("argv", ["{pcap}"]))

    def cost_builds() -> tuple[Path, Path]:
        return build("plain-O2", "-O2", None), build("instr-O2", "-O2", (tree, itree))
    return Box(name, binary, res["variables"], plan["bits"], gdb_names(res["variables"], plan["bits"]),
               sorted(res["stats"]["packet_entries"]), _globals_range(binary), argv, cost_builds, cwd=tree,
               deterministic=dyn.get("deterministic", []))


TRANSFER_GT = ["hostcount", "conntrack", "hostflow", "wrapcount", "copykey", "hdralloc"]
TRANSFER_CORPUS = ["p0f", "tcpdump"]


def _logs_equal(d: Path, model: str, wd: Path) -> bool:
    """Primary's output, then the standby's from where its packet processing started, against
    the single instance's (stdout and stderr each)."""
    off = json.loads((d / f"offsets_{model}.json").read_text())
    return all((d / f"primary.{s}").read_text(errors="replace")
               + (d / f"standby_{model}.{s}").read_bytes()[off[f"std{s}"]:].decode(errors="replace")
               == (wd / f"single.{s}").read_text(errors="replace") for s in ("out", "err"))


def run_transfer(name: str, workdir: Path, n_packets: int = 300, switch_points=(0.25, 0.5, 0.75),
                 cost_packets: int = 100000, cost_reps: int = 9, recipe_workdir: Path | None = None) -> dict:
    wd = (Path(workdir) / name).resolve()
    shutil.rmtree(wd, ignore_errors=True)
    wd.mkdir(parents=True)
    box = prepare(name, wd, recipe_workdir)
    pcap = make_pcap(wd / "trace.pcap", n_packets)
    by = {v["key"]: v for v in box.variables}
    keyed = {sym: by[k]["flowspace"] for k, sym in box.sym_of.items() if by[k]["flowspace"]}
    base = {"binary": str(box.binary), "entries": box.entries, "bits": box.bits,
            "keyed": keyed, "packet_fields": packet_fields(pcap), "ts_index": timestamps(pcap),
            "sym_of": box.sym_of, "model_i": sorted(box.sym_of.values()),
            "globals_lo": box.globals[0], "globals_hi": box.globals[1], "deterministic": box.deterministic}
    _gdb(dict(base, mode="single", args=box.argv(pcap, wd), stdout=str(wd / "single.out"),
              stderr=str(wd / "single.err")), wd / "single.json", box.cwd)
    checks = []
    for frac in switch_points:
        k = max(1, int(n_packets * frac))
        d = wd / f"k{k}"
        d.mkdir()
        cfg = dict(base, mode="primary", switch_at=k, measure=False, args=box.argv(pcap, d),
                   stdout=str(d / "primary.out"), stderr=str(d / "primary.err"), rows=str(d / "rows.json"),
                   export_i=str(d / "export_i.json"), export_iii=str(d / "export_marked.json"),
                   switch=str(d / "switch.json"))
        log = _gdb(cfg, d / "primary.json", box.cwd)
        if not (d / "export_i.json").exists():
            raise RuntimeError(f"{name}: primary did not reach packet {k}:\n{log[-2000:]}")
        # the standby starts at the packet the primary stopped before (trace packets the
        # middlebox's filter dropped in between never reached it)
        k = json.loads((d / "switch.json").read_text())["switch_index"]
        tail = split_pcap(pcap, k, d / "tail.pcap")
        (d / "export_none.json").write_text("[]")     # control: a standby that got nothing
        for model in ("i", "marked", "none"):
            sc = dict(base, mode="standby", args=box.argv(tail, d), stdout=str(d / f"standby_{model}.out"),
                      stderr=str(d / f"standby_{model}.err"), offsets=str(d / f"offsets_{model}.json"),
                      **{"import": str(d / f"export_{model}.json")})
            slog = _gdb(sc, d / f"standby_{model}.json", box.cwd)
            same = (d / f"offsets_{model}.json").exists() and _logs_equal(d, model, wd)
            checks.append({"switch_at": k, "model": model, "logs_equal": same,
                           "gdb_tail": "" if same else slog[-800:]})
    # per-packet bytes from a primary that runs the whole trace
    d = wd / "full"
    d.mkdir()
    cfg = dict(base, mode="primary", switch_at=n_packets + 1, args=box.argv(pcap, d), stdout=str(d / "p.out"),
               stderr=str(d / "p.err"), rows=str(d / "rows.json"), export_i=str(d / "e_i.json"),
               export_iii=str(d / "e_iii.json"), switch=str(d / "switch.json"))
    log = _gdb(cfg, d / "primary.json", box.cwd)
    if not (d / "rows.json").exists():
        raise RuntimeError(f"{name}: measuring primary failed:\n{log[-2000:]}")
    rows = json.loads((d / "rows.json").read_text())
    return {"middlebox": name, "packets": n_packets, "rows": rows, "checks": checks,
            "instrumentation": instrumentation_cost(box, wd, cost_packets, cost_reps),
            "transferred_variables": sorted(box.sym_of)}


def instrumentation_cost(box: Box, wd: Path, n_packets: int = 100000, reps: int = 9) -> dict:
    """Per-packet cost of the updated-bit settings: -O2 builds with and without them."""
    plain, instr = box.cost_builds()
    pcap = make_pcap(wd / "big.pcap", n_packets, seed=11)
    times: dict[str, list[float]] = {"plain": [], "instr": []}
    for _ in range(reps):
        for tag, b in (("plain", plain), ("instr", instr)):
            t0 = time.perf_counter()
            subprocess.run(f"{b} {box.argv(pcap, wd)}", shell=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=600, cwd=box.cwd)
            times[tag].append(time.perf_counter() - t0)
    mp, mi = statistics.median(times["plain"]), statistics.median(times["instr"])
    diffs = sorted((i - p) / n_packets * 1e6 for p, i in zip(times["plain"], times["instr"], strict=True))
    return {"packets": n_packets, "reps": reps, "plain_median_s": round(mp, 5), "instr_median_s": round(mi, 5),
            "per_packet_us": round((mi - mp) / n_packets * 1e6, 4),
            "per_packet_us_pairs_min_max": [round(diffs[0], 4), round(diffs[-1], 4)],
            "plain_per_packet_us": round(mp / n_packets * 1e6, 4), "bits_symbol": BITS}


def summarize(r: dict) -> dict:
    """One row of metrics per middlebox (what the experiment kind reports)."""
    rows = r["rows"]
    mi = statistics.mean(x["model_i_bytes"] for x in rows)
    m3 = statistics.mean(x["model_iii_bytes"] for x in rows)
    m2 = statistics.mean(x["model_ii_bytes"] for x in rows)
    real = [c for c in r["checks"] if c["model"] != "none"]
    ctl = [c for c in r["checks"] if c["model"] == "none"]
    return {"model_i_bytes_mean": round(mi, 1), "model_iii_bytes_mean": round(m3, 1),
            "model_ii_bytes_mean": round(m2, 1),
            "i_vs_ii_reduction_x": round(mi / m2, 2) if m2 else float("nan"),
            "ii_vs_iii_reduction_x": round(m2 / m3, 3) if m3 else float("nan"),
            "marked_whole_bytes_mean": round(statistics.mean(x["marked_whole_bytes"] for x in rows), 1),
            "logs_equal_fraction": sum(c["logs_equal"] for c in real) / len(real),
            "control_differs_fraction": sum(not c["logs_equal"] for c in ctl) / len(ctl) if ctl else float("nan"),
            "switch_points": len({c["switch_at"] for c in real}),
            "instr_per_packet_us": r["instrumentation"]["per_packet_us"],
            "plain_per_packet_us": r["instrumentation"]["plain_per_packet_us"],
            "transferred_variables": len(r["transferred_variables"])}


def write_study(results: list[dict], out: Path) -> None:
    """rows.csv (per packet), checks.csv, summary.csv and the Fig 4.15-style figures."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    out.mkdir(parents=True, exist_ok=True)
    rows = pd.DataFrame([dict(x, middlebox=r["middlebox"]) for r in results for x in r["rows"]])
    checks = pd.DataFrame([dict(c, middlebox=r["middlebox"]) for r in results for c in r["checks"]])
    summ = pd.DataFrame([dict(summarize(r), middlebox=r["middlebox"]) for r in results])
    rows.to_csv(out / "rows.csv", index=False)
    checks.drop(columns=["gdb_tail"]).to_csv(out / "checks.csv", index=False)
    summ.to_csv(out / "summary.csv", index=False)
    (out / "instrumentation.json").write_text(json.dumps({r["middlebox"]: r["instrumentation"] for r in results},
                                                         indent=1))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = range(len(summ))
    ax.bar([i - 0.27 for i in x], summ["model_i_bytes_mean"], 0.27, label="(i) all updateable state")
    ax.bar(list(x), summ["model_ii_bytes_mean"], 0.27, label="(ii) last packet's flowspace")
    ax.bar([i + 0.27 for i in x], summ["model_iii_bytes_mean"], 0.27, label="(iii) (ii) + marked updated")
    ax.set_xticks(list(x), summ["middlebox"])
    ax.set_yscale("log")
    ax.set_ylabel("bytes sent per packet (mean)")
    ax.set_title("Per-packet state transfer (cf. Fig 4.15a)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig4-15a.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        d = rows[rows.middlebox == r["middlebox"]]
        ax.plot(d["packet"], d["model_i_bytes"], label="(i)")
        ax.plot(d["packet"], d["model_ii_bytes"], label="(ii)")
        ax.plot(d["packet"], d["model_iii_bytes"], label="(iii)")
        ax.set_title(r["middlebox"], fontsize=9)
        ax.set_xlabel("packet")
    axes[0][0].set_ylabel("bytes sent after the packet")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig4-15b.png", dpi=120)
    plt.close(fig)
