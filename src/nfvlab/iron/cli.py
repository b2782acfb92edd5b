"""``nfvlab iron ...`` subcommands (also ``python -m nfvlab.iron.cli status``).

``status``: the Iron programs the kernel has loaded, the pinned instances under /sys/fs/bpf/nfvlab,
and for each running instance its per-container charges, credits, packets and drops, live.
``unload``: detach and unpin everything (what ``nfvlab clean`` does for Iron).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .bpf import META_ROOT, PIN_ROOT, MapReader

PROG_PREFIX = "iron_"


def loaded_programs() -> list[dict]:
    bpftool = shutil.which("bpftool") or shutil.which("bpftool", path="/usr/sbin:/sbin")
    if not bpftool:
        return []
    res = subprocess.run([bpftool, "-j", "prog", "show"], capture_output=True, text=True)
    if res.returncode != 0:
        return []
    return [p for p in json.loads(res.stdout or "[]") if str(p.get("name", "")).startswith(PROG_PREFIX)]


def instances() -> list[dict]:
    out = []
    for f in sorted(META_ROOT.glob("*.json")) if META_ROOT.is_dir() else []:
        try:
            meta = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        meta["alive"] = Path(f"/proc/{meta.get('pid', -1)}").exists()
        out.append(meta)
    return out


def _fmt_ms(ns: float) -> str:
    return f"{ns / 1e6:9.1f}"


def cmd_status(args: argparse.Namespace) -> int:
    progs = loaded_programs()
    print(f"Iron programs loaded: {len(progs)}")
    for p in progs:
        print(f"  id {p.get('id'):>6}  {p.get('type', ''):<14} {p.get('name')}")
    pins = sorted(p.name for p in PIN_ROOT.iterdir()) if PIN_ROOT.is_dir() else []
    print(f"pinned instances under {PIN_ROOT}: {', '.join(pins) or 'none'}")
    insts = instances()
    if not insts:
        print("no running IronRuntime")
        return 0
    for meta in insts:
        pin_dir = Path(meta["pin_dir"])
        print(f"\n{pin_dir.name}: pid {meta['pid']} ({'alive' if meta['alive'] else 'DEAD - run nfvlab clean'})"
              f", drop={meta.get('drop')} attribution={meta.get('attribution')}"
              f" pre_throttle={meta.get('pre_throttle_pct')}% control={meta.get('control_period_ms')}ms"
              f" cpus={meta.get('cpus')}")
        if not pin_dir.exists():
            continue
        try:
            reader = MapReader.from_pins(pin_dir)
        except OSError as e:
            print(f"  cannot open maps: {e}")
            continue
        try:
            print(f"  {'container':<16}{'charged ms':>11}{'gained ms':>10}{'own ms':>10}{'run ms':>10}"
                  f"{'rx pkts':>11}{'ns/pkt':>8}{'drops':>10}  budget used/thresh ms")
            for s in meta.get("slots", []):
                st = reader.stats(s["slot"])
                bc, bu = reader.budget(s["slot"])
                per = st["rx_cost_ns"] / st["rx_pkts"] if st["rx_pkts"] else 0.0
                print(f"  {s['name']:<16}{_fmt_ms(st['charged_ns']):>11}{_fmt_ms(st['gained_ns']):>10}"
                      f"{_fmt_ms(st['own_ns']):>10}{_fmt_ms(st['run_ns']):>10}{st['rx_pkts']:>11}{per:>8.0f}"
                      f"{st['drops']:>10}  {bu.used_ns / 1e6:.1f}/{bc.thresh_ns / 1e6:.1f}"
                      f"{' FORCE' if bc.force else ''}")
        finally:
            reader.close()
    return 0


def cmd_unload(args: argparse.Namespace) -> int:
    from .cleanup import unload_all

    removed = unload_all(force=args.force)
    print(f"removed {len(removed)} pins/files")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``iron`` (with ``status`` and ``unload``) to the main CLI's subparsers."""
    p = subparsers.add_parser("iron", help="Iron's eBPF accounting/drop: status, unload")
    sub = p.add_subparsers(dest="iron_cmd", required=True)
    s = sub.add_parser("status", help="loaded Iron programs and live per-container charges")
    s.add_argument("--watch", type=float, default=0.0, help="refresh every N seconds")
    s.set_defaults(func=_status_maybe_watch)
    u = sub.add_parser("unload", help="detach and unpin every Iron program/link/map of dead runs")
    u.add_argument("--force", action="store_true", help="also those of running processes")
    u.set_defaults(func=cmd_unload)
    return p


def _status_maybe_watch(args: argparse.Namespace) -> int:
    if not getattr(args, "watch", 0):
        return cmd_status(args)
    try:
        while True:
            os.system("clear")
            cmd_status(args)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nfvlab")
    subs = ap.add_subparsers(dest="cmd", required=True)
    register(subs)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "iron":
        argv = ["iron", *argv]
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
