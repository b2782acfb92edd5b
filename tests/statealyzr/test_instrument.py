"""Update-tracking instrumentation (Fig 4.12): bits, CFG pruning, and a patch that compiles."""

import subprocess

import pytest

from nfvlab.statealyzr import build, corpus
from nfvlab.statealyzr.instrument import make_patch

from .conftest import needs_pcap

pytestmark = needs_pcap


@pytest.mark.parametrize("name", ["conntrack", "hostcount", "aliasmon", "paperfig45", "queueproxy"])
def test_patch_compiles_and_sets_every_updateable_bit(gt_results, tmp_path, name):
    gt, res = gt_results[name]
    plan = res.instrumentation
    upd = sorted(v.key for v in res.variables if "updateable" in v.classes)
    assert plan["bits"] == upd
    # every updateable variable written in packet processing gets at least one setting
    assert {s["var"] for s in plan["inserted"]} <= set(upd)
    diff, info = make_patch(plan, tmp_path / "out", root=corpus.GT_DIR)
    assert diff.startswith("---") and "__sa_updated[" in diff
    src = tmp_path / "out" / f"{name}.c"
    r = subprocess.run([build.CLANG, "-fsyntax-only", "-w", str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_pruning_removes_dominated_settings(gt_results):
    """conntrack's lookup_or_create writes the new entry field by field: one bit setting remains."""
    _gt, res = gt_results["conntrack"]
    plan = res.instrumentation
    kept = [s for s in plan["inserted"] if s["function"] == "lookup_or_create" and s["var"] == "conn_table"]
    pruned = [s for s in plan["pruned"] if s["function"] == "lookup_or_create" and s["var"] == "conn_table"]
    assert len(kept) == 1 and len(pruned) >= 5


def test_instrumented_binary_reports_updates(gt_results, tmp_path):
    """Build the instrumented conntrack and check the bits it sets at run time."""
    from nfvlab.statealyzr.dynamic import make_pcap
    _gt, res = gt_results["conntrack"]
    make_patch(res.instrumentation, tmp_path / "out", root=corpus.GT_DIR)
    src = (tmp_path / "out" / "conntrack.c").read_text()
    src += """
#include <stdio.h>
__attribute__((destructor)) static void sa_dump(void) {
    for (unsigned i = 0; i < sizeof __sa_updated; i++) fprintf(stderr, "bit %u %u\\n", i, __sa_updated[i]);
}
"""
    (tmp_path / "out" / "conntrack.c").write_text(src)
    exe = tmp_path / "ct"
    subprocess.run([build.CLANG, "-O0", "-w", str(tmp_path / "out" / "conntrack.c"), "-o", str(exe), "-lpcap"],
                   check=True)
    pcap = make_pcap(tmp_path / "in.pcap", 50)
    r = subprocess.run([str(exe), str(pcap)], capture_output=True, text=True, timeout=30)
    bits = dict(line.split()[1:] for line in r.stderr.splitlines() if line.startswith("bit "))
    names = res.instrumentation["bits"]
    set_vars = {names[int(i)] for i, v in bits.items() if v == "1"}
    assert {"conn_table", "total_packets", "total_conns"} <= set_vars
    assert "dropped" not in set_vars      # all generated packets are IPv4
    assert "cur_ip" not in names          # per-packet scratch: no bit (issue 15)


def test_multiline_for_header_is_not_a_statement_boundary():
    """HAProxy has `for (...;\n     ...; ctx->obj2 = srv_drop(sv))`: no insertion inside the header."""
    from nfvlab.statealyzr.instrument import _paren_depth, _safe_line
    lines = ["int f(void) {", "  for (i = 0; i < n;", "       i++) {", "    x = 1;", "  }",
             '  s = "(";', "  y = 2;"]
    assert _paren_depth(lines, 1, 3) == 1 and not _safe_line(lines, 3, 1)
    assert _safe_line(lines, 4, 1) and _safe_line(lines, 7, 1)
