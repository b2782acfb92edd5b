"""ssh testbed inventories: ``testbed/<name>.yaml`` lists the nodes of a remote testbed.

    name: cloudlab-iron
    defaults: {user: root, key: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts}
    nodes:
      - name: n1
        address: 10.10.1.1
        roles: [victim_host]
        experiment_nic: {name: ens1f0np0, address: 198.18.64.11/24}
        cores: [1]
        container_subnet: 198.18.64.128/28

Validated before anything connects; errors name the file and the field.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Role = Literal["victim_host", "traffic_generator", "store", "nf_host"]
ROLES: tuple[str, ...] = ("victim_host", "traffic_generator", "store", "nf_host")
BENCH = ipaddress.ip_network("198.18.0.0/15")


class InventoryError(ValueError):
    pass


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Nic(Strict):
    name: str = Field(min_length=1, max_length=15, description="interface name on the node")
    address: str = Field(description="the node's address on the experiment LAN, with prefix (198.18.0.0/15)")

    @field_validator("address")
    @classmethod
    def _bench(cls, v: str) -> str:
        iface = ipaddress.ip_interface(v)
        if iface.network.prefixlen == 32 and "/" not in v:
            raise ValueError("needs a prefix length, e.g. 198.18.64.11/24")
        if iface.ip not in BENCH:
            raise ValueError(f"{v} is outside the benchmarking range 198.18.0.0/15 (experiment traffic stays there)")
        return v


class Defaults(Strict):
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)
    key: Path | None = None
    known_hosts: Path | None = Field(None, description="checked strictly when given; else any host key is accepted")
    python: str = Field("/usr/bin/python3", description="ansible_python_interpreter on the nodes")
    workdir: Path = Path("/var/lib/nfvlab")
    name_prefix: str = Field("nfvlab-", pattern=r"^[a-z][a-z0-9-]{0,11}$")
    connect_timeout_s: float = Field(10.0, gt=0)
    shared_host: bool = Field(False, description="the nodes are namespaces of one machine (CI): the playbooks "
                              "leave machine-wide settings (irqbalance, governor, kernel) alone")


class NodeSpec(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,7}$", description="short: it is part of interface names")
    address: str = Field(description="where ssh reaches the node (host name or IP)")
    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    key: Path | None = None
    roles: list[Role] = Field(min_length=1)
    experiment_nic: Nic
    cores: list[int] = Field(min_length=1, description="cores the experiment uses; containers/peer use cores[0]")
    container_subnet: str | None = Field(None, description="addresses for containers on this node (198.18.0.0/15)")
    workdir: Path | None = None

    @field_validator("cores")
    @classmethod
    def _cores(cls, v: list[int]) -> list[int]:
        if any(c < 0 for c in v) or len(set(v)) != len(v):
            raise ValueError("distinct core numbers >= 0")
        return v

    @field_validator("container_subnet")
    @classmethod
    def _subnet(cls, v: str | None) -> str | None:
        if v is not None and not BENCH.supernet_of(ipaddress.ip_network(v, strict=False)):
            raise ValueError(f"{v} is outside the benchmarking range 198.18.0.0/15")
        return v


class Inventory(Strict):
    name: str
    defaults: Defaults = Defaults()
    nodes: list[NodeSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Inventory:
        names = [n.name for n in self.nodes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"node names must be unique: {sorted(dup)}")
        for n in self.nodes:
            if "victim_host" in n.roles and n.container_subnet is None:
                raise ValueError(f"node {n.name}: a victim_host needs container_subnet")
        return self

    def with_role(self, role: str) -> list[NodeSpec]:
        return [n for n in self.nodes if role in n.roles]


def _where(loc: tuple) -> str:
    """pydantic's error location as the YAML path: nodes[1].experiment_nic.address"""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_inventory(path: Path | str) -> Inventory:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise InventoryError(f"{path}: cannot read: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise InventoryError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise InventoryError(f"{path}: expected a mapping with name, defaults and nodes")
    try:
        return Inventory.model_validate(doc)
    except ValidationError as e:
        lines = [f"{path}: {_where(err['loc'])}: {err['msg']}" for err in e.errors()]
        raise InventoryError("invalid testbed inventory\n  " + "\n  ".join(lines)) from None


def is_inventory_path(value: str) -> bool:
    """``--testbed`` takes ``local`` or a path to an inventory file."""
    return value != "local" and (value.endswith((".yaml", ".yml")) or "/" in value)
