"""The hand-labelled suite: every analysis against every ground-truth middlebox."""

import pytest

from nfvlab.statealyzr import corpus

from .conftest import needs_pcap

pytestmark = needs_pcap
NAMES = [n for n in corpus.ground_truths() if corpus.available(corpus.load_ground_truth(n))]
ALL_NAMES = corpus.ground_truths()


def test_corpus_has_the_issue_patterns():
    assert {"conntrack", "hostcount", "queueproxy", "aliasmon", "paperfig45"} <= set(ALL_NAMES)
    # issue 15's soundness misses
    assert {"wrapcount", "daqmon", "copykey", "reloadcfg"} <= set(ALL_NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_false_positive_labels_not_flagged(gt_results, name):
    gt, res = gt_results[name]
    assert corpus.compare(res, gt)["forbidden_flagged"] == []


def test_per_class_precision_recall_counts(gt_results):
    gt, res = gt_results["wrapcount"]
    pc = corpus.per_class(res, gt)
    assert set(pc) == set(corpus.METRIC_CLASSES)
    up = pc["updateable"]
    labelled = sum("updateable" in gt.expected(k) for k in gt.labels)
    assert up["tp"] + up["fn"] == labelled and up["recall"] == 1.0
    table = corpus.precision_table({"wrapcount": pc})
    assert "| wrapcount |" in table and "updateable P/R" in table


def test_wrapper_counters_updateable_but_not_fresh_memory(gt_results):
    _gt, res = gt_results["wrapcount"]
    by = {v.key: v for v in res.variables}
    for k in ("n_allocs", "n_frees", "bytes_live"):
        assert "updateable" in by[k].classes, k
    assert "updateable" not in by["max_hosts"].classes


def test_daq_with_meta_callbacks_are_packet_procedures(gt_results):
    if "daqmon" not in gt_results:
        pytest.skip("libdaq-dev (deps/apt.txt) not installed")
    _gt, res = gt_results["daqmon"]
    assert {"process_packet", "on_meta"} <= set(res.pkt_procs)
    assert "DAQ_Acquire" in res.loop_procs


def test_reload_thread_parser_is_not_packet_processing(gt_results):
    _gt, res = gt_results["reloadcfg"]
    assert "parse_rules" not in res.pkt_procs and "on_packet" in res.pkt_procs
    assert "parse_rules" in res.stats["concurrent_procedures"]
    by = {v.key: v for v in res.variables}
    assert "concurrent_only" in by["parse_errors"].evidence
    assert "updateable" in by["rules"].classes


@pytest.mark.parametrize("name", NAMES)
def test_sound_no_missed_labels(gt_results, name):
    gt, res = gt_results[name]
    cmp = corpus.compare(res, gt)
    assert cmp["missed"] == [], f"{name}: missed labels {cmp['missed']}"


@pytest.mark.parametrize("name", NAMES)
def test_flowspace_exact(gt_results, name):
    gt, res = gt_results[name]
    assert corpus.compare(res, gt)["flowspace_mismatch"] == []


@pytest.mark.parametrize("name", NAMES)
def test_no_unexplained_imprecision(gt_results, name):
    gt, res = gt_results[name]
    assert corpus.compare(res, gt)["unexpected_extra"] == []


@pytest.mark.parametrize("name", NAMES)
def test_counts_consistent(gt_results, name):
    _gt, res = gt_results[name]
    c = res.counts
    assert c["all"] >= c["persistent"] >= c["top_level"] >= c["updateable"]
    assert c["updateable"] >= max(c["pkt_output"], c["log_output"])
    by = {v.key: set(v.classes) for v in res.variables}
    for k, cl in by.items():
        if "top_level" in cl:
            assert "persistent" in cl, k
        if "updateable" in cl:
            assert "top_level" in cl, k
        if cl & {"pkt_output", "log_output"}:
            assert "updateable" in cl, k


def test_alias_update_is_caught(gt_results):
    """The dissertation's `tail` example: updated only through `int *index = &tail`."""
    _gt, res = gt_results["queueproxy"]
    tail = next(v for v in res.variables if v.key == "tail")
    assert "updateable" in tail.classes
    assert "alias" in tail.evidence["updated"]


def test_callback_and_function_pointer_procedures(gt_results):
    _gt, hc = gt_results["hostcount"]
    assert "on_packet" in hc.pkt_procs          # pcap_loop callback
    _gt, qp = gt_results["queueproxy"]
    assert {"on_data", "on_ctrl", "dequeue"} <= set(qp.pkt_procs)   # via the event queue


def test_read_only_config_and_init_only(gt_results):
    _gt, ct = gt_results["conntrack"]
    by = {v.key: v for v in ct.variables}
    assert "updateable" not in by["verbose"].classes
    assert "updateable" not in by["idle_timeout"].classes
    assert by["config_path"].classes == ["persistent"]


def test_evidence_points_to_source_lines(gt_results):
    _gt, ct = gt_results["conntrack"]
    v = next(v for v in ct.variables if v.key == "total_conns")
    src = (corpus.GT_DIR / "conntrack.c").read_text().split("\n")
    line = int(v.evidence["updated"].rsplit(":", 1)[1])
    assert "total_conns++" in src[line - 1]
    assert v.line == next(i + 1 for i, s in enumerate(src) if s.startswith("unsigned long total_conns"))


def test_scratch_globals_are_not_top_level(gt_results):
    for name, key in (("overapprox", "cur"), ("conntrack", "cur_ip")):
        _gt, res = gt_results[name]
        v = next(v for v in res.variables if v.key == key)
        assert v.classes == ["persistent"] and "scratch" in v.evidence, (name, v)


def test_library_search_calls_do_not_write_their_arguments(gt_results):
    """strstr/strchr on the start-up configuration (overapprox.conf) leave it read-only."""
    _gt, res = gt_results["overapprox"]
    conf = next(v for v in res.variables if v.key == "conf")
    assert "top_level" in conf.classes and "updateable" not in conf.classes


def test_shared_lookup_helper_keys_each_table_by_its_callers(gt_results):
    _gt, res = gt_results["overapprox"]
    by = {v.key: v for v in res.variables}
    assert by["by_src"].flowspace == ["src_ip"] and by["by_port"].flowspace == ["dst_port"]


def test_library_model_table():
    from nfvlab.statealyzr import libmodels
    assert libmodels.model("@strstr").kind == "search"
    assert libmodels.model("@strcpy").kind == "strwrite"
    sscanf = libmodels.model("@sscanf")
    assert libmodels.written_args(sscanf, 5) == [2, 3, 4]
