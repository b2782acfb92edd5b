"""Trace-driven message traffic (the interferers of Fig 2.13): long-lived TCP connections to every
other endpoint, messages sent one after another to a random destination, sizes drawn from a trace.

    python -m nfvlab.workloads.msgtraffic sink --port 6100
    python -m nfvlab.workloads.msgtraffic send --dist websearch --to 198.18.0.11,198.18.0.1 \\
        --port 6100 --seed 3 [--max-bytes 30000000] [--duration 60]

The distributions (``analysis/reference/flow-sizes.yaml``): web search (DCTCP) and data mining (VL2)
as empirical CDFs, sampled by inverse transform with linear interpolation between the CDF points;
TeraSort's shuffle as back-to-back bulk messages of one size. ``--max-bytes`` caps a message (the
data-mining trace reaches 1 GB; a quick run may not want one message to last the whole run).

The sink drains every connection and, on SIGTERM, prints ``{"bytes": ..., "connections": ...}``; the
sender prints ``{"messages": ..., "bytes": ..., "seconds": ...}``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REFERENCE = Path(__file__).resolve().parents[3] / "analysis" / "reference" / "flow-sizes.yaml"
CHUNK = 1 << 20  # bytes per send call


@dataclass(frozen=True)
class SizeDist:
    name: str
    sizes: tuple[float, ...]  # CDF points (bytes), ascending
    probs: tuple[float, ...]  # cumulative probabilities, ascending, last 1.0
    fixed: int | None = None

    def sample(self, rng: random.Random) -> int:
        if self.fixed is not None:
            return self.fixed
        u = rng.random()
        i = bisect.bisect_left(self.probs, u)
        if i == 0:
            return max(1, int(self.sizes[0]))
        p0, p1 = self.probs[i - 1], self.probs[i]
        s0, s1 = self.sizes[i - 1], self.sizes[i]
        return max(1, int(s0 + (s1 - s0) * (u - p0) / (p1 - p0) if p1 > p0 else s1))

    def mean(self) -> float:
        if self.fixed is not None:
            return float(self.fixed)
        return sum((self.sizes[i] + self.sizes[i - 1]) / 2 * (self.probs[i] - self.probs[i - 1])
                   for i in range(1, len(self.sizes)))


def load(name: str, path: Path = REFERENCE) -> SizeDist:
    """A distribution of the reference file; ValueError naming the file and the field when malformed."""
    doc = yaml.safe_load(path.read_text()) or {}
    dists = doc.get("distributions") or {}
    if name not in dists:
        raise ValueError(f"{path}: distributions.{name}: not defined (have {', '.join(sorted(dists))})")
    d = dists[name]
    if "fixed_bytes" in d:
        return SizeDist(name, (), (), int(d["fixed_bytes"]))
    pts = d.get("cdf") or []
    sizes = tuple(float(s) for s, _ in pts)
    probs = tuple(float(p) for _, p in pts)
    if len(pts) < 2 or list(sizes) != sorted(sizes) or list(probs) != sorted(probs) or probs[-1] != 1.0:
        raise ValueError(f"{path}: distributions.{name}.cdf: need >= 2 ascending [size, p] points ending at p = 1")
    return SizeDist(name, sizes, probs)


def sink(port: int) -> int:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    buf = bytearray(CHUNK)
    total, conns, stop = 0, 0, False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    while not stop:
        for key, _ in sel.select(timeout=0.2):
            if key.fileobj is srv:
                c, _ = srv.accept()
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                conns += 1
                continue
            c = key.fileobj
            try:
                n = c.recv_into(buf)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n == 0:
                sel.unregister(c)
                c.close()
            total += n
    print(json.dumps({"bytes": total, "connections": conns}), flush=True)
    return 0


def send(dist: SizeDist, dests: list[str], port: int, seed: int, max_bytes: int | None, duration: float) -> int:
    rng = random.Random(seed)
    socks = []
    deadline = time.monotonic() + 10
    for d in dests:  # one long-lived connection per destination (retry while the sinks start)
        while True:
            try:
                s = socket.create_connection((d, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        s.settimeout(None)
        socks.append(s)
    payload = memoryview(bytes(CHUNK))
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    msgs, sent, t0 = 0, 0, time.monotonic()
    end = t0 + duration
    while not stop and time.monotonic() < end:
        s = rng.choice(socks)
        size = dist.sample(rng)
        if max_bytes:
            size = min(size, max_bytes)
        left = size
        while left and not stop:
            n = min(left, CHUNK)
            try:
                s.sendall(payload[:n])
            except OSError:
                stop = True
                break
            left -= n
            sent += n
        msgs += 1
    print(json.dumps({"messages": msgs, "bytes": sent, "seconds": time.monotonic() - t0}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sk = sub.add_parser("sink")
    sk.add_argument("--port", type=int, required=True)
    sd = sub.add_parser("send")
    sd.add_argument("--dist", required=True)
    sd.add_argument("--to", required=True, help="comma-separated destination addresses")
    sd.add_argument("--port", type=int, required=True)
    sd.add_argument("--seed", type=int, default=1)
    sd.add_argument("--max-bytes", type=int, default=None)
    sd.add_argument("--duration", type=float, default=3600.0)
    a = ap.parse_args(argv)
    if a.cmd == "sink":
        return sink(a.port)
    return send(load(a.dist), [d for d in a.to.split(",") if d], a.port, a.seed, a.max_bytes, a.duration)


if __name__ == "__main__":
    sys.exit(main())
