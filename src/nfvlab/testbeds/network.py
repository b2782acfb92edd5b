"""Network plumbing for the local testbed, over netlink (pyroute2): namespaces, veth pairs, a bridge,
RPS steering and HTB rate limiting. Every object is journaled before it is created."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pyroute2 import IPRoute, NetNS, netns

from nfvlab import state


class NetworkError(RuntimeError):
    pass


def netns_exists(name: str) -> bool:
    return name in netns.listnetns()


def create_netns(name: str) -> None:
    if netns_exists(name):
        raise NetworkError(f"network namespace {name} already exists (another run, or a crash: nfvlab clean)")
    state.record("netns", name=name)
    netns.create(name)
    with NetNS(name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def delete_netns(name: str) -> bool:
    if not netns_exists(name):
        return False
    netns.remove(name)
    return True


def create_bridge(name: str) -> None:
    state.record("link", name=name)
    with IPRoute() as ip:
        if ip.link_lookup(ifname=name):
            raise NetworkError(f"link {name} already exists (another run, or a crash: nfvlab clean)")
        ip.link("add", ifname=name, kind="bridge")
        ip.link("set", index=ip.link_lookup(ifname=name)[0], state="up")


def delete_link(name: str) -> bool:
    with IPRoute() as ip:
        idx = ip.link_lookup(ifname=name)
        if not idx:
            return False
        ip.link("del", index=idx[0])
        return True


def list_links(prefix: str) -> list[str]:
    with IPRoute() as ip:
        return [n for link in ip.get_links() if (n := link.get_attr("IFLA_IFNAME", "")).startswith(prefix)]


def plug(ns_name: str, host_ifname: str, ns_ifname: str, bridge: str, address: str, prefixlen: int) -> None:
    """A veth pair: host end on the bridge, the other end moved into ns_name, renamed and addressed."""
    tmp = f"{host_ifname[:13]}-n"  # temporary name of the namespace end while still in the root ns
    state.record("link", name=host_ifname)
    with IPRoute() as ip:
        ip.link("add", ifname=host_ifname, kind="veth", peer={"ifname": tmp})
        host = ip.link_lookup(ifname=host_ifname)[0]
        br = ip.link_lookup(ifname=bridge)[0]
        ip.link("set", index=host, master=br, state="up")
        ip.link("set", index=ip.link_lookup(ifname=tmp)[0], net_ns_fd=ns_name)
    with NetNS(ns_name) as ns:
        idx = ns.link_lookup(ifname=tmp)[0]
        ns.link("set", index=idx, ifname=ns_ifname)
        ns.addr("add", index=idx, address=address, prefixlen=prefixlen)
        ns.link("set", index=idx, state="up")


def netns_exec(ns_name: str, argv: list[str]) -> list[str]:
    """argv run inside a namespace (ip netns exec also remounts /sys for the namespace)."""
    return ["ip", "netns", "exec", ns_name, *argv]


def set_rps(ns_name: str | None, ifname: str, cpus: list[int]) -> None:
    """Steer the receive softirq work of ifname's queue to the given CPUs (Receive Packet Steering).
    ns_name None is the root namespace."""
    mask = format(sum(1 << c for c in cpus), "x")
    path = Path("/sys/class/net") / ifname / "queues/rx-0/rps_cpus"
    argv = ["sh", "-c", f"echo {mask} > {path}"]
    out = subprocess.run(argv if ns_name is None else netns_exec(ns_name, argv), capture_output=True, text=True)
    if out.returncode != 0:
        raise NetworkError(f"cannot set RPS on {ns_name}/{ifname}: {out.stderr.strip()}")


def _ip_hex(address: str) -> str:
    return "0x" + "".join(f"{int(o):02x}" for o in address.split("."))


def _kbit(mbps: float) -> str:
    return f"{max(1, round(mbps * 1000))}kbit"  # tc rates take integers; 1000/3 Mbit/s is not one


def add_htb(ifname: str, core_rate_mbps: float, classes: dict[str, float]) -> None:
    """HTB on ifname's egress: one parent class at the core's rate and one class per source address
    (rate = ceil = its share), matched by u32 on the IPv4 source address. Unmatched traffic is not
    shaped (default class 0 = direct)."""
    with IPRoute() as ip:
        idx = ip.link_lookup(ifname=ifname)[0]
        ip.tc("add", "htb", index=idx, handle="1:", default=0)
        rate = _kbit(core_rate_mbps)
        ip.tc("add-class", "htb", index=idx, handle="1:1", parent="1:", rate=rate, ceil=rate)
        for minor, (src, mbps) in enumerate(classes.items(), start=0x10):
            share = _kbit(mbps)
            handle = f"1:{minor:x}"
            ip.tc("add-class", "htb", index=idx, handle=handle, parent="1:1", rate=share, ceil=share)
            ip.tc("add-filter", "u32", index=idx, parent="1:", prio=1, protocol=0x0800, target=handle,
                  keys=[f"{_ip_hex(src)}/0xffffffff+12"])


def qdisc_stats(ifname: str) -> dict[str, int]:
    """Root qdisc counters of ifname (sent packets, drops, overlimits), for the results."""
    with IPRoute() as ip:
        idx = ip.link_lookup(ifname=ifname)
        if not idx:
            return {}
        for q in ip.get_qdiscs(index=idx[0]):
            if q["parent"] == 0xFFFFFFFF:
                st = q.get_attr("TCA_STATS2")
                basic = st.get_attr("TCA_STATS_BASIC") if st else None
                queue = st.get_attr("TCA_STATS_QUEUE") if st else None
                return {
                    "qdisc_packets": basic["packets"] if basic else 0,
                    "qdisc_drops": queue["drops"] if queue else 0,
                    "qdisc_overlimits": queue["overlimits"] if queue else 0,
                }
    return {}
