"""Experiment specs: YAML files validated by typed models before anything is set up.

A spec names an experiment *kind* (the driver that knows how to run one point), its base
parameters, the sweep axes over those parameters, repetitions, scale presets, the metrics it
records, the figures it draws and the paper's claims it checks. Every error names the file and the
field, and says what was expected.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nfvlab.experiments.registry import get_kind, known_kinds

ScaleName = Literal["quick", "paper"]
SLUG = r"^[a-z0-9][a-z0-9-]*$"


class SpecError(Exception):
    """A spec is invalid. The message names the file and the field."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}: invalid spec\n" + "\n".join(f"  - {p}" for p in problems))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PaperRef(Strict):
    figures: list[str] = Field(default_factory=list, description="figure/table ids, e.g. ['2.1', '2.2']")
    section: str | None = None


PointStat = Literal["median", "mean", "p5", "p95", "min", "max"]
AcrossPoints = Literal["every", "max", "min", "median", "mean"]


class Claim(Strict):
    """A statement from the paper, checked as a *band* around what the paper says.

    Per point (a sweep point matching ``where``): ``point_stat`` of ``metric`` over the point's
    repetitions. Across points: ``every`` requires each point's value to lie in ``band``; the
    other reducers (max/min/median/mean) reduce the per-point values to one number that must lie
    in ``band``. ``band`` is [low, high], both inclusive; a side may be null (unbounded) only
    with a ``one_sided`` reason, because a one-sided bound is what lets noise pass for a result.
    ``check: self-check`` marks a check of our own machinery (ground truth, our own speed, limits
    from our own counters): it is reported apart and never counts as reproducing the paper.
    """

    id: Annotated[str, Field(pattern=SLUG)]
    statement: str
    paper_value: float | str | None = Field(None, description="what the paper says (number or text)")
    reference: str | None = Field(None, description="key into analysis/reference/*.yaml")
    metric: str
    where: dict[str, Any] = Field(default_factory=dict)
    point_stat: PointStat = "median"
    across_points: AcrossPoints = "every"
    band: tuple[float | None, float | None] = Field(
        description="[low, high]: the measured value must lie in it (inclusive); null = unbounded side")
    one_sided: str | None = Field(None, description="why a side of the band is null (required then)")
    check: Literal["reproduction", "self-check"] = "reproduction"

    @model_validator(mode="before")
    @classmethod
    def _no_bounds(cls, data: Any) -> Any:
        # The old bound form (op/value/tolerance) is refused with a pointer to the band form.
        if isinstance(data, dict):
            old = [k for k in ("op", "value", "tolerance") if k in data]
            if old:
                raise ValueError(
                    f"{'/'.join(old)}: claims state a band now, not a bound; write "
                    "band: [low, high] around the paper's value (a null side needs one_sided: reason)")
            if "band" not in data:
                raise ValueError("band: missing; a claim states band: [low, high] around the paper's value")
        return data

    @model_validator(mode="after")
    def _band_is_sane(self) -> Claim:
        low, high = self.band
        if low is None and high is None:
            raise ValueError("band: both sides are null; a claim must bound at least one side")
        if low is not None and high is not None and low > high:
            raise ValueError(f"band: low {low:g} is above high {high:g}")
        if (low is None or high is None) and not (self.one_sided or "").strip():
            side = "low" if low is None else "high"
            raise ValueError(f"one_sided: the band's {side} side is null; say why the claim is one-sided")
        if low is not None and high is not None and self.one_sided:
            raise ValueError("one_sided: given, but the band has both sides")
        return self

    @property
    def counts_as_reproduction(self) -> bool:
        return self.check == "reproduction"

    def in_band(self, measured: float) -> bool:
        low, high = self.band
        return (low is None or measured >= low) and (high is None or measured <= high)


class Figure(Strict):
    """One figure mirroring a paper figure: which metric on which axes, split by which parameter."""

    id: Annotated[str, Field(pattern=SLUG)]
    paper_figure: str | None = None
    title: str
    kind: Literal["line", "scatter", "box"] = "line"
    x: str
    y: str
    hue: str | None = None
    col: str | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    x_label: str | None = None
    y_label: str | None = None
    bucket: float | None = Field(None, description="scatter only: average y in x-buckets of this width")
    reference_line: float | None = None


class Scale(Strict):
    """A preset that overrides parameters, sweep axes and repetitions."""

    description: str = ""
    repetitions: Annotated[int, Field(ge=1)] | None = None
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)


def _known_recipe(name: str) -> str:
    # A VM testbed boots a recipe's kernel: the recipe must exist and load now, not after setup.
    from nfvlab.kernel.recipe import RecipeError, load_recipe

    if name == "debian-stock":  # Debian's cloud kernel, no build (docs/kernel.md)
        return name
    try:
        # the base package matters only to a build (and the guest, which loads this spec too, has none)
        load_recipe(name, check_base=False)
    except RecipeError as e:
        raise ValueError(f"kernel recipe {name!r} ({e.path}): {'; '.join(e.problems)}") from e
    return name


class VmTestbed(Strict):
    """``testbed: vm``: run the spec inside a Debian VM on a recipe's kernel (nfvlab.kernel.vm)."""

    recipe: Annotated[str, Field(pattern=SLUG)] = "iron"
    kvm: bool = Field(True, description="use /dev/kvm when it works (TCG otherwise, or always when false)")

    @field_validator("recipe")
    @classmethod
    def _recipe_exists(cls, v: str) -> str:
        return _known_recipe(v)


class Spec(Strict):
    name: Annotated[str, Field(pattern=SLUG)]
    description: str
    paper: PaperRef
    testbed: Literal["local", "vm"] = "local"
    vm: VmTestbed | None = Field(None, description="only with testbed: vm; defaults to recipe iron")
    kind: str
    params: dict[str, dict[str, Any]] = Field(
        description="parameter sections of the kind's model, e.g. topology:, workload:, iron:"
    )
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    repetitions: Annotated[int, Field(ge=1)] = 3
    scales: dict[ScaleName, Scale] = Field(default_factory=dict)
    metrics: list[str]
    figures: list[Figure] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in known_kinds():
            raise ValueError(f"unknown experiment kind {v!r}; expected one of {sorted(known_kinds())}")
        return v

    @field_validator("sweep")
    @classmethod
    def _nonempty_axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for axis, values in v.items():
            if not values:
                raise ValueError(f"sweep axis {axis!r} has no values")
        return v

    @model_validator(mode="after")
    def _vm_section(self) -> Spec:
        if self.vm is not None and self.testbed != "vm":
            raise ValueError(f"vm: given but testbed is {self.testbed!r}; set testbed: vm or drop vm:")
        if self.testbed == "vm" and self.vm is None:
            self.vm = VmTestbed()
        return self

    @model_validator(mode="after")
    def _check_against_kind(self) -> Spec:
        kind = get_kind(self.kind)
        fields = kind.parameter_names()
        for source, sweep in [("sweep", self.sweep)] + [
            (f"scales.{s}.sweep", sc.sweep) for s, sc in self.scales.items()
        ]:
            for axis in sweep:
                if axis not in fields:
                    raise ValueError(f"{source}: axis {axis!r} is not a parameter; expected one of {fields}")
        unknown = [m for m in self.metrics if m not in kind.metrics]
        if unknown:
            raise ValueError(f"metrics: {unknown} not recorded by kind {self.kind!r}; known: {kind.metrics}")
        columns = set(self.metrics) | {f.split(".")[-1] for f in fields} | {"repetition"}
        for claim in self.claims:
            if claim.metric not in self.metrics:
                raise ValueError(f"claims.{claim.id}.metric: {claim.metric!r} is not in metrics")
            bad = [k for k in claim.where if k not in columns]
            if bad:
                raise ValueError(f"claims.{claim.id}.where: unknown columns {bad}")
        for fig in self.figures:
            for attr in ("x", "y", "hue", "col"):
                col = getattr(fig, attr)
                if col is not None and col not in columns:
                    raise ValueError(f"figures.{fig.id}.{attr}: unknown column {col!r}")
        return self


def _format_pydantic(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        msg = e["msg"].removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}{got_text}")
    return problems


def load_spec(path: Path | str) -> Spec:
    """Read and validate a spec file. Raises SpecError naming file and field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(path, [f"cannot read: {e.strerror}"]) from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(path, [f"not valid YAML: {e}"]) from e
    if not isinstance(data, dict):
        raise SpecError(path, ["(top level): expected a mapping of spec fields"])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(path, _format_pydantic(e)) from e
    # Every point of every scale must be a valid parameter set: expanding fails here, not mid-run.
    from nfvlab.plan import expand

    for scale in [None, *spec.scales]:
        try:
            expand(spec, scale)
        except ValidationError as e:
            where = f"scales.{scale}" if scale else "params/sweep"
            raise SpecError(path, [f"{where}: {p}" for p in _format_pydantic(e)]) from e
        except ValueError as e:
            raise SpecError(path, [str(e)]) from e
    return spec


def spec_hash(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
