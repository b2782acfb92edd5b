"""The field- and call-site-aware flowspace chop (flowchop.py) on the hostflow ground truth."""

import pytest

from nfvlab.statealyzr import corpus
from nfvlab.statealyzr.analysis import _FIELD_RE

from .conftest import needs_pcap

pytestmark = needs_pcap


@pytest.fixture(scope="module")
def hostflow(gt_results):
    _gt, res = gt_results["hostflow"]
    return res


def analyzer():
    import tempfile
    from pathlib import Path

    from nfvlab.statealyzr import StateAlyzr
    from nfvlab.statealyzr.build import compile_sources
    from nfvlab.statealyzr.ir import parse_module
    gt = corpus.load_ground_truth("hostflow")
    with tempfile.TemporaryDirectory() as tmp:
        sa = StateAlyzr(parse_module(compile_sources(gt.sources, Path(tmp))), "hostflow")
        sa.run()
    return sa


def chop_lines(sa, key: str) -> set[str]:
    seeds = sorted({n for n, _ in sa.flow_targets[key] if n in sa.fwd})
    nodes = sa._chop.backward(seeds, allowed=sa.fwd)
    return {sa.src_line(sa.mod.instrs[n]).strip() for n in nodes
            if n < len(sa.mod.instrs) and sa.mod.instrs[n].dbg}


def test_host_table_chop_has_the_source_address_but_not_the_ports():
    sa = analyzer()
    lines = chop_lines(sa, "host_b")
    assert "memcpy(pk.src, &ip->ip_src, 4);" in lines          # the field the table is keyed by
    assert "lookup_host(pk.src)->packets++;" in lines            # climbed from lookup_host's formal
    assert not any("th_sport" in ln or "th_dport" in ln or "ip_ttl" in ln for ln in lines)
    flow = chop_lines(sa, "flow_b")
    assert "pk.sport = ntohs(th->th_sport);" in flow and "pk.dport = ntohs(th->th_dport);" in flow
    assert not any("ip_ttl" in ln or "ip_tos" in ln for ln in flow)


def test_one_pass_masks_equal_the_per_variable_chops():
    sa = analyzer()
    names = list(_FIELD_RE)
    keys = sorted(k for k, tl in sa.flow_targets.items() if tl)

    def own(n):
        if n >= len(sa.mod.instrs) or not sa.mod.instrs[n].dbg:
            return 0
        line = sa.src_line(sa.mod.instrs[n])
        return sum(1 << b for b, c in enumerate(names) if _FIELD_RE[c].search(line))
    groups = [sorted({n for n, _ in sa.flow_targets[k] if n in sa.fwd}) for k in keys]
    masks = sa._chop.field_masks(groups, sa.fwd, own)
    for k, g, m in zip(keys, groups, masks, strict=True):
        bfs = 0
        for n in sa._chop.backward(g, allowed=sa.fwd):
            bfs |= own(n)
        assert m == bfs, k


def test_result_flowspaces(hostflow):
    fs = {v.key: sorted(v.flowspace) for v in hostflow.variables if "keyed" in v.classes}
    assert fs == {"host_b": ["src_ip"], "flow_b": ["dst_ip", "dst_port", "src_ip", "src_port"], "ttl_hist": ["ttl"]}
