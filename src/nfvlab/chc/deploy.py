"""Deploys CHC's physical chain on this machine: every instance (root, NF instances, sink, each
store server) in its own container -- a cgroup pinned to a core plus a network namespace on a
bridge -- built with the same `nfvlab.testbeds` helpers Iron's testbed uses.

    [nfvlab-chc<t>-br bridge, 198.18.4x.1/24 in the root namespace for the harness]
        |-- store 198.18.4x.10   |-- root   |-- nf instances   |-- sink     (in creation order)

Names: namespaces "nfvlab-chc<t>-<role>", links "nfvlab-chc<t>..." (<t> a 2-character tag per
deployment, so two deployments of this helper never collide), cgroups nfvlab/nfvlab-chc-<t>/<role>.
Addresses stay inside 198.18.40.0/21 (a free /24 per deployment). Everything is journaled
(nfvlab clean) and removed on close.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute

from nfvlab.chc import store as chc_store
from nfvlab.testbeds import cgroups, network, processes
from nfvlab.testbeds.model import CgroupPaths, Container
from nfvlab.testbeds.processes import Proc

# Deployments take one /24 of 198.18.40.0/21 (inside the helper's 198.18.32.0/20) that no address
# of the root namespace covers yet, so two deployments at once (tests and an experiment) never share
# a subnet: the harness reaches each deployment's stores through its own bridge address.
SUBNETS = [ipaddress.ip_network(f"198.18.{40 + k}.0/24") for k in range(8)]
HARNESS_HOST = 1  # the bridge's own address: how the harness reaches the store
FIRST_HOST = 10
CFS_PERIOD_US = 100_000
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class DeployError(RuntimeError):
    pass


_TAGS_TAKEN: set[str] = set()


def _tag() -> str:
    """A tag no live deployment uses: the pid picks where to start (two processes rarely start at
    the same place), then the first whose bridge does not exist and that this process has not handed
    out -- one process can hold several deployments at once (a test session's and a module's)."""
    start = os.getpid() % (36 * 36)
    with IPRoute() as ip:
        for k in range(36 * 36):
            n = (start + k) % (36 * 36)
            tag = _ALPHABET[n // 36] + _ALPHABET[n % 36]
            if tag not in _TAGS_TAKEN and not ip.link_lookup(ifname=f"nfvlab-chc{tag}-br"):
                _TAGS_TAKEN.add(tag)
                return tag
    raise DeployError("every deployment tag is in use (nfvlab clean removes leftovers)")


def container_argv(c: Container, argv: list[str]) -> list[str]:
    """argv run inside c: join (and verify) its cgroups first, then exec in its namespace -- the
    testbed's own rule, for servers whose lifetime a RedisServer manages instead of a Proc."""
    join = cgroups.shell_join_and_verify(c.cgroup, processes.JOIN_FAILED_EXIT)
    return ["sh", "-c", f"{join}; exec {shlex.join(network.netns_exec(c.netns, argv))}"]


def _free_subnet(start: int) -> ipaddress.IPv4Network:
    """NFVLAB_CHC_SUBNET (a /24 inside 198.18.0.0/15 given to this checkout) if free, else the first of
    SUBNETS (from `start` on, cyclically) that no root-namespace address lies in."""
    with IPRoute() as ip:
        used = [ipaddress.ip_address(a.get_attr("IFA_ADDRESS")) for a in ip.get_addr(family=socket.AF_INET)]
    preferred = []
    if os.environ.get("NFVLAB_CHC_SUBNET"):
        net = ipaddress.ip_network(os.environ["NFVLAB_CHC_SUBNET"])
        if not ipaddress.ip_network("198.18.0.0/15").supernet_of(net):
            raise DeployError(f"NFVLAB_CHC_SUBNET {net} is outside the benchmarking range 198.18.0.0/15")
        preferred = [net]
    for net in preferred + [SUBNETS[(start + k) % len(SUBNETS)] for k in range(len(SUBNETS))]:
        if not any(u in net for u in used):
            return net
    raise DeployError(f"every deployment subnet {SUBNETS[0]} .. {SUBNETS[-1]} is in use")


def _create_cgroup(run: str, role: str, cpu: int) -> CgroupPaths:
    # The shared nfvlab/ parent can vanish under us when another user of the machine removes its own
    # last cgroup at the same moment: try again (a few times) before giving up.
    for attempt in range(3):
        try:
            return cgroups.create(run, role, cpu, None, CFS_PERIOD_US)
        except FileNotFoundError:
            if attempt == 2:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


@dataclass
class LocalDeployment:
    """Containers for one chain; close() (or the with-block) removes all of them."""

    log_dir: Path
    cpus: list[int] = field(default_factory=lambda: [0, 1])
    tag: str = field(default_factory=_tag)
    containers: dict[str, Container] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    stores: list[chc_store.Store] = field(default_factory=list)
    subnet: ipaddress.IPv4Network = SUBNETS[-1]
    _bridge_up: bool = False

    @property
    def bridge(self) -> str:
        return f"nfvlab-chc{self.tag}-br"  # 15 characters; never a veth name (13)

    @property
    def run(self) -> str:
        return f"nfvlab-chc-{self.tag}"

    def __enter__(self) -> LocalDeployment:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.subnet = _free_subnet(int(self.tag, 36))
        network.create_bridge(self.bridge)
        self._bridge_up = True
        with IPRoute() as ip:
            idx = ip.link_lookup(ifname=self.bridge)[0]
            ip.addr("add", index=idx, address=str(self.subnet.network_address + HARNESS_HOST),
                    prefixlen=self.subnet.prefixlen)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, role: str, cpu: int | None = None) -> Container:
        """A new container for `role` (e.g. "root", "nat1", "sink", "store0")."""
        if role in self.containers:
            raise DeployError(f"container {role} exists already")
        index = len(self.containers)
        if index >= len(_ALPHABET):
            # link names are nfvlab-chc<tag><index>: 13 characters, unique in the 13 that the testbed's
            # plug() keeps for its temporary name, so at most 36 containers per deployment
            raise DeployError(f"at most {len(_ALPHABET)} containers per deployment")
        cpu = self.cpus[index % len(self.cpus)] if cpu is None else cpu
        netns = f"{self.run}-{role}"
        host_if = f"nfvlab-chc{self.tag}{_ALPHABET[index]}"
        address = str(self.subnet.network_address + FIRST_HOST + index)
        cg = _create_cgroup(self.run, role, cpu)
        network.create_netns(netns)
        try:
            network.plug(netns, host_if, "eth0", self.bridge, address, self.subnet.prefixlen)
        except BaseException:
            network.delete_netns(netns)  # not yet in self.containers: close() would miss it
            raise
        c = Container(name=netns, index=index, role=role, netns=netns, host_ifname=host_if, ns_ifname="eth0",
                      ip=address, cpu=cpu, period_us=CFS_PERIOD_US, quota_us=-1, cgroup=cg)
        self.containers[role] = c
        return c

    def start(self, c: Container, name: str, argv: list[str]) -> Proc:
        p = processes.start_in_container(c, name, argv, self.log_dir)
        self.procs.append(p)
        return p

    def start_store(self, n: int = 1, port: int = 16379) -> chc_store.Store:
        """n standalone redis-servers, each in its own container, the Functions library loaded."""
        servers = []
        for i in range(n):
            c = self.add(f"store{len(self.stores)}-{i}")
            srv = chc_store.RedisServer(port, self.log_dir / f"redis-{c.role}", host=c.ip,
                                        launcher=lambda argv, c=c: container_argv(c, argv))
            servers.append(srv)
        store = chc_store.Store("standalone", servers, self.log_dir)
        self.stores.append(store)
        for srv in servers:
            srv.start()
            chc_store.load_functions(srv.client())
        return store

    def close(self) -> None:
        processes.stop_all(self.procs)
        for s in self.stores:
            s.stop()
        for c in self.containers.values():
            network.delete_netns(c.netns)
        for root in cgroups.harness_roots():
            with contextlib.suppress(cgroups.CgroupError):
                cgroups.remove_run(root / self.run)  # and the shared nfvlab/ level once empty
        if self._bridge_up:
            network.delete_link(self.bridge)
            self._bridge_up = False
        _TAGS_TAKEN.discard(self.tag)
        self.containers.clear()
