"""Compiles a logical chain (nfvlab.chc.dag) to CHC's physical DAG (§3.2, Fig 3.4): the root, every
vertex's instances, a splitter after every instance (and the root) partitioning its output over the
next vertex's instances on that vertex's scope, a tap splitter at instances with an off-path vertex,
and the sink after the last on-path vertex. Pure data: nfvlab.chc.dagrun deploys it.

Vertex ids (the store keys' `v<id>`) follow the path, entry = 1, then the off-path vertices."""

from __future__ import annotations

from dataclasses import dataclass

from nfvlab.chc.dag import LogicalChain

ROOT, SINK = "root", "sink"


@dataclass(frozen=True)
class Instance:
    vertex: str
    vertex_id: int
    index: int  # 1-based within the vertex (the store keys' i<index>)
    nf: str
    model: str
    config: tuple[tuple[str, str], ...]
    parallelism: int

    @property
    def role(self) -> str:  # container/process name
        return f"{self.vertex}{self.index}"

    def config_arg(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.config)


@dataclass(frozen=True)
class Splitter:
    """After `owner` (an instance role or "root"): partitions on `scope` over `downstream` (roles, or
    ("sink",)); kind "next" is the on-path output, "tap" the off-path copy. () discards."""

    owner: str
    kind: str
    scope: str
    downstream: tuple[str, ...]
    vertex: str | None  # the downstream vertex (None: sink or discard)


@dataclass(frozen=True)
class PhysicalDAG:
    name: str
    path: tuple[str, ...]  # on-path vertices, entry first
    off_path: tuple[str, ...]
    instances: tuple[Instance, ...]
    splitters: tuple[Splitter, ...]

    def of_vertex(self, vertex: str) -> list[Instance]:
        return [i for i in self.instances if i.vertex == vertex]

    def splitter(self, owner: str, kind: str = "next") -> Splitter:
        return next(s for s in self.splitters if s.owner == owner and s.kind == kind)

    def upstream_of(self, vertex: str) -> list[Splitter]:
        """The splitters that feed `vertex` (what the partitioning loop re-targets)."""
        return [s for s in self.splitters if s.vertex == vertex]

    def start_order(self) -> list[Instance]:
        """Downstream first (a splitter's targets listen before it sends): off-path, then the path
        reversed; within a vertex instance 1 first (it seeds the vertex's shared objects)."""
        order = [*self.off_path, *reversed(self.path)]
        return [i for v in order for i in self.of_vertex(v)]


def compile_chain(chain: LogicalChain) -> PhysicalDAG:
    path = chain.path()
    off = chain.off_path()
    ids = {v: k for k, v in enumerate([*path, *off], start=1)}
    instances = tuple(
        Instance(v, ids[v], i, chain.vertices[v].nf, chain.model_of(v),
                 tuple(sorted((k, str(x)) for k, x in chain.vertices[v].config.items())), chain.vertices[v].parallelism)
        for v in [*path, *off] for i in range(1, chain.vertices[v].parallelism + 1))

    def roles(vertex: str) -> tuple[str, ...]:
        return tuple(i.role for i in instances if i.vertex == vertex)

    splitters = [Splitter(ROOT, "next", chain.scope_of(path[0]), roles(path[0]), path[0])]
    taps = {t.src: t.dst for t in chain.taps}
    for k, v in enumerate(path):
        nxt = path[k + 1] if k + 1 < len(path) else None
        for inst in roles(v):
            if nxt is None:
                splitters.append(Splitter(inst, "next", "5tuple", (SINK,), None))
            else:
                splitters.append(Splitter(inst, "next", chain.scope_of(nxt), roles(nxt), nxt))
            if v in taps:
                splitters.append(Splitter(inst, "tap", chain.scope_of(taps[v]), roles(taps[v]), taps[v]))
    for v in off:
        splitters += [Splitter(inst, "next", "5tuple", (), None) for inst in roles(v)]
    return PhysicalDAG(chain.name, tuple(path), tuple(off), instances, tuple(splitters))
