"""The points-to result is kept compact: solver state dropped, equal sets shared as frozensets."""

from nfvlab.statealyzr import build, corpus
from nfvlab.statealyzr.ir import parse_module
from nfvlab.statealyzr.pointsto import PointsTo, Program

from .conftest import needs_pcap


@needs_pcap
def test_points_to_sets_are_shared_frozensets_and_solver_state_is_gone(tmp_path):
    gt = corpus.load_ground_truth("hostflow")
    mod = parse_module(build.compile_sources(gt.sources, tmp_path))
    pta = PointsTo.analyze(Program(mod))
    sets = list(pta.pts.values())
    assert sets and all(type(s) is frozenset and s for s in sets)
    by_value: dict[frozenset, int] = {}
    for s in sets:                                  # equal sets are one object
        assert by_value.setdefault(s, id(s)) == id(s)
    assert len({id(s) for s in sets}) < len(sets)   # and some are shared
    assert pta.copy is None and pta.loads is None and not pta.bound
    # still the same answers: the flow table's global points to the heap flows it holds
    flow_b = pta.prog.gobj["@flow_b"]
    assert any("calloc" in pta.prog.obj_label.get(o, "") or "heap" in pta.prog.obj_label.get(o, "")
               for o in pta.pts[flow_b])
