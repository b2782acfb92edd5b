"""Kernel Iron, end to end, inside a guest on the `iron` kernel (run as root in the VM).

    python -m nfvlab.kernel.vm.iron_smoke [--seconds 3] [--quota-pct 20] [--no-iron] [--exit-wait 120]

A UDP receiver in its own network namespace and cgroup (cpu.max at --quota-pct of a core,
cpu.iron = 1, or 0 with --no-iron: the control, same kernel) is flooded over a veth pair from a
second namespace; the receiver's veth has GRO on, so it has a NAPI instance of its own (the hardware
drop's queue). Prints one JSON object: the receiver's cpu.iron.stat before and after, packets
sent/received, and cpu.stat's throttling. Every namespace, link and cgroup made here is named
nfvlab-kv-* and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CG = Path("/sys/fs/cgroup")
NS_TX, NS_RX = "nfvlab-kv-tx", "nfvlab-kv-rx"
ADDR_TX, ADDR_RX = "198.18.80.1", "198.18.80.2"
PORT = 9000


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def stat(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(" ")
        out[k] = int(v)
    return out


def setup(cgroup: Path, quota_pct: int, iron: bool = True) -> None:
    sh("ip", "netns", "add", NS_TX)
    sh("ip", "netns", "add", NS_RX)
    sh("ip", "link", "add", "nfvlab-kv-a", "netns", NS_TX, "type", "veth", "peer", "name", "nfvlab-kv-b",
       "netns", NS_RX)
    for ns, dev, addr in ((NS_TX, "nfvlab-kv-a", ADDR_TX), (NS_RX, "nfvlab-kv-b", ADDR_RX)):
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "netns", "exec", NS_RX, "ethtool", "-K", "nfvlab-kv-b", "gro", "on")
    (CG / "cgroup.subtree_control").write_text("+cpu")
    cgroup.mkdir()
    (cgroup / "cpu.max").write_text(f"{quota_pct * 1000} 100000")
    (cgroup / "cpu.iron").write_text("1" if iron else "0")


def teardown(cgroup: Path, procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    if cgroup.exists():
        (cgroup / "cpu.iron").write_text("0")
        cgroup.rmdir()
    sh("ip", "netns", "del", NS_TX, check=False)
    sh("ip", "netns", "del", NS_RX, check=False)


RECEIVER = f"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind(("{ADDR_RX}", {PORT}))
s.settimeout(2.0)
n = 0
print("ready", flush=True)
try:
    while True:
        s.recv(2048)
        n += 1
except socket.timeout:
    pass
print(n, flush=True)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--quota-pct", type=int, default=20)
    ap.add_argument("--no-iron", dest="iron", action="store_false", help="cpu.iron = 0: the control run")
    # Under TCG on a loaded host a 20 %-quota receiver needs long to exit (its vCPU gets host slices
    # the guest counts as its runtime, so it is throttled most periods): 10 s was too short once.
    ap.add_argument("--exit-wait", type=float, default=120.0, help="seconds to wait for the receiver to exit")
    args = ap.parse_args(argv)
    cgroup = CG / "nfvlab-kv-rx"
    procs: list[subprocess.Popen] = []
    try:
        setup(cgroup, args.quota_pct, args.iron)
        # the receiver joins the cgroup before it exec's python: all its time is the container's
        rx = subprocess.Popen(["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs && exec taskset -c 1 "
                               f"ip netns exec {NS_RX} {sys.executable} -c '{RECEIVER}'"],
                              stdout=subprocess.PIPE, text=True)
        procs.append(rx)
        assert rx.stdout is not None and rx.stdout.readline().strip() == "ready"
        before = stat(cgroup / "cpu.iron.stat")
        cpu_before = stat(cgroup / "cpu.stat")
        flood = (f"import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                 f"end=time.monotonic()+{args.seconds}\nn=0\nb=bytes(64)\n"
                 f"while time.monotonic()<end:\n"
                 f"    s.sendto(b,('{ADDR_RX}',{PORT}))\n    n+=1\nprint(n)\n")
        tx = subprocess.run(["taskset", "-c", "0", "ip", "netns", "exec", NS_TX, sys.executable, "-c", flood],
                            capture_output=True, text=True, check=True)
        received = int(rx.stdout.readline().strip() or 0)
        rx.wait(args.exit_wait)
        after = stat(cgroup / "cpu.iron.stat")
        cpu_after = stat(cgroup / "cpu.stat")
        print(json.dumps({
            "kernel": os.uname().release, "iron": args.iron, "quota_pct": args.quota_pct, "seconds": args.seconds,
            "sent": int(tx.stdout.strip()), "received": received,
            "iron_before": before, "iron_after": after,
            "delta": {k: after[k] - before.get(k, 0) for k in after},
            "nr_throttled": cpu_after.get("nr_throttled", 0) - cpu_before.get("nr_throttled", 0),
            "usage_usec": cpu_after.get("usage_usec", 0) - cpu_before.get("usage_usec", 0),
        }))
        return 0
    finally:
        time.sleep(0.2)
        teardown(cgroup, procs)


if __name__ == "__main__":
    sys.exit(main())
