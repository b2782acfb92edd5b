"""The transcribed reference values and the spec claims that point at them."""

from __future__ import annotations

import pytest
from analysis_fakes import SHIPPED

from nfvlab.analysis.reference import ReferenceError, load_references, values_differ
from nfvlab.spec import load_spec


def test_chapter2_values_present():
    refs = load_references()
    expected = {"fig2.1.max_penalty": 1.18, "fig2.3.max_penalty": 1.95, "fig2.4.max_penalty": 4.5,
                "fig2.5.max_penalty": 6.0, "fig2.14.cpu_used_pct": 90.02, "fig2.14.idle_pct": 10.07,
                "table2.15.udp_us": 0.706, "table2.15.tcp_us": 1.670, "table2.15.gre_us": 1.184,
                "throughput.vanilla_rx_gbps": 1.93, "throughput.iron_rx_gbps": 1.90,
                "fig2.9.iron_max_penalty_10": 1.04, "fig2.10.vanilla_max_penalty": 1.85,
                "fig2.11.iron_max_penalty": 1.05, "fig2.12.iron_max_penalty": 1.05,
                "fig2.16.software_median_penalty": 1.19}
    for key, value in expected.items():
        assert refs[key].value == pytest.approx(value), key
        assert refs[key].quote and refs[key].section, key


def test_every_spec_claim_reference_resolves_and_agrees():
    refs = load_references()
    for path in sorted(SHIPPED.glob("*.yaml")):
        for c in load_spec(path).claims:
            if c.reference:
                assert c.reference in refs, f"{path.name}: {c.id} names unknown {c.reference}"
                assert not values_differ(c.paper_value, refs[c.reference].value), f"{path.name}: {c.id}"


def test_malformed_reference_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("references: [1, 2]\n")
    with pytest.raises(ReferenceError, match="bad.yaml"):
        load_references(tmp_path)
    assert load_references(tmp_path / "missing") == {}
