"""The state-transfer experiment (dissertation §4.5, §4.6.2, Fig 4.15/4.16), on ground-truth
middleboxes: a primary and a hot standby; after each packet the primary sends state to the
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
the output of one instance on the whole trace. This import is done for model (i) and for the
marked-updated variables sent whole ("marked": the last copy of every variable ever marked); the
flowspace-filtered models (ii)/(iii) are measured in bytes only (a standby merging per-flow
deltas is not built). A control standby that gets no state must produce a different output. The
instrumentation's per-packet cost is the run time of the instrumented build minus the plain one
(both -O2).
"""

from __future__ import annotations

import json
import shutil
import statistics
import struct
import subprocess
import time
from pathlib import Path

from . import corpus
from .dynamic import _data_symbols, make_pcap
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


def _gdb(cfg: dict, path: Path, timeout: int = 300) -> str:
    path.write_text(json.dumps(cfg))
    cmd = ["gdb", "-q", "-batch", "-nx", "-ex", f"python CFG={str(path)!r}", "-x", str(AGENT), cfg["binary"]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.stdout + p.stderr


def prepare(name: str, wd: Path) -> dict:
    gt = corpus.load_ground_truth(name)
    res = corpus.analyze_ground_truth(gt)
    plan = res.instrumentation
    make_patch(plan, wd / "instr", root=corpus.GT_DIR)
    isrcs = [wd / "instr" / s.name if (wd / "instr" / s.name).exists() else s for s in gt.sources]
    libs = gt.run.get("libs", ["-lpcap"])
    binary = _build(isrcs, wd / f"{name}-instr", gt.flags, libs)
    by = {v.key: v for v in res.variables}
    # what a standby needs: updateable globals and statics (locals of the loop procedure are
    # re-filled by the standby's own receive loop); gdb names function statics fn::var
    sym_of = {}
    for k in plan["bits"]:
        v = by[k]
        if v.kind == "global" or (v.kind == "static" and not v.function):
            sym_of[k] = v.name
        elif v.kind == "static":
            sym_of[k] = f"{v.function}::{v.name}"
    syms = _data_symbols(binary)
    lo = min(a for a, _ in syms.values())
    hi = max(a + s for a, s in syms.values())
    return {"gt": gt, "res": res, "plan": plan, "binary": binary, "sym_of": sym_of,
            "entries": sorted(res.stats["packet_entries"]), "globals": (lo, hi), "isrcs": isrcs,
            "libs": libs}


def _args(gt, pcap: Path, wd: Path) -> str:
    files = {}
    for fname, text in (gt.run.get("files") or {}).items():
        files[fname] = wd / f"{fname}.txt"
        files[fname].write_text(text)
    argv = [a.format(pcap=pcap, out=wd / "out.pcap", **files) for a in gt.run.get("argv", ["{pcap}"])]
    return " ".join(argv)


TRANSFER_GT = ["hostcount", "conntrack", "hostflow", "wrapcount", "copykey"]


def run_transfer(name: str, workdir: Path, n_packets: int = 300, switch_points=(0.25, 0.5, 0.75),
                 cost_packets: int = 100000, cost_reps: int = 9) -> dict:
    wd = Path(workdir) / name
    shutil.rmtree(wd, ignore_errors=True)
    wd.mkdir(parents=True)
    pr = prepare(name, wd)
    gt = pr["gt"]
    pcap = make_pcap(wd / "trace.pcap", n_packets)
    single_out, single_err = wd / "single.out", wd / "single.err"
    with single_out.open("w") as o, single_err.open("w") as e:
        subprocess.run(f"{pr['binary']} {_args(gt, pcap, wd)}", shell=True, stdout=o, stderr=e, check=False,
                       timeout=120)
    by = {v.key: v for v in pr["res"].variables}
    keyed = {sym: by[k].flowspace for k, sym in pr["sym_of"].items() if by[k].flowspace}
    base = {"binary": str(pr["binary"]), "entries": pr["entries"], "bits": pr["plan"]["bits"],
            "keyed": keyed, "packet_fields": packet_fields(pcap),
            "sym_of": pr["sym_of"], "model_i": sorted(pr["sym_of"].values()),
            "globals_lo": pr["globals"][0], "globals_hi": pr["globals"][1]}
    checks, rows = [], None
    for frac in switch_points:
        k = max(1, int(n_packets * frac))
        d = wd / f"k{k}"
        d.mkdir()
        cfg = dict(base, mode="primary", switch_at=k, args=_args(gt, pcap, d), stdout=str(d / "primary.out"),
                   stderr=str(d / "primary.err"), rows=str(d / "rows.json"),
                   export_i=str(d / "export_i.json"), export_iii=str(d / "export_marked.json"))
        log = _gdb(cfg, d / "primary.json")
        if not (d / "export_i.json").exists():
            raise RuntimeError(f"{name}: primary did not reach packet {k}:\n{log[-2000:]}")
        tail = split_pcap(pcap, k, d / "tail.pcap")
        (d / "export_none.json").write_text("[]")     # control: a standby that got nothing
        for model in ("i", "marked", "none"):
            sc = dict(base, mode="standby", args=_args(gt, tail, d), stdout=str(d / f"standby_{model}.out"),
                      stderr=str(d / f"standby_{model}.err"), **{"import": str(d / f"export_{model}.json")})
            slog = _gdb(sc, d / f"standby_{model}.json")
            same = all(
                (d / f"primary.{s}").read_text() + (d / f"standby_{model}.{s}").read_text()
                == (wd / f"single.{s}").read_text() for s in ("out", "err"))
            checks.append({"switch_at": k, "model": model, "logs_equal": same,
                           "gdb_tail": "" if same else slog[-800:]})
    # per-packet bytes from a primary that runs the whole trace
    d = wd / "full"
    d.mkdir()
    cfg = dict(base, mode="primary", switch_at=n_packets + 1, args=_args(gt, pcap, d), stdout=str(d / "p.out"),
               stderr=str(d / "p.err"), rows=str(d / "rows.json"), export_i=str(d / "e_i.json"),
               export_iii=str(d / "e_iii.json"))
    _gdb(cfg, d / "primary.json")
    rows = json.loads((d / "rows.json").read_text())
    return {"middlebox": name, "packets": n_packets, "rows": rows, "checks": checks,
            "instrumentation": instrumentation_cost(pr, wd, cost_packets, cost_reps),
            "transferred_variables": sorted(pr["sym_of"])}


def instrumentation_cost(pr: dict, wd: Path, n_packets: int = 100000, reps: int = 9) -> dict:
    """Per-packet cost of the updated-bit settings: -O2 builds with and without them."""
    gt = pr["gt"]
    plain = _build(gt.sources, wd / "plain-O2", gt.flags, pr["libs"], "-O2")
    instr = _build(pr["isrcs"], wd / "instr-O2", gt.flags, pr["libs"], "-O2")
    pcap = make_pcap(wd / "big.pcap", n_packets, seed=11)
    times: dict[str, list[float]] = {"plain": [], "instr": []}
    for _ in range(reps):
        for tag, b in (("plain", plain), ("instr", instr)):
            t0 = time.perf_counter()
            subprocess.run(f"{b} {_args(gt, pcap, wd)}", shell=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120)
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
