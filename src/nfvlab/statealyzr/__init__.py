"""StateAlyzr: static analysis of C middleboxes that finds the state needing handling
(dissertation "Paving the Way for NFV", chapter 4 and Appendix A.1), rebuilt on clang-14 IR.

    from nfvlab.statealyzr import analyze_sources, analyze_ll
    result = analyze_sources(["conntrack.c"])
    result.counts   # {"all", "persistent", "top_level", "updateable", "keyed", "pkt_output", "log_output"}

Pipeline: build.py (clang-14 -emit-llvm -g -O0, llvm-link) -> ir.py (textual IR model) ->
pointsto.py (Andersen) -> sdg.py (dependence graph, slicing) -> analysis.py (Fig 4.6-4.11) ->
instrument.py (update-tracking bits, Fig 4.12). corpus.py holds the hand-labelled ground truth and
the recipes of real middleboxes; dynamic.py checks soundness at run time under gdb.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .analysis import Config, Result, StateAlyzr

__all__ = ["Config", "Result", "StateAlyzr", "analyze_ll", "analyze_sources"]


def analyze_ll(path: str | Path, name: str | None = None, config: Config | None = None) -> Result:
    import time

    from .ir import parse_module
    t0 = time.perf_counter()
    mod = parse_module(path)
    parse_s = time.perf_counter() - t0
    res = StateAlyzr(mod, name or Path(path).stem, config).run()
    res.timings["parse_ir"] = round(parse_s, 3)
    return res


def analyze_sources(srcs, name: str | None = None, config: Config | None = None,
                    flags: list[str] | None = None, workdir: str | Path | None = None) -> Result:
    import time

    from .build import compile_sources
    srcs = [Path(s) for s in srcs]
    with tempfile.TemporaryDirectory(prefix="statealyzr-") as tmp:
        wd = Path(workdir) if workdir else Path(tmp)
        t0 = time.perf_counter()
        ll = compile_sources(srcs, wd, flags)
        comp = time.perf_counter() - t0
        res = analyze_ll(ll, name or srcs[0].stem, config)
        res.timings["compile"] = round(comp, 3)
        return res
