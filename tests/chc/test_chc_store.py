"""CHC's offloaded ops (Table 3.6) in the Redis Functions library, on real redis-servers."""

from __future__ import annotations

import itertools
import math

import pytest
import redis

from nfvlab.chc import store as chc_store

INST = "3"  # every op carries the packet clock and the instance id first
_CLOCKS = itertools.count(7)  # a new packet clock per op: the same clock again is a duplicate (clock log)


def fcall(r: redis.Redis, fn: str, key: str, *args):
    return r.fcall(fn, 1, key, str(next(_CLOCKS)), INST, *args)


def test_increment_and_decrement(clean_standalone):
    r = clean_standalone.servers[0].client()
    assert fcall(r, "chc_incr", "k", 5) == 5
    assert fcall(r, "chc_incr", "k", -2) == 3
    assert r.get("k") == b"3"
    with pytest.raises(redis.ResponseError, match="delta is not a number"):
        fcall(r, "chc_incr", "k", "x")


def test_push_pop_both_ends(clean_standalone):
    r = clean_standalone.servers[0].client()
    assert fcall(r, "chc_push", "ports", "R", "1000", "1001", "1002") == 3
    assert fcall(r, "chc_pop", "ports", "L") == b"1000"
    assert fcall(r, "chc_pop", "ports", "R") == b"1002"
    assert fcall(r, "chc_pop", "ports", "L") == b"1001"
    assert fcall(r, "chc_pop", "ports", "L") is None


def test_compare_and_update(clean_standalone):
    r = clean_standalone.servers[0].client()
    assert fcall(r, "chc_cas", "m", "0", "", "a") == [1, b"a"]  # absent -> set
    assert fcall(r, "chc_cas", "m", "0", "", "b") == [0, b"a"]  # not absent any more
    assert fcall(r, "chc_cas", "m", "1", "x", "b") == [0, b"a"]  # wrong expected value
    assert fcall(r, "chc_cas", "m", "1", "a", "b") == [1, b"b"]
    assert r.get("m") == b"b"


def test_lb_pick_least_loaded(clean_standalone):
    r = clean_standalone.servers[0].client()
    r.hset("srv", mapping={"s2": 1, "s1": 1, "s3": 0})
    assert fcall(r, "chc_lb_pick", "srv") == [b"s3", 1]
    assert fcall(r, "chc_lb_pick", "srv") == [b"s1", 2]  # tie s1/s2/s3 at 1: lowest name
    assert fcall(r, "chc_lb_pick", "srv") == [b"s2", 2]


def test_trw_step_reaches_scanner_decision(clean_standalone):
    r = clean_standalone.servers[0].client()
    t0, t1, pf, pd = 0.8, 0.2, 0.01, 0.99
    hi, lo = math.log(pd / pf), math.log((1 - pd) / (1 - pf))
    fail = math.log((1 - t1) / (1 - t0))
    decisions = [int(fcall(r, "chc_trw_step", "llr", "h", fail, hi, lo)[1]) for _ in range(5)]
    # log(99)/log(4) = 3.3: the 4th failed attempt crosses eta1 and the decision sticks
    assert decisions == [0, 0, 0, 1, 1]


def test_trojan_step_needs_order(clean_standalone):
    r = clean_standalone.servers[0].client()
    # ssh, html, zip, exe, irc: detected (bit 4) only at the end of the full sequence
    assert [fcall(r, "chc_trojan_step", "tj", "h", e) for e in (0, 1, 2, 3, 4)] == [1, 3, 7, 15, 31]
    # irc, html, ssh, exe, zip: the same steps in another order never reach detection
    assert [fcall(r, "chc_trojan_step", "tj", "g", e) for e in (4, 1, 0, 3, 2)] == [0, 0, 1, 9, 13]


def test_standalone_partitioning_matches_slots():
    assert chc_store.key_slot("chc:{v1:ports}") == chc_store.key_slot("{v1:ports}")
    parts = {chc_store.partition_of(f"chc:{{v1:o{i}}}", 3) for i in range(200)}
    assert parts == {0, 1, 2}


def test_cluster_ops_on_every_master(cluster):
    rc = redis.RedisCluster(host=cluster.servers[0].host, port=cluster.servers[0].port)
    try:
        owners = set()
        for i in range(30):
            key = f"chc:{{v1:o{i}}}"
            assert rc.fcall("chc_incr", 1, key, str(next(_CLOCKS)), INST, i) == i
            owners.add(rc.get_node_from_key(key).port)
        assert owners == {s.port for s in cluster.servers}  # keys spread over the 3 masters
        for s in cluster.servers:  # the library is on every master
            assert s.client().function_list(library="chc")
    finally:
        rc.close()
