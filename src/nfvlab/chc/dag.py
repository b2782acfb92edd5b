"""The operator's view of a CHC chain (§3.2): a logical DAG in YAML, validated before anything is set up.

    name: nat-portscan-lb
    model: EO+C+NA                      # default state model of every vertex (T, EO, EO+C, EO+C+NA)
    vertices:
      nat:      {nf: nat, parallelism: 1, config: {external: 198.18.40.100, internal: 198.18.32.0/22}}
      portscan: {nf: portscan, parallelism: 2, scope: auto}
      lb:       {nf: lb}
      trojan:   {nf: trojan}
    edges: [{from: nat, to: portscan}, {from: portscan, to: lb}]
    taps:  [{from: nat, to: trojan}]    # off-path: trojan gets a copy of every packet nat receives

A vertex's `scope` is what the splitters upstream of it partition on (§3.3.1): one of the scopes its
NF declares (fine -> coarse, `NF_SCOPES`, checked against `chc-nf --scopes` in the tests), or `auto`
(the manager's partitioning loop: coarsest first, finer until load is even; nfvlab.chc.partition).
Default: the NF's finest scope, which never splits a flow's per-flow state.

Shape rules (what the data plane can carry): the on-path vertices form one path from a single entry
vertex (the root feeds it) to the sink -- a splitter has one downstream vertex, so a vertex has at
most one out-edge; a tap's target is off-path (no edges in or out; its output is discarded); one
tap per source vertex. Errors name the file and the field (`vertices.lb.nf`, `edges.1.to`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nfvlab.spec import _format_pydantic

NFType = Literal["nat", "portscan", "trojan", "lb", "forward", "scrub"]
ModelName = Literal["T", "EO", "EO+C", "EO+C+NA"]
# Each NF's state scopes, fine -> coarse, as its C++ scopes() declares them (chc/src/nf_*.cpp).
NF_SCOPES: dict[str, tuple[str, ...]] = {
    "nat": ("5tuple",),
    "portscan": ("5tuple", "srcip"),
    "trojan": ("srcip",),
    "lb": ("5tuple",),
    "forward": ("5tuple",),
    "scrub": ("5tuple", "service"),  # service: SSH, FTP, IRC each to its own instance (R4's scrubbers)
}
# A deployment holds at most 36 containers (deploy.py): root, sink and a store server take three.
MAX_INSTANCES = 33
NAME = re.compile(r"^[a-z][a-z0-9_]{0,11}$")  # short: it ends up in namespace, socket and log names


class ChainSpecError(Exception):
    """A logical chain is invalid; the message names the file and the field."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path, self.problems = str(path), problems
        super().__init__(f"{path}: invalid chain\n" + "\n".join(f"  - {p}" for p in problems))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Vertex(Strict):
    nf: NFType
    parallelism: int = Field(1, ge=1, le=8)
    model: ModelName | None = None  # overrides the chain's model
    scope: str | None = None
    config: dict[str, str | int | float] = Field(default_factory=dict)

    @field_validator("config")
    @classmethod
    def _config_text(cls, v: dict[str, str | int | float]) -> dict[str, str | int | float]:
        for k, val in v.items():  # chc-nf --config is "k=v,k=v"
            if not re.fullmatch(r"[a-z0-9_]+", k):
                raise ValueError(f"config key {k!r} must be lower-case letters, digits, _")
            if any(c in str(val) for c in ",= "):
                raise ValueError(f"config value {val!r} of {k} may not contain ',', '=' or spaces")
        return v


class Edge(Strict):
    src: str = Field(alias="from")
    dst: str = Field(alias="to")


class LogicalChain(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    model: ModelName = "EO+C+NA"
    vertices: dict[str, Vertex] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)
    taps: list[Edge] = Field(default_factory=list)

    def model_of(self, vertex: str) -> str:
        return self.vertices[vertex].model or self.model

    def scope_of(self, vertex: str) -> str:
        """The scope the splitters upstream of `vertex` start with ("auto": the coarsest)."""
        v = self.vertices[vertex]
        scopes = NF_SCOPES[v.nf]
        if v.scope == "auto":
            return scopes[-1]
        return v.scope or scopes[0]

    def path(self) -> list[str]:
        """The on-path vertices, entry first (valid chains only)."""
        nxt = {e.src: e.dst for e in self.edges}
        entry = entry_vertices(self)[0]
        out = [entry]
        while out[-1] in nxt:
            out.append(nxt[out[-1]])
        return out

    def off_path(self) -> list[str]:
        return [v for v in self.vertices if v in {t.dst for t in self.taps}]

    def with_model(self, model: str) -> LogicalChain:
        """The same chain with every vertex in `model` (experiments compare T against a model)."""
        vertices = {k: v.model_copy(update={"model": None}) for k, v in self.vertices.items()}
        return self.model_copy(update={"model": model, "vertices": vertices})


def entry_vertices(chain: LogicalChain) -> list[str]:
    targets = {e.dst for e in chain.edges} | {t.dst for t in chain.taps}
    return [v for v in chain.vertices if v not in targets]


def check_graph(chain: LogicalChain) -> list[str]:
    """Shape problems, each naming its field; [] when the chain can be compiled."""
    problems: list[str] = []
    names = ", ".join(chain.vertices)
    for name, v in chain.vertices.items():
        if not NAME.match(name):
            problems.append(f"vertices.{name}: a vertex name is 1-12 lower-case letters, digits or _, "
                            "starting with a letter")
        if v.scope is not None and v.scope != "auto" and v.scope not in NF_SCOPES[v.nf]:
            problems.append(f"vertices.{name}.scope: {v.scope!r} is not a scope of {v.nf} "
                            f"({', '.join(NF_SCOPES[v.nf])}, or auto)")
        if chain.model_of(name) == "T" and v.parallelism > 1:
            problems.append(f"vertices.{name}.parallelism: traditional NFs keep all state local, so one instance "
                            f"per vertex (got {v.parallelism} with model T)")
    if sum(v.parallelism for v in chain.vertices.values()) > MAX_INSTANCES:
        problems.append(f"vertices: at most {MAX_INSTANCES} instances in all on one deployment")
    for field, edges in (("edges", chain.edges), ("taps", chain.taps)):
        for i, e in enumerate(edges):
            for end, v in (("from", e.src), ("to", e.dst)):
                if v not in chain.vertices:
                    problems.append(f"{field}.{i}.{end}: unknown vertex {v!r} (vertices: {names})")
            if e.src == e.dst:
                problems.append(f"{field}.{i}: a vertex cannot feed itself ({e.src})")
    if problems:
        return problems
    seen_out: dict[str, int] = {}
    for i, e in enumerate(chain.edges):
        if e.src in seen_out:
            problems.append(f"edges.{i}.from: {e.src} already feeds {chain.edges[seen_out[e.src]].dst} (edges."
                            f"{seen_out[e.src]}); a splitter has one downstream vertex, so the on-path vertices "
                            "form one path")
        seen_out.setdefault(e.src, i)
    on_path = {e.src for e in chain.edges} | {e.dst for e in chain.edges}
    tapped: dict[str, int] = {}
    for i, t in enumerate(chain.taps):
        if t.dst in on_path:
            problems.append(f"taps.{i}.to: {t.dst} is on the path (it has edges); a tap feeds an off-path vertex")
        if t.src in {x.dst for x in chain.taps}:
            problems.append(f"taps.{i}.from: {t.src} is itself off-path; taps start at on-path vertices")
        if t.src in tapped:
            problems.append(f"taps.{i}.from: {t.src} has a tap already (taps.{tapped[t.src]}); one per vertex")
        tapped.setdefault(t.src, i)
    entries = entry_vertices(chain)
    if len(entries) != 1:
        what = "none (every vertex has an input: a cycle?)" if not entries else ", ".join(entries)
        problems.append(f"edges: the root feeds exactly one entry vertex (one without inputs); found {what}")
    if problems:
        return problems
    nxt = {e.src: e.dst for e in chain.edges}
    walk, seen = entries[0], set()
    while walk is not None and walk not in seen:
        seen.add(walk)
        walk = nxt.get(walk)
    if walk is not None:
        problems.append(f"edges: the path from {entries[0]} returns to {walk} (a cycle)")
    for name in chain.vertices:
        if name not in seen and name not in chain.off_path():
            problems.append(f"vertices.{name}: not reachable from the entry vertex {entries[0]}")
    if chain.vertices[entries[0]].scope == "auto":
        problems.append(f"vertices.{entries[0]}.scope: auto re-partitions at the upstream NF instances' splitters; "
                        "the entry vertex's upstream is the root, whose split is static: name a scope")
    return problems


def parse_chain(data: object, path: Path | str = "<chain>") -> LogicalChain:
    if not isinstance(data, dict):
        raise ChainSpecError(path, ["(top level): expected a mapping with name, vertices, edges, taps"])
    try:
        chain = LogicalChain.model_validate(data)
    except ValidationError as e:
        raise ChainSpecError(path, _format_pydantic(e)) from e  # locations use the YAML names (from, to)
    problems = check_graph(chain)
    if problems:
        raise ChainSpecError(path, problems)
    return chain


def load_chain(path: Path | str) -> LogicalChain:
    """Read and validate a logical chain file; raises ChainSpecError naming file and field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ChainSpecError(path, [f"cannot read: {e.strerror}"]) from e
    except yaml.YAMLError as e:
        raise ChainSpecError(path, [f"not valid YAML: {e}"]) from e
    return parse_chain(data, path)
