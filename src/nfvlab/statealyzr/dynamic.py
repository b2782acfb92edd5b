"""Dynamic soundness check (issue part 5): run a built ground-truth middlebox on generated traffic
under gdb, snapshot every global/static variable when packet processing starts (first call of the
receive function) and when the program exits, and confirm that every variable whose bytes
changed is in StateAlyzr's updateable set — or is reachable (points-to) from an updateable
top-level variable, which is how the dissertation covers state updated only through aliases.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from . import corpus

GDB_SCRIPT = r'''
import gdb, json
syms = json.load(open(SYMS))
snaps = {}
def snap(tag):
    inf = gdb.selected_inferior()
    snaps[tag] = {n: bytes(inf.read_memory(a, s)).hex() for n, (a, s) in syms.items()}
class Recv(gdb.Breakpoint):
    def stop(self):
        if "start" not in snaps:
            snap("start")
        return False
class Exit(gdb.Breakpoint):
    def stop(self):
        snap("end")
        json.dump(snaps, open(OUT, "w"))
        return False
gdb.execute("set pagination off")
gdb.execute("set confirm off")
for r in RECV:
    Recv(r, internal=True)
Exit("exit", internal=True)
gdb.execute("run")
'''


def make_pcap(path: Path, n: int = 300, seed: int = 7) -> Path:
    """An Ethernet/IPv4 pcap with TCP (SYNs and data), UDP and ICMP from a handful of hosts."""
    rnd = random.Random(seed)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    hosts = [bytes([10, 0, 0, i]) for i in range(1, 9)]
    for i in range(n):
        src, dst = rnd.choice(hosts), rnd.choice(hosts)
        proto = rnd.choice([6, 6, 6, 17, 1])
        payload = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 64)))
        if proto == 6:
            flags = rnd.choice([0x02, 0x02, 0x12, 0x10, 0x18, 0x11])
            l4 = struct.pack("!HHIIBBHHH", rnd.choice([1234, 2345, 80]), rnd.choice([80, 443, 22]),
                             rnd.randrange(2**32), 0, 5 << 4, flags, 1024, 0, 0) + payload
        elif proto == 17:
            l4 = struct.pack("!HHHH", rnd.randrange(1024, 65535), 53, 8 + len(payload), 0) + payload
        else:
            l4 = struct.pack("!BBHHH", 8, 0, 0, 1, i & 0xFFFF) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), i & 0xFFFF, 0, 64, proto, 0, src, dst) + l4
        frame = b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb" + b"\x08\x00" + ip
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def _wait_udp_bound(port: int, timeout: float) -> bool:
    """Wait until something listens on UDP 127.0.0.1:port (the middlebox under gdb is slow to start)."""
    hexport = f":{port:04X} "
    t_end = time.time() + timeout
    while time.time() < t_end:
        try:
            if hexport in Path("/proc/net/udp").read_text():
                return True
        except OSError:
            return False
        time.sleep(0.1)
    return False


def _data_symbols(binary: Path) -> dict[str, tuple[int, int]]:
    r = subprocess.run(["nm", "-S", "--defined-only", str(binary)], capture_output=True, text=True, check=True)
    out = {}
    for ln in r.stdout.splitlines():
        p = ln.split()
        if len(p) == 4 and p[2] in "bBdD" and not p[3].startswith(("_", "completed.")):
            out[p[3]] = (int(p[0], 16), int(p[1], 16))
    return out


def dynamic_check(name: str, workdir: Path, n_packets: int = 257) -> dict:
    gt = corpus.load_ground_truth(name)
    workdir = Path(workdir) / name
    workdir.mkdir(parents=True, exist_ok=True)
    if not shutil.which("gdb"):
        return {"middlebox": name, "skipped": "gdb not installed"}
    res = corpus.analyze_ground_truth(gt)
    binary = workdir / name
    cc = shutil.which("clang-14") or "cc"
    libs = gt.run.get("libs", ["-lpcap"])
    subprocess.run([cc, "-g", "-O0", "-no-pie", "-fno-pie", "-w", *gt.flags, *map(str, gt.sources), "-o",
                    str(binary), *libs, "-lpthread"], check=True, capture_output=True)
    syms = _data_symbols(binary)
    (workdir / "syms.json").write_text(json.dumps(syms))
    # the first receive call starts packet processing; a callback-registered loop (pcap_loop,
    # daq_acquire_with_meta...) is stopped at its registration call
    recv = gt.run.get("recv") or ["pcap_next", "pcap_next_ex", "pcap_loop", "pcap_dispatch", "recvfrom", "recv"]
    files = {}
    for fname, text in (gt.run.get("files") or {}).items():
        files[fname] = workdir / f"{fname}.txt"
        files[fname].write_text(text)
    script = workdir / "snap.py"
    out = workdir / "snaps.json"
    out.unlink(missing_ok=True)
    script.write_text(f"SYMS={str(workdir / 'syms.json')!r}\nOUT={str(out)!r}\nRECV={recv!r}\n" + GDB_SCRIPT)
    pcap = make_pcap(workdir / "in.pcap", n_packets)
    port = None
    argv = []
    if gt.run.get("input") == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        argv = [str(port)]
    else:
        argv = [a.format(pcap=pcap, out=workdir / "out.pcap", **files) for a in gt.run.get("argv", ["{pcap}"])]
    cmd = ["gdb", "-q", "-batch", "-nx", "-x", str(script), "--args", str(binary), *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if port is not None:
        _wait_udp_bound(port, 60)
        rnd = random.Random(3)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(n_packets // 3):
                s.sendto(b"d" + bytes(rnd.randrange(256) for _ in range(31)), ("127.0.0.1", port))
                time.sleep(0.002)
            s.sendto(b"!DRAIN", ("127.0.0.1", port))
            t_end = time.time() + 60
            while proc.poll() is None and time.time() < t_end:
                s.sendto(b"!QUIT", ("127.0.0.1", port))
                time.sleep(0.2)
    try:
        log, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        log, _ = proc.communicate()
    if not out.exists():
        return {"middlebox": name, "error": "no snapshots", "gdb_log": log[-2000:]}
    snaps = json.loads(out.read_text())
    if "start" not in snaps or "end" not in snaps:
        return {"middlebox": name, "error": "receive or exit breakpoint not hit", "gdb_log": log[-2000:]}
    rep = _compare(name, syms, snaps, res.to_json()["variables"], n_packets)
    rep["updateable"] = sorted(v.key for v in res.variables if "updateable" in v.classes)
    return rep


def _run_under_gdb(binary: Path, argv: list[str], syms: dict, workdir: Path, recv: list[str],
                   cwd: Path | None = None, timeout: int = 300) -> tuple[dict | None, str]:
    (workdir / "syms.json").write_text(json.dumps(syms))
    script = workdir / "snap.py"
    out = workdir / "snaps.json"
    out.unlink(missing_ok=True)
    script.write_text(f"SYMS={str(workdir / 'syms.json')!r}\nOUT={str(out)!r}\nRECV={recv!r}\n" + GDB_SCRIPT)
    cmd = ["gdb", "-q", "-batch", "-nx", "-x", str(script), "--args", str(binary), *argv]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    log = p.stdout + p.stderr
    return (json.loads(out.read_text()) if out.exists() else None), log


def dynamic_check_recipe(name: str, result_json: Path, workdir: Path, n_packets: int = 257) -> dict:
    """The same check on a real middlebox: rebuild its units at -O0 -g -no-pie from the recorded
    compile commands, run it on a generated pcap under gdb, compare with the analysis JSON."""
    r = corpus.load_recipe(name)
    dyn = getattr(r, "dynamic", None) or {}
    if not dyn:
        return {"middlebox": name, "skipped": "recipe has no dynamic: section"}
    workdir = Path(workdir).resolve()
    tree = corpus.fetch(r, workdir)
    entries = json.loads((tree / "compile_commands.json").read_text())
    wd = workdir / f"{name}-dynamic"
    wd.mkdir(parents=True, exist_ok=True)
    binary, err = build_recipe_binary(entries, wd, wd / name, dyn.get("libs", []))
    if err:
        return {"middlebox": name, "error": "link failed", "log": err}
    pcap = make_pcap(wd / "in.pcap", n_packets)
    argv = [a.format(pcap=pcap, tree=tree, out=wd / "out") for a in dyn.get("argv", ["{pcap}"])]
    syms = _data_symbols(binary)
    snaps, log = _run_under_gdb(binary, argv, syms, wd, dyn.get("recv", ["pcap_dispatch", "pcap_loop"]),
                                cwd=tree)
    if snaps is None or "start" not in snaps or "end" not in snaps:
        return {"middlebox": name, "error": "no snapshots", "gdb_log": log[-2000:]}
    res = json.loads(Path(result_json).read_text())
    return _compare(name, syms, snaps, res["variables"], n_packets)


def _remap(entry: dict, src: Path, dst: Path) -> dict:
    """A compile command of the tree at src, pointed at its copy at dst."""
    a, b = str(src), str(dst)
    e = dict(entry, directory=entry["directory"].replace(a, b), file=entry["file"].replace(a, b))
    if "arguments" in e:
        e["arguments"] = [x.replace(a, b) for x in e["arguments"]]
    if "command" in e:
        e["command"] = e["command"].replace(a, b)
    return e


def build_recipe_binary(entries: list[dict], wd: Path, binary: Path, libs: list[str], opt: str = "-O0",
                        remap: tuple[Path, Path] | None = None) -> tuple[Path, str]:
    """Every C unit of a recorded build (the analysis may model some, e.g. missing/) recompiled
    with clang-14 -g -fno-pie at `opt` and linked -no-pie; remap=(tree, copy) builds a patched
    copy of the tree with the same commands. Returns (binary, link error or "")."""
    from .build import CLANG, _ir_command
    objs, seen = [], set()
    for e in entries:
        if remap:
            e = _remap(e, *remap)
        src = str(Path(e["directory"], e["file"]).resolve())
        if not src.endswith(".c") or src in seen:
            continue
        seen.add(src)
        o = wd / (Path(src).stem + f"-{len(objs)}{opt}.o")
        cmd, cwd = _ir_command(dict(e, file=src), o)
        # the IR flags minus what makes IR or pins -O0 (the last -O wins: ours goes last)
        cmd = cmd[1:]
        i = cmd.index("-disable-O0-optnone")
        del cmd[i - 1:i + 1]                                   # with its -Xclang
        cmd = [c for c in cmd if c not in ("-S", "-emit-llvm", "-O0")]
        cmd = [CLANG, "-g", "-fno-pie", "-w", *cmd, opt]
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        objs.append(o)
    p = subprocess.run([CLANG, "-no-pie", *map(str, objs), "-o", str(binary), *libs],
                       capture_output=True, text=True)
    return binary, (p.stderr[-2000:] if p.returncode != 0 else "")


def _compare(name, syms, snaps, variables, n_packets) -> dict:
    changed = sorted(n for n in syms if snaps["start"].get(n) != snaps["end"].get(n))
    by_name: dict[str, list] = {}
    by_static: dict[tuple[str, str], list] = {}
    for v in variables:
        if v["kind"] == "global":
            by_name.setdefault(v["name"], []).append(v)
        elif v["kind"] == "static":
            by_static.setdefault((v["function"], v["name"]), []).append(v)
            by_name.setdefault(v["name"], []).append(v)
    upd = {v["key"] for v in variables if "updateable" in v["classes"]}
    missed, covered, unknown = [], {}, []
    for sym in changed:
        cands = by_name.get(sym, [])
        if not cands and "." in sym:
            a, b = sym.split(".", 1)
            b = b.split(".")[0]
            # clang names a function static "<function>.<var>", gcc "<var>.<n>"
            cands = by_static.get((a, b), []) or by_name.get(a, [])
        if not cands:
            unknown.append(sym)   # not a program variable (libc/crt data)
            continue
        if any(c["key"] in upd for c in cands):
            covered[sym] = "updateable"
            continue
        src = next((c["evidence"]["reached_from"] for c in cands if c["evidence"].get("reached_from")), None)
        conc = next((c["evidence"]["concurrent_only"] for c in cands if c["evidence"].get("concurrent_only")), None)
        if src:
            covered[sym] = f"reachable from updateable {src}"
        elif conc:
            covered[sym] = f"concurrent only: {conc}"
        elif any(c["evidence"].get("scratch") for c in cands):
            covered[sym] = "per-packet scratch (fully written before every read in each packet)"
        else:
            missed.append(sym)
    return {"middlebox": name, "packets": n_packets, "globals_tracked": len(syms), "changed": changed,
            "covered": covered, "missed": missed, "not_program_variables": unknown, "sound": not missed}


if __name__ == "__main__":
    for n in sys.argv[1:] or corpus.ground_truths():
        print(json.dumps(dynamic_check(n, Path("results/statealyzr-dynamic")), indent=1))
