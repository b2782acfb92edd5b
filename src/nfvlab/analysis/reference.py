"""Reference values transcribed from the dissertation (analysis/reference/*.yaml).

Each file maps a figure/table id to its section, a short quote and named values. A claim names one
value as "<figure id>.<value name>", e.g. "fig2.1.max_penalty" (figure ids contain dots, so the
value name is the part after the last dot).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
DEFAULT_REFERENCE_DIR = REPO / "analysis" / "reference"


@dataclass(frozen=True)
class ReferenceValue:
    key: str  # "fig2.1.max_penalty"
    figure: str  # "fig2.1"
    name: str  # "max_penalty"
    value: float | str
    title: str
    section: str
    quote: str
    source_file: str


class ReferenceError(ValueError):
    pass


def load_references(directory: Path | None = None) -> dict[str, ReferenceValue]:
    """Every reference value of every YAML file in `directory`, by "<figure>.<name>" key.

    A missing directory gives no references; a malformed file raises ReferenceError naming it.
    """
    directory = Path(directory) if directory is not None else DEFAULT_REFERENCE_DIR
    out: dict[str, ReferenceValue] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ReferenceError(f"{path}: cannot read reference values: {e}") from e
        refs = doc.get("references", {})
        if not isinstance(refs, dict):
            raise ReferenceError(f"{path}: 'references' must map figure ids to entries")
        for fig, entry in refs.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("values", {}), dict):
                raise ReferenceError(f"{path}: references.{fig}: expected a mapping with 'values'")
            for name, value in (entry.get("values") or {}).items():
                key = f"{fig}.{name}"
                if key in out:
                    raise ReferenceError(
                        f"{path}: duplicate reference {key} (also in {out[key].source_file})")
                out[key] = ReferenceValue(
                    key=key, figure=str(fig), name=str(name), value=value,
                    title=str(entry.get("title", "")), section=str(entry.get("section", "")),
                    quote=" ".join(str(entry.get("quote", "")).split()), source_file=path.name,
                )
    return out


def as_float(v: object) -> float | None:
    """A number from a float/int or a numeric string; None otherwise."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).strip().rstrip("xX"))
    except ValueError:
        return None


def values_differ(a: object, b: object, rel: float = 1e-6) -> bool | None:
    """True when both are numbers and differ; None when either is not a number."""
    fa, fb = as_float(a), as_float(b)
    if fa is None or fb is None:
        return None
    return not math.isclose(fa, fb, rel_tol=rel, abs_tol=1e-12)
