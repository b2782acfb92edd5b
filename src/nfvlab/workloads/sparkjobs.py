"""MapReduce victims for Fig 2.13 on Apache Spark in local mode (pyspark from PyPI, a Java 17 JRE).

    python -m nfvlab.workloads.sparkjobs pi --slices 4 --samples 2000000
    python -m nfvlab.workloads.sparkjobs wordcount --input corpus.txt
    python -m nfvlab.workloads.sparkjobs grep --input corpus.txt --word nfv
    python -m nfvlab.workloads.sparkjobs corpus --output corpus.txt --mb 20 [--seed 1]
    python -m nfvlab.workloads.sparkjobs serve --ctl DIR --input corpus.txt   # one JVM, jobs on request

The paper's victims are Hadoop MapReduce's example jobs *pi*, *wordcount* and *grep* (§2.3.1). Here
they are the same three computations as Spark jobs on one local executor thread (``local[1]``: the
victim container has a share of one core): pi by Monte-Carlo sampling in a map/reduce over
``slices`` partitions (Spark's own examples/pi.py), wordcount as flatMap/map/reduceByKey over the
lines of a text file (examples/wordcount.py), grep as a filter/count of lines containing a word.
The JVM and Python workers start before the clock: the printed ``job_time_s`` is the job alone, from
the first action's start to its result (the paper times the MapReduce job).

``corpus`` writes a deterministic text file of Zipf-distributed words (a vocabulary of 20 000
words), the input of wordcount and grep.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

VOCABULARY = 20_000


def word(i: int) -> str:
    """The i-th vocabulary word: short, pronounceable, unique."""
    syll = ("ka", "lo", "mi", "nu", "ri", "te", "so", "va", "pe", "du", "fi", "go")
    out, n = [], i + 1
    while n:
        n, r = divmod(n, len(syll))
        out.append(syll[r])
    return "".join(out)


def write_corpus(path: Path, mb: float, seed: int = 1, words_per_line: int = 12) -> int:
    """A text file of about ``mb`` MB; returns its size in bytes."""
    rng = random.Random(seed)
    vocab = [word(i) for i in range(VOCABULARY)]
    cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(VOCABULARY)))  # Zipf, s = 1
    target = int(mb * 1e6)
    tmp = path.with_suffix(path.suffix + ".tmp")
    size = 0
    with open(tmp, "w") as f:
        while size < target:
            ws = rng.choices(vocab, cum_weights=cum, k=2000 * words_per_line)
            block = "\n".join(" ".join(ws[i:i + words_per_line]) for i in range(0, len(ws), words_per_line)) + "\n"
            f.write(block)
            size += len(block)
    os.replace(tmp, path)
    return size


def _session(app: str, memory: str, local_dir: str | None):
    from pyspark.sql import SparkSession

    b = (SparkSession.builder.master("local[1]").appName(app)
         .config("spark.ui.enabled", "false")
         .config("spark.driver.memory", memory)
         .config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.sql.shuffle.partitions", "4")
         .config("spark.python.worker.reuse", "true"))
    if local_dir:
        b = b.config("spark.local.dir", local_dir)
    return b.getOrCreate()


def run_job(job: str, a: argparse.Namespace) -> dict:
    spark = _session(f"nfvlab-{job}", a.memory, a.local_dir)
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.parallelize([0], 1).count()  # start the Python worker before the clock
    out = timed_job(spark.sparkContext, job, a)
    spark.stop()
    return out


def timed_job(sc, job: str, a: argparse.Namespace) -> dict:
    t0 = time.monotonic()
    if job == "pi":
        n = a.samples

        def inside(_: int) -> int:
            x, y = random.random() * 2 - 1, random.random() * 2 - 1
            return 1 if x * x + y * y <= 1 else 0

        hits = sc.parallelize(range(n), a.slices).map(inside).reduce(lambda p, q: p + q)
        result: object = 4.0 * hits / n
    elif job == "wordcount":
        counts = (sc.textFile(a.input, a.slices).flatMap(lambda line: line.split())
                  .map(lambda w: (w, 1)).reduceByKey(lambda p, q: p + q))
        top = counts.takeOrdered(3, key=lambda kv: -kv[1])
        result = {"distinct": counts.count(), "top": top}
    elif job == "grep":
        w = a.word
        result = sc.textFile(a.input, a.slices).filter(lambda line: w in line.split()).count()
    else:
        raise SystemExit(f"unknown job {job}")
    return {"job": job, "job_time_s": time.monotonic() - t0, "result": result}


def serve(ctl: Path, a: argparse.Namespace) -> int:
    """One JVM for many jobs: run each ``<ctl>/<id>.req`` (JSON: job + argument overrides) and write
    ``<id>.res`` (JSON, atomically); ``stop.req`` ends the server. The JVM start-up (tens of seconds of
    CPU on a share of one core) is paid once per testbed, not once per measurement."""
    spark = _session("nfvlab-mapreduce", a.memory, a.local_dir)
    sc = spark.sparkContext
    sc.setLogLevel("ERROR")
    sc.parallelize([0], 1).count()
    # Warm up: the first runs of a job on a fresh JVM are slower (JIT compilation, the input file's
    # first read), which would bias whichever measurement comes first.
    for _ in range(a.warmup):
        for job in ("pi", "wordcount", "grep"):
            if job == "pi" or a.input:
                timed_job(sc, job, a)
    (ctl / "ready").write_text(str(os.getpid()))
    try:
        while True:
            reqs = sorted(ctl.glob("*.req"))
            if not reqs:
                time.sleep(0.05)
                continue
            for req in reqs:
                if req.stem == "stop":
                    req.unlink()
                    return 0
                spec = json.loads(req.read_text())
                req.unlink()
                args = argparse.Namespace(**{**vars(a), **spec.get("args", {})})
                try:
                    res = timed_job(sc, spec["job"], args)
                except Exception as e:  # noqa: BLE001 - reported to the driver, the server lives on
                    res = {"job": spec.get("job"), "error": repr(e)}
                tmp = ctl / f"{req.stem}.tmp"
                tmp.write_text(json.dumps(res))
                os.replace(tmp, ctl / f"{req.stem}.res")
    finally:
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("job", choices=["pi", "wordcount", "grep", "corpus", "serve"])
    ap.add_argument("--ctl", type=Path, default=None, help="serve: the request directory")
    ap.add_argument("--warmup", type=int, default=2, help="serve: runs of each job before accepting requests")
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--samples", type=int, default=2_000_000)
    ap.add_argument("--input", default=None)
    ap.add_argument("--word", default=word(0))
    ap.add_argument("--memory", default="512m")
    ap.add_argument("--local-dir", default=None)
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--mb", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    if a.job == "corpus":
        if a.output is None:
            ap.error("corpus: --output is required")
        print(json.dumps({"corpus": str(a.output), "bytes": write_corpus(a.output, a.mb, a.seed)}))
        return 0
    if a.job == "serve":
        if a.ctl is None:
            ap.error("serve: --ctl is required")
        return serve(a.ctl, a)
    if a.job in ("wordcount", "grep") and not a.input:
        ap.error(f"{a.job}: --input is required")
    print(json.dumps(run_job(a.job, a)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
