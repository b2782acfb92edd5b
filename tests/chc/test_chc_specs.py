"""CHC's experiment specs validate at every scale, their kinds keep rows flat, and the small
helpers of the kinds compute what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfvlab.chc.exp_nf_perf import quantile
from nfvlab.chc.exp_store import WorkloadParams, parse_redis_benchmark, redis_benchmark_argv
from nfvlab.experiments.registry import get_kind
from nfvlab.spec import SpecError, load_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["chc-nf-perf", "chc-store-throughput", "chc-correctness"])
def test_spec_validates_and_rows_stay_flat(name):
    spec = load_spec(REPO / "experiments" / f"{name}.yaml")
    assert spec.kind == name and {"quick", "paper"} <= set(spec.scales)
    kind = get_kind(name)
    leaves = [p.split(".")[-1] for p in kind.parameter_names()]
    assert len(set(leaves)) == len(leaves) and not set(leaves) & set(kind.metrics)
    assert spec.claims and all(c.band for c in spec.claims)


def test_bad_model_names_the_field(tmp_path):
    text = (REPO / "experiments" / "chc-nf-perf.yaml").read_text()
    text = text.replace("chain.model: [T, EO,", "chain.model: [T, EOC,")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(SpecError, match="chain.model"):
        load_spec(bad)


def test_quantile_is_nearest_rank_in_us():
    ns = list(range(1000, 101000, 1000))  # 1..100 µs
    assert quantile(ns, 0.5) == 51.0 and quantile(ns, 0.05) == 6.0 and quantile(ns, 0.95) == 95.0


def test_redis_benchmark_same_command_and_depth():
    argv = redis_benchmark_argv("127.0.0.1:16400", WorkloadParams(op="incr", depth=8, ops=5000, keys=10))
    assert argv[argv.index("-P") + 1] == "8" and argv[argv.index("-c") + 1] == "1"
    assert argv[-7:] == ["FCALL", "chc_incr", "1", "chc:{v1:bench__rand_int__}", "0", "1", "1"]
    assert parse_redis_benchmark("FCALL chc_incr 1 k: 123456.78 requests per second, p50=0.1 msec") == 123456.78
