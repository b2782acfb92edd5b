"""Per-packet receive costs (Table 2.15) and the accounting programs' own overhead.

    python -m nfvlab.iron.costs [--secs 2] [--json out.json]

On a local testbed of its own names (prefix ``nfvlab-tk``, 198.18.100.0/24, under the testbed's lock; one
receiver container, unlimited CPU, RPS to CPU 1, peer on CPU 0):

* cost: ``rx_cost_ns`` (bracketed netif_receive_skb cost + fixed-overhead share) divided by the
  datagrams that reached the container's ``eth0`` (so a GRE packet, which passes netif_receive_skb
  twice, is one packet), for UDP 1400 B, TCP (peer TSO/GSO off: MTU-size segments, ACKs included as in
  the paper) and UDP in GRE (VXLAN where the kernel lacks GRE, as on this machine);
* overhead: with ``kernel.bpf_stats_enabled`` the kernel times every BPF program run; the sum over
  Iron's programs divided by the packets is the accounting cost per packet;
* receive rate: the receiver's packets/s flooded without Iron and with Iron loaded (drop off).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from nfvlab.testbeds.local import LocalTestbed

from .bench import flood_tools
from .build import default_build_dir
from .runtime import IronRuntime

GRE_PEER, GRE_CT = "198.18.100.201", "198.18.100.202"  # inner addresses (a /30 inside the testbed's /24)
PREFIX, SUBNET = "nfvlab-tk", "198.18.100.0/24"


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True)


def eth0_rx_packets(netns: str) -> int:
    out = sh(f"ip -n {netns} -j -s link show eth0").stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def setup_tunnel(fx: LocalTestbed) -> str:
    """GRE if the kernel has it, else VXLAN (this machine's kernel has no CONFIG_NET_IPGRE)."""
    topo = fx.topology
    assert topo is not None
    c, p = topo.containers[0], topo.peer
    kind = "gre"
    if sh(f"ip -n {p.netns} link add tun1 type gre local {p.ip} remote {c.ip} ttl 64", check=False).returncode:
        kind = "vxlan"
        sh(f"ip -n {p.netns} link add tun1 type vxlan id 42 local {p.ip} remote {c.ip} dstport 4789 dev eth0")
        sh(f"ip -n {c.netns} link add tun1 type vxlan id 42 local {c.ip} remote {p.ip} dstport 4789 dev eth0")
    else:
        sh(f"ip -n {c.netns} link add tun1 type gre local {c.ip} remote {p.ip} ttl 64")
    for ns, mine in ((p.netns, GRE_PEER), (c.netns, GRE_CT)):
        sh(f"ip -n {ns} addr add {mine}/30 dev tun1 && ip -n {ns} link set tun1 up")
    return kind


def bpf_prog_stats() -> dict[str, tuple[int, int]]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout
    res = {}
    for p in json.loads(out or "[]"):
        if str(p.get("name", "")).startswith("iron_"):
            res[p["name"]] = (int(p.get("run_time_ns", 0)), int(p.get("run_cnt", 0)))
    return res


def run_flow(fx: LocalTestbed, kind: str, secs: float, iron: bool, tools) -> dict:
    topo = fx.topology
    assert topo is not None
    c = topo.containers[0]
    rx_argv, tx_argv = tools
    proto = "tcp" if kind == "tcp" else "udp"
    dst = GRE_CT if kind == "gre" else c.ip
    rx_argv = [a if a != "udp" else proto for a in rx_argv]
    tx_argv = [dst if a == "0.0.0.0" else (proto if a == "udp" else a) for a in tx_argv]
    if proto == "tcp":
        tx_argv = [a for a in tx_argv]
        if "--batch" in tx_argv:
            i = tx_argv.index("--batch")
            del tx_argv[i:i + 2]
    res: dict = {"kind": kind, "iron": iron}
    recv = fx.run_in(c, rx_argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.3)
    rt = IronRuntime(topo, drop="none") if iron else None
    if rt:
        rt.__enter__()
    try:
        st0 = bpf_prog_stats() if rt else {}
        n0 = eth0_rx_packets(c.netns)
        snd = fx.run_peer(tx_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(secs)
        fx.stop(snd)
        time.sleep(0.2)
        n1 = eth0_rx_packets(c.netns)
        st1 = bpf_prog_stats() if rt else {}
        if rt:
            s = rt.stats()
            res["rx_cost_ns"] = s[f"{c.name}.rx_cost_ns"]
            res["ovh_ns"] = s[f"{c.name}.ovh_ns"]
            res["rx_events"] = s[f"{c.name}.rx_packets"]
    finally:
        if rt:
            rt.__exit__(None, None, None)
        fx.stop(recv)
    out, _ = recv.communicate(timeout=5) if recv.stdout and not recv.stdout.closed else ("", "")
    res["eth0_packets"] = n1 - n0
    res["rx_pps"] = (n1 - n0) / secs
    if rt:
        res["cost_per_packet_ns"] = res["rx_cost_ns"] / max(1, res["eth0_packets"])
        bpf_ns = sum(st1[k][0] - st0.get(k, (0, 0))[0] for k in st1)
        bpf_runs = sum(st1[k][1] - st0.get(k, (0, 0))[1] for k in st1)
        res["bpf_ns_per_packet"] = bpf_ns / max(1, res["eth0_packets"])
        res["bpf_runs_per_packet"] = bpf_runs / max(1, res["eth0_packets"])
        res["bpf_ns_per_run"] = bpf_ns / max(1, bpf_runs)
        res["bpf_per_prog"] = {k: {"runs_per_pkt": (st1[k][1] - st0.get(k, (0, 0))[1]) / max(1, res["eth0_packets"]),
                                   "ns_per_run": (st1[k][0] - st0.get(k, (0, 0))[0])
                                   / max(1, st1[k][1] - st0.get(k, (0, 0))[1])} for k in st1}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--secs", type=float, default=2.0)
    ap.add_argument("--kinds", default="udp,tcp,gre")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    tools = flood_tools(default_build_dir().parent / "nfvflood")
    if tools is None:
        print("needs nfvflood", file=sys.stderr)
        return 1
    fx = LocalTestbed(prefix=PREFIX, subnet=SUBNET, wait_s=600)
    stats_flag = Path("/proc/sys/kernel/bpf_stats_enabled")
    old_flag = stats_flag.read_text().strip()
    results = []
    tunnel = "?"
    try:
        topo = fx.up(["receiver"])
        for c in topo.containers:  # unlimited: the receiver is not the subject here
            (c.cgroup.cpu / "cpu.cfs_quota_us").write_text("-1")
        fx.topology.containers[:] = topo.containers
        sh(f"ip netns exec {topo.peer.netns} ethtool -K eth0 tso off gso off gro off", check=False)
        tunnel = setup_tunnel(fx)
        print(f"tunnel kind for 'gre': {tunnel}")
        for rep in range(a.reps):
            for kind in a.kinds.split(","):
                # rate without Iron, with Iron (kernel BPF stats off: the real cost), then with stats on
                for iron, stats in ((False, False), (True, False), (True, True)):
                    stats_flag.write_text("1" if stats else "0")
                    r = run_flow(fx, kind, a.secs, iron, tools)
                    r["bpf_stats"] = stats
                    r["rep"] = rep
                    results.append(r)
                    line = f"rep {rep} {kind:4s} iron={int(iron)} stats={int(stats)} rx {r['rx_pps'] / 1e3:7.1f} kpps"
                    if iron:
                        line += (f"  cost {r['cost_per_packet_ns']:6.0f} ns/pkt (ovh share "
                                 f"{r['ovh_ns'] / max(1, r['eth0_packets']):4.0f})")
                    if iron and stats:
                        line += (f"  bpf {r['bpf_ns_per_packet']:5.0f} ns/pkt ({r['bpf_runs_per_packet']:.1f} runs"
                                 f" x {r['bpf_ns_per_run']:.0f} ns)")
                    print(line, flush=True)
        print("medians:")
        for kind in a.kinds.split(","):
            def med(key, iron, stats, kind=kind):
                v = [r[key] for r in results if r["kind"] == kind and r["iron"] == iron and r["bpf_stats"] == stats
                     and key in r]
                return statistics.median(v) if v else float("nan")
            print(f"  {kind:4s} cost {med('cost_per_packet_ns', True, False):6.0f} ns/pkt  rx kpps without "
                  f"{med('rx_pps', False, False) / 1e3:6.1f} with {med('rx_pps', True, False) / 1e3:6.1f}  "
                  f"bpf {med('bpf_ns_per_packet', True, True):5.0f} ns/pkt")
    finally:
        stats_flag.write_text(old_flag)
        fx.down()
    if a.json:
        a.json.write_text(json.dumps({"tunnel": tunnel, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
