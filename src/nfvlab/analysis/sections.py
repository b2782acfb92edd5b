"""The dissertation's figures and tables as report sections: which claims and plots belong to which.

A section is keyed by a figure id of analysis/reference/*.yaml ("fig2.11", "table2.15",
"throughput"). A claim belongs to the figure of its ``reference`` ("fig2.11.iron_max_penalty" ->
"fig2.11"); a plot to its ``paper_figure`` ("2.15" -> "table2.15"); anything else to the spec's
home section (its first claim's figure, else its first paper figure, else "§<section>").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nfvlab.analysis.reference import ReferenceValue
from nfvlab.spec import Spec


@dataclass(frozen=True)
class PaperItem:
    id: str  # "fig2.11"
    label: str  # "Figure 2.11"
    title: str
    section: str
    quote: str

    @property
    def anchor(self) -> str:
        return "paper-" + re.sub(r"[^a-z0-9]+", "-", self.id.lower()).strip("-")

    @property
    def order(self) -> tuple:
        """Dissertation order: by section ('2.1.3' < '2.3.1' < '2.3.2'), then by figure number."""
        sec = [int(n) for n in re.findall(r"\d+", self.section or "")] or [99]
        own = [int(n) for n in re.findall(r"\d+", self.id)] or [999]
        return (sec, own, self.id)


def paper_items(references: dict[str, ReferenceValue]) -> dict[str, PaperItem]:
    """One item per reference figure id, titled from the reference file."""
    out: dict[str, PaperItem] = {}
    for ref in references.values():
        if ref.figure in out:
            continue
        out[ref.figure] = PaperItem(ref.figure, _label(ref.figure), ref.title, ref.section, ref.quote)
    return out


def _label(fig_id: str) -> str:
    m = re.fullmatch(r"(fig|table|sec)(\d.*)", fig_id)
    if not m:
        return fig_id.capitalize()
    kind = {"fig": "Figure", "table": "Table", "sec": "§"}[m.group(1)]
    return f"{kind} {m.group(2)}" if kind != "§" else f"§{m.group(2)}"


def normalise(paper_figure: str | None, items: dict[str, PaperItem]) -> str | None:
    """A spec's figure name ("2.11", "table4.17", "2.15") as a reference figure id, or None."""
    if not paper_figure:
        return None
    name = str(paper_figure).strip()
    for candidate in (name, f"fig{name}", f"table{name}", f"sec{name}"):
        if candidate in items:
            return candidate
    return None


def claim_item(reference: str | None) -> str | None:
    return reference.rsplit(".", 1)[0] if reference and "." in reference else None


def home_item(spec: Spec, items: dict[str, PaperItem]) -> str:
    """Where a spec's unassigned plots and claims go."""
    for claim in spec.claims:
        fig = claim_item(claim.reference)
        if fig in items:
            return fig
    for fig in spec.paper.figures:
        found = normalise(fig, items)
        if found:
            return found
    if spec.paper.figures:  # a figure no reference file names: its own section, not the spec's § (shared)
        return figure_id(str(spec.paper.figures[0]))
    return f"§{spec.paper.section}" if spec.paper.section else spec.name


def figure_id(name: str) -> str:
    """A spec's paper figure ("3.17", "Table 3.18", "fig3.19") as an id shaped like the reference
    files' ("fig3.17", "table3.18")."""
    m = re.fullmatch(r"(table|fig(?:ure)?)\s*(\d[\d.]*)", name.strip(), re.IGNORECASE)
    if m:
        return ("table" if m.group(1).lower() == "table" else "fig") + m.group(2)
    return f"fig{name.strip()}" if re.fullmatch(r"\d[\d.]*", name.strip()) else name.strip()


def ensure_item(items: dict[str, PaperItem], fig_id: str, spec: Spec) -> PaperItem:
    """The item for an id no reference file names (a spec's own section)."""
    if fig_id not in items:
        title = first_sentence(spec.description)
        items[fig_id] = PaperItem(fig_id, _label(fig_id), title, spec.paper.section or "", "")
    return items[fig_id]


def first_sentence(text: str) -> str:
    """The description's first sentence, across its line breaks (a YAML block wraps it), so the table
    never shows half a line."""
    flat = " ".join((text or "").split())
    for i in range(len(flat) - 1):
        if flat[i] in ".:" and flat[i + 1] == " " and flat[:i].count("(") == flat[:i].count(")"):
            return flat[: i + (flat[i] == ".")]
    return flat
