"""The flowspace chop on a dissector shaped like tcpdump (issue 15 regression: tcpdump's chop hit
its 1200 s budget and gave 0 keyed variables): printers that call shared helpers through a
formal from hundreds of call sites. The chop must visit each call site once, not once per set of
fields read through the formal, and finish well inside a small budget with the right flowspace."""

import time
from pathlib import Path

from nfvlab.statealyzr import analysis, analyze_sources
from nfvlab.statealyzr.flowchop import FlowChop

from .conftest import needs_pcap

pytestmark = needs_pcap

# helpers reading different header fields through one formal: each gives the fmem states of
# its callers a different field set (the multiplication that made tcpdump slow)
HELPERS = {"a": "h->saddr ^ h->daddr", "b": "h->sport", "c": "h->dport", "d": "h->ttl",
           "e": "h->saddr", "f": "h->sport ^ h->dport"}
PRINTERS, CALLS = 30, 12


def program() -> str:
    out = ["#include <pcap.h>", "#include <stdint.h>", "#include <stdio.h>",
           "struct hdr { uint32_t saddr, daddr; uint16_t sport, dport; uint8_t ttl, proto; };",
           "static unsigned hits[4096];", "unsigned long npkts;"]
    for n, expr in HELPERS.items():
        out.append(f"static unsigned get_{n}(const struct hdr *h) {{ return {expr}; }}")
        out.append(f"static void bump_{n}(const struct hdr *h) {{ hits[get_{n}(h) & 4095]++; }}")
    names = list(HELPERS)
    for p in range(PRINTERS):
        body = " ".join(f"bump_{names[(p + c) % len(names)]}(h);" for c in range(CALLS))
        out.append(f"static void pr_{p}(const struct hdr *h) {{ {body} }}")
    cases = " ".join(f"case {p}: pr_{p}(h); break;" for p in range(PRINTERS))
    out.append("static void cb(u_char *u, const struct pcap_pkthdr *ph, const u_char *pkt) {"
               "\n const struct hdr *h = (const struct hdr *)(pkt + 14); npkts++;"
               f"\n switch (h->proto % {PRINTERS}) {{ {cases} }} }}")
    out.append("int main(int argc, char **argv) { char e[PCAP_ERRBUF_SIZE];"
               " pcap_t *p = pcap_open_offline(argv[1], e); if (!p) return 1;"
               " pcap_loop(p, -1, cb, NULL); printf(\"%u\\n\", hits[0]); return 0; }")
    return "\n".join(out) + "\n"


def test_dissector_chop_visits_each_call_site_once_and_finishes_in_budget(tmp_path: Path, monkeypatch):
    src = tmp_path / "dissect.c"
    src.write_text(program())
    calls = {"site": 0}
    orig = FlowChop._site

    def counting(self, cid, i):
        calls["site"] += 1
        return orig(self, cid, i)
    monkeypatch.setattr(FlowChop, "_site", counting)
    t0 = time.perf_counter()
    res = analyze_sources([src], "dissect", analysis.Config(flowspace_budget_s=60.0))
    took = time.perf_counter() - t0
    v = {x.key: x for x in res.variables}
    assert not res.stats.get("flowspace_not_computed")
    assert "keyed" in v["hits"].classes
    assert set(v["hits"].flowspace) == {"src_ip", "dst_ip", "src_port", "dst_port", "ttl"}
    # one visit per (call site, formal): PRINTERS*CALLS + PRINTERS call sites (+ the helpers');
    # before the fix every fmem state (one per field set) walked all of them again (546 here).
    # The string match is per source line: the switch on h->proto has a line of its own.
    sites = PRINTERS * CALLS + PRINTERS + len(HELPERS)
    assert calls["site"] <= sites, calls
    assert took < 60, took
