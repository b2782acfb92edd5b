"""The C++ client library (chc/src/store.cpp) against real redis-servers, driven through
chc-store-probe; the data-plane unit test binary runs here too (sanitizer build)."""

from __future__ import annotations

import subprocess

from nfvlab.chc import build
from nfvlab.chc import store as chc_store


def probe(chc_bin, store, script: list[str], *extra: str, instance: int = 1) -> list[str]:
    nodes = ",".join(store.addresses)
    argv = [chc_bin("chc-store-probe"), "--store", nodes, "--vertex", "4", "--instance", str(instance), *extra]
    done = subprocess.run(argv, input="\n".join(script) + "\n", capture_output=True, text=True, timeout=30,
                          env=build.sanitizer_env())
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_dataplane_unit_tests(chc_bin):
    done = subprocess.run([chc_bin("test_dataplane")], capture_output=True, text=True, timeout=30,
                          env=build.sanitizer_env())
    assert done.returncode == 0, done.stderr
    assert "all checks passed" in done.stdout


def test_keys_carry_vertex_and_instance(chc_bin, clean_standalone):
    out = probe(chc_bin, clean_standalone, ["key shared ports", "key flow map:1.2.3.4"], instance=7)
    assert out == ["chc:{v4:ports}", "chc:{v4:i7:map:1.2.3.4}"]


def test_blocking_offloaded_ops(chc_bin, clean_standalone):
    k, lst = "chc:{v4:n}", "chc:{v4:ports}"
    out = probe(chc_bin, clean_standalone, [
        f"call chc_incr {k} 1 5", f"call chc_incr {k} 2 -2",
        f"call chc_push {lst} 3 R 1000 1001", f"call chc_pop {lst} 4 L",
        f"call chc_cas {k} 5 1 3 9", f"call chc_cas {k} 6 1 3 10",
        f"call chc_incr {k} 7 x",
    ])
    assert out[:6] == ["i:5", "i:3", "i:2", "s:1000", "[i:1,s:9]", "[i:0,s:9]"]
    assert out[6].startswith("e:") and "delta is not a number" in out[6]


def test_noack_updates_then_read_sees_them(chc_bin, clean_standalone):
    k = "chc:{v4:pkts}"
    # 200 updates without waiting, then a read on the same connection: Redis applies them first.
    script = [f"noack chc_incr {k} {i} 1" for i in range(1, 201)] + [f"cmd {k} GET {k}", "drain", "stats"]
    # A long timeout: this checks ordering, not retransmission (on a loaded machine 200 ACKs can take
    # longer than 50 ms; the clock log would hide a retransmission anyway, see the next test).
    out = probe(chc_bin, clean_standalone, script, "--retransmit-ms", "10000")
    assert out[200] == "s:200"
    assert out[201] == "drained unacked=0"
    assert "acks=200" in out[202] and "errors=0" in out[202]


def test_noack_retransmits_unacked_op_after_timeout(chc_bin, clean_standalone):
    r = clean_standalone.servers[0].client()
    k = "chc:{v4:slow}"
    # Pause the server's clients for 300 ms: the op's ACK cannot come within the 20 ms timeout, so the
    # framework sends it again, with the same clock and instance: the store's clock log applies it once.
    r.client_pause(300)
    out = probe(chc_bin, clean_standalone, [f"noack chc_incr {k} 1 1", "drain", "stats"], "--retransmit-ms", "20")
    assert out[1] == "drained unacked=0"
    retrans = int(out[2].split("retransmissions=")[1].split()[0])
    assert retrans >= 1
    assert int(r.get(k)) == 1
    assert int(r.hget(k + ":clog", "#dups")) == retrans


def test_read_heavy_cache_gets_store_callbacks(chc_bin, clean_standalone):
    r = clean_standalone.servers[0].client()
    k = "chc:{v4:servers}"
    r.set(k, "a")
    proc = subprocess.Popen([chc_bin("chc-store-probe"), "--store", clean_standalone.addresses[0], "--vertex", "4"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=build.sanitizer_env())
    try:
        def ask(line: str) -> str:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            return proc.stdout.readline().strip()

        assert ask("track") == "tracking"
        assert ask(f"tget {k}") == "s:a fetched"
        assert ask(f"tget {k}") == "s:a cached"
        r.set(k, "b")  # another instance updates the object: the store calls back
        assert ask("wait-inval 1 3000") == "invalidations=1"
        assert ask(f"tget {k}") == "s:b cached"  # refreshed by the callback, no store read
    finally:
        proc.stdin.close()
        assert proc.wait(10) == 0


def test_n_standalone_partitions_agree_with_python(chc_bin, tmp_path):
    with chc_store.start_standalone(3, tmp_path) as s:
        keys = [f"chc:{{v4:obj{i}}}" for i in range(12)]
        out = probe(chc_bin, s, [f"node {k}" for k in keys])
        assert [int(x) for x in out] == [chc_store.partition_of(k, 3) for k in keys]
        probe(chc_bin, s, [f"call chc_incr {k} 1 1" for k in keys])
        for k in keys:  # each object lives on exactly one server
            holders = [i for i, srv in enumerate(s.servers) if srv.client().exists(k)]
            assert holders == [chc_store.partition_of(k, 3)]


def test_cluster_routing_by_slot(chc_bin, cluster):
    keys = [f"chc:{{v4:c{i}}}" for i in range(20)]
    out = probe(chc_bin, cluster, [f"call chc_incr {k} {i + 1} {i}" for i, k in enumerate(keys)], "--cluster")
    assert out == [f"i:{i}" for i in range(20)]  # no MOVED errors: each op went to its slot's master
    local = {srv.port: {key.decode() for key in srv.client().keys("chc:{v4:c*")} for srv in cluster.servers}
    for k in keys:  # KEYS lists only a master's own keys: each key on exactly one master
        assert sum(k in held for held in local.values()) == 1
    assert all(local.values())  # and the 20 keys spread over all three masters


def test_store_bench_runs(chc_bin, clean_standalone):
    done = subprocess.run([chc_bin("chc-store-bench"), "--store", clean_standalone.addresses[0], "--op", "incr",
                           "--ops", "2000", "--depth", "16", "--keys", "10"], capture_output=True, text=True,
                          timeout=30, env=build.sanitizer_env())
    assert done.returncode == 0, done.stderr
    assert '"errors":0' in done.stdout
    r = clean_standalone.servers[0].client()
    assert sum(int(r.get(f"chc:{{v1:bench{i}}}")) for i in range(10)) == 2000
