"""A CloudLab manifest RSpec -> the nodes nfvlab needs -> an ssh inventory (testbed/<name>.yaml).

The manifest is the request RSpec as the aggregate filled it in: per node the physical
``component_id``, ``services/login`` (host name, port, user for ssh) and per interface the
``component_id`` (``...+interface+<pc>:<nic>``), MAC and the address the profile asked for.
:func:`inventory_document` is the one place that knows the inventory format
(``nfvlab.testbeds.inventory``: name, defaults, nodes with address, user, key, roles,
experiment_nic, cores, container_subnet).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from lxml import etree

RSPEC_NS = "http://www.geni.net/resources/rspec/3"
NS = {"r": RSPEC_NS}

# Cores per CloudLab hardware type (CloudLab's hardware page: physical cores of the node's CPUs).
HARDWARE_CORES = {"xl170": 10, "c6525-25g": 16, "d6515": 32, "m510": 8}
CONTAINER_SUBNET_OFFSET = 128  # victim containers take <LAN>.128/28 (profile.py uses <LAN>.1..16)


class ManifestError(ValueError):
    """The manifest lacks what an inventory needs."""


@dataclass(frozen=True)
class Interface:
    client_id: str
    nic: str  # the name in the interface's component_id (e.g. eth1)
    mac: str
    address: str  # with prefix, e.g. 198.18.64.1/24


@dataclass(frozen=True)
class ManifestNode:
    name: str
    hostname: str
    port: int
    user: str
    hardware: str
    component_id: str
    interfaces: tuple[Interface, ...] = field(default_factory=tuple)


def parse_manifest(xml: str) -> list[ManifestNode]:
    try:
        root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    except etree.XMLSyntaxError as exc:
        raise ManifestError(f"manifest is not XML: {exc}") from exc
    if root.get("type") != "manifest":
        raise ManifestError(f"expected an RSpec of type 'manifest', got {root.get('type')!r}")
    nodes = []
    for nd in root.findall("r:node", NS):
        name = nd.get("client_id")
        login = nd.find("r:services/r:login", NS)
        if login is None or not login.get("hostname"):
            raise ManifestError(f"node {name}: no services/login host name (is the experiment ready?)")
        hw = nd.find("r:hardware_type", NS)
        ifaces = []
        for it in nd.findall("r:interface", NS):
            ip = it.find("r:ip", NS)
            if ip is None:
                continue
            prefix = ipaddress.ip_network(f"0.0.0.0/{ip.get('netmask', '255.255.255.0')}").prefixlen
            comp = it.get("component_id", "")
            ifaces.append(Interface(it.get("client_id", ""), comp.rsplit(":", 1)[-1] if ":" in comp else "",
                                    it.get("mac_address", ""), f"{ip.get('address')}/{prefix}"))
        nodes.append(ManifestNode(name=name, hostname=login.get("hostname"), port=int(login.get("port", 22)),
                                  user=login.get("username", ""), hardware=hw.get("name") if hw is not None else "",
                                  component_id=nd.get("component_id", ""), interfaces=tuple(ifaces)))
    if not nodes:
        raise ManifestError("manifest has no nodes")
    return nodes


def roles_for(index: int, count: int) -> list[str]:
    """node0 hosts the victim, node1 generates traffic, the rest hold stores and NFs."""
    if count == 1:
        return ["victim_host", "traffic_generator", "store", "nf_host"]
    if index == 0:
        return ["victim_host"]
    if index == 1:
        return ["traffic_generator"] + (["store", "nf_host"] if count == 2 else [])
    return ["store", "nf_host"]


def inventory_document(name: str, nodes: list[ManifestNode], key: str | None = None) -> dict:
    """The ssh inventory for ``nodes`` (the format of nfvlab.testbeds.inventory)."""
    users = {n.user for n in nodes}
    out_nodes = []
    for i, n in enumerate(nodes):
        if not n.interfaces:
            raise ManifestError(f"node {n.name}: no experiment interface with an address in the manifest")
        nic = n.interfaces[0]
        cores = HARDWARE_CORES.get(n.hardware)
        if cores is None:
            raise ManifestError(f"node {n.name}: unknown hardware type {n.hardware!r} "
                                f"(known: {', '.join(HARDWARE_CORES)})")
        entry: dict = {"name": n.name, "address": n.hostname, "roles": roles_for(i, len(nodes)),
                       "experiment_nic": {"name": nic.nic or "eth1", "address": nic.address},
                       "cores": list(range(1, cores))}  # core 0 stays with the OS
        if n.port != 22:
            entry["port"] = n.port
        if len(users) > 1:
            entry["user"] = n.user
        if "victim_host" in entry["roles"]:
            lan = ipaddress.ip_interface(nic.address).network
            entry["container_subnet"] = str(ipaddress.ip_network(
                f"{lan.network_address + CONTAINER_SUBNET_OFFSET}/28"))
        out_nodes.append(entry)
    defaults: dict = {"user": users.pop() if len(users) == 1 else "root"}
    if key:
        defaults["key"] = key
    return {"name": name, "defaults": defaults, "nodes": out_nodes}


def write_inventory(path: Path, name: str, nodes: list[ManifestNode], key: str | None = None,
                    source: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# ssh inventory of CloudLab experiment {name}, written by `nfvlab cloudlab manifest`{source}.\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(header + yaml.safe_dump(inventory_document(name, nodes, key), sort_keys=False,
                                                 default_flow_style=None))
    tmp.replace(path)
    return path
