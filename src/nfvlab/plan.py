"""Plan: the sweep's points. The Cartesian product of the sweep axes, in the order the spec
writes them, each point a validated parameter model; times the repetitions."""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from nfvlab.experiments.registry import get_kind


@dataclass(frozen=True)
class Point:
    index: int
    axes: dict[str, Any]  # the swept values, by dotted name
    params: BaseModel  # the full validated parameter set

    @property
    def point_id(self) -> str:
        """Stable identity of a point: every leaf parameter, so a changed spec never reuses rows."""
        return ",".join(f"{k}={_fmt(v)}" for k, v in sorted(flat_params(self.params).items()))

    @property
    def label(self) -> str:
        return " ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in self.axes.items()) or "single point"


@dataclass(frozen=True)
class Plan:
    points: list[Point]
    repetitions: int
    scale: str | None

    @property
    def total_runs(self) -> int:
        return len(self.points) * self.repetitions


def _fmt(v: Any) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def flat_params(params: BaseModel) -> dict[str, Any]:
    """Leaf parameters by their leaf name (unique within a kind), e.g. {'containers_per_core': 2}."""
    out: dict[str, Any] = {}
    for section, value in params:
        if isinstance(value, BaseModel):
            for leaf, v in value:
                out[leaf] = v
        else:
            out[section] = value
    return out


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, leaf = dotted.partition(".")
    if leaf:
        tree.setdefault(section, {})[leaf] = value
    else:
        tree[section] = value


def expand(spec: Any, scale: str | None = None, repetitions: int | None = None) -> Plan:
    """Expand a spec (at a scale) into validated points. Raises pydantic ValidationError."""
    kind = get_kind(spec.kind)
    base = copy.deepcopy(spec.params)
    sweep = dict(spec.sweep)
    reps = spec.repetitions
    if scale is not None:
        if scale not in spec.scales:
            raise ValueError(f"scale {scale!r} is not defined; the spec has {sorted(spec.scales) or 'none'}")
        preset = spec.scales[scale]
        for section, values in preset.params.items():
            base.setdefault(section, {}).update(values)
        sweep.update(preset.sweep)
        reps = preset.repetitions or reps
    if repetitions is not None:
        reps = repetitions
    axes = list(sweep)
    points = []
    for i, combo in enumerate(itertools.product(*(sweep[a] for a in axes))):
        tree = copy.deepcopy(base)
        for axis, value in zip(axes, combo, strict=True):
            _set_dotted(tree, axis, value)
        params = kind.params_model.model_validate(tree)
        points.append(Point(i, dict(zip(axes, combo, strict=True)), params))
    return Plan(points, reps, scale)
