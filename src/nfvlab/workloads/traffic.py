"""UDP/TCP flood traffic: build the ``nfvflood`` C tool, build its argv, parse its result line.

``nfvflood`` (``c/nfvflood.c``) is the "simple network flooding application" of dissertation
§2.1.3: N flows of 1400-byte payloads, back to back or paced to a total payload rate, and a
receiver that counts what arrives. Each run prints exactly one JSON line on stdout when it stops
(at ``--duration`` or on SIGTERM/SIGINT), which :func:`parse_flood_stats` turns into
:class:`TrafficStats`.

The experiment driver places the processes (``ip netns exec``, cgroups, ``taskset``) itself; this
module only builds argv lists, so ``prefix + sender.argv()`` is a complete command line.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "CFLAGS",
    "NFVFLOOD_SOURCE",
    "FloodReceiver",
    "FloodSender",
    "Proto",
    "TrafficError",
    "TrafficStats",
    "build_nfvflood",
    "parse_flood_stats",
    "stop_and_collect",
]

Proto = Literal["udp", "tcp"]

NFVFLOOD_SOURCE = Path(__file__).resolve().parent / "c" / "nfvflood.c"
CFLAGS: tuple[str, ...] = ("-O2", "-Wall", "-Wextra")
MAX_UDP_PAYLOAD = 65507


class TrafficError(RuntimeError):
    """The flood tool cannot be built or run, or its output cannot be parsed."""


# ---------------------------------------------------------------------------------------------- build


def build_nfvflood(build_dir: Path, *, cc: str = "gcc", source: Path = NFVFLOOD_SOURCE) -> Path:
    """Compile ``nfvflood.c`` into ``build_dir`` and return the binary's path.

    The binary is named after a hash of the source, compiler and flags, so an unchanged source is
    not rebuilt and concurrent builders never see a half-written file (compile to a temporary name,
    then rename).
    """
    compiler = shutil.which(cc)
    if compiler is None:
        raise TrafficError(f"C compiler {cc!r} not found: apt-get install gcc (it is listed in deps/apt.txt)")
    try:
        code = source.read_bytes()
    except OSError as exc:
        raise TrafficError(f"cannot read nfvflood source {source}: {exc}") from exc
    digest = hashlib.sha256(code + "\0".join((cc, *CFLAGS)).encode()).hexdigest()[:16]
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / f"nfvflood-{digest}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    fd, tmp_name = tempfile.mkstemp(prefix=".nfvflood-", dir=build_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        proc = subprocess.run(
            [compiler, *CFLAGS, "-o", str(tmp), str(source)], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise TrafficError(f"compiling {source} failed (status {proc.returncode}):\n{proc.stderr.strip()}")
        tmp.chmod(0o755)
        os.replace(tmp, binary)
    finally:
        tmp.unlink(missing_ok=True)
    return binary


# ---------------------------------------------------------------------------------------------- argv


def _check_proto(proto: str) -> None:
    if proto not in ("udp", "tcp"):
        raise ValueError(f"proto must be 'udp' or 'tcp', got {proto!r}")


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {port}")


def _check_ipv4(addr: str, what: str) -> None:
    try:
        ipaddress.IPv4Address(addr)
    except ValueError as exc:
        raise ValueError(f"{what} must be an IPv4 address, got {addr!r}") from exc


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class FloodSender:
    """``nfvflood send``: ``flows`` sockets round-robin over ``dst``, ``size``-byte payloads.

    ``rate_mbps`` is the total payload rate over all flows (None = as fast as possible);
    ``duration`` in seconds (None = until SIGTERM/SIGINT). ``batch`` > 1 sends UDP with
    ``sendmmsg`` (fewer syscalls, burstier); 1 is one ``send`` per packet like the paper's tool.
    ``catchup_ms`` is the pacer's bucket depth: after a stall (scheduling delay, CFS throttling) at
    most this much sending time is made up in a burst (nfvflood's default: 20 ms).
    """

    binary: Path | str
    proto: Proto
    dst: Sequence[str]
    port: int
    flows: int = 1
    size: int = 1400
    rate_mbps: float | None = None
    duration: float | None = None
    batch: int = 1
    bind: str | None = None
    sndbuf: int | None = None
    catchup_ms: float | None = None

    def __post_init__(self) -> None:
        _check_proto(self.proto)
        if isinstance(self.dst, str):
            object.__setattr__(self, "dst", tuple(d for d in self.dst.split(",") if d))
        else:
            object.__setattr__(self, "dst", tuple(self.dst))
        if not self.dst:
            raise ValueError("dst needs at least one address")
        for d in self.dst:
            _check_ipv4(d, "dst")
        _check_port(self.port)
        if not 1 <= self.flows <= 65536:
            raise ValueError(f"flows must be in 1..65536, got {self.flows}")
        if not 1 <= self.size <= MAX_UDP_PAYLOAD:
            raise ValueError(f"size must be in 1..{MAX_UDP_PAYLOAD}, got {self.size}")
        if self.rate_mbps is not None and self.rate_mbps <= 0:
            raise ValueError(f"rate_mbps must be > 0 (None = unlimited), got {self.rate_mbps}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be > 0 (None = until signalled), got {self.duration}")
        if not 1 <= self.batch <= 64:
            raise ValueError(f"batch must be in 1..64, got {self.batch}")
        if self.bind is not None:
            _check_ipv4(self.bind, "bind")
        if self.catchup_ms is not None and self.catchup_ms < 0:
            raise ValueError(f"catchup_ms must be >= 0, got {self.catchup_ms}")

    def argv(self) -> list[str]:
        args = [
            str(self.binary),
            "send",
            "--proto",
            self.proto,
            "--dst",
            ",".join(self.dst),
            "--port",
            str(self.port),
            "--flows",
            str(self.flows),
            "--size",
            str(self.size),
        ]
        if self.rate_mbps is not None:
            args += ["--rate-mbps", _fmt(self.rate_mbps)]
        if self.duration is not None:
            args += ["--duration", _fmt(self.duration)]
        if self.batch != 1:
            args += ["--batch", str(self.batch)]
        if self.bind is not None:
            args += ["--bind", self.bind]
        if self.sndbuf is not None:
            args += ["--sndbuf", str(self.sndbuf)]
        if self.catchup_ms is not None:
            args += ["--catchup-ms", _fmt(self.catchup_ms)]
        return args


@dataclass(frozen=True)
class FloodReceiver:
    """``nfvflood recv``: count what arrives on ``port`` (TCP: any number of connections).

    For TCP, ``size`` only turns received bytes into a message count (bytes // size).
    nfvflood writes ``listening on ...`` to stderr once the socket is bound.
    """

    binary: Path | str
    proto: Proto
    port: int
    bind: str | None = None
    duration: float | None = None
    size: int = 1400
    rcvbuf: int | None = None

    def __post_init__(self) -> None:
        _check_proto(self.proto)
        _check_port(self.port)
        if self.bind is not None:
            _check_ipv4(self.bind, "bind")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be > 0 (None = until signalled), got {self.duration}")
        if not 1 <= self.size <= MAX_UDP_PAYLOAD:
            raise ValueError(f"size must be in 1..{MAX_UDP_PAYLOAD}, got {self.size}")

    def argv(self) -> list[str]:
        args = [str(self.binary), "recv", "--proto", self.proto, "--port", str(self.port)]
        if self.bind is not None:
            args += ["--bind", self.bind]
        if self.duration is not None:
            args += ["--duration", _fmt(self.duration)]
        if self.size != 1400:
            args += ["--size", str(self.size)]
        if self.rcvbuf is not None:
            args += ["--rcvbuf", str(self.rcvbuf)]
        return args


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TrafficStats:
    """What one nfvflood run reports. ``seconds`` is the whole run (send: first to last send);
    ``active_seconds`` is first to last received packet for a receiver. ``drops`` are the UDP
    receive socket's overflow drops seen by the kernel (SO_RXQ_OVFL)."""

    mode: Literal["send", "recv"]
    proto: Proto
    packets: int
    bytes: int
    errors: int
    seconds: float
    active_seconds: float = 0.0
    drops: int = 0
    connections: int = 0
    flows: int = 0
    flow_bytes_min: int = 0
    flow_bytes_max: int = 0
    size: int = 1400
    rate_mbps_target: float = 0.0
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def rate_mbps(self) -> float:
        """Payload Mbit/s over ``seconds``."""
        return self.bytes * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    @property
    def active_rate_mbps(self) -> float:
        """Payload Mbit/s while packets were arriving (receivers started before their sender)."""
        secs = self.active_seconds or self.seconds
        return self.bytes * 8 / secs / 1e6 if secs > 0 else 0.0


_INT_FIELDS = (
    "packets",
    "bytes",
    "errors",
    "drops",
    "connections",
    "flows",
    "flow_bytes_min",
    "flow_bytes_max",
    "size",
)
_FLOAT_FIELDS = ("seconds", "active_seconds", "rate_mbps_target")


def parse_flood_stats(text: str) -> TrafficStats:
    """Parse nfvflood's stdout: the last line that is a JSON object with a ``mode`` key."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "mode" in obj:
            return _stats_from_obj(obj)
    snippet = text.strip()[-200:] or "<empty>"
    raise TrafficError(f"no nfvflood result line (JSON with 'mode') in output: {snippet!r}")


def _stats_from_obj(obj: dict[str, object]) -> TrafficStats:
    missing = [k for k in ("mode", "proto", "packets", "bytes", "errors", "seconds") if k not in obj]
    if missing:
        raise TrafficError(f"nfvflood result line lacks {', '.join(missing)}: {obj}")
    if obj["mode"] not in ("send", "recv") or obj["proto"] not in ("udp", "tcp"):
        raise TrafficError(f"nfvflood result line has unexpected mode/proto: {obj}")
    kwargs: dict[str, object] = {"mode": obj["mode"], "proto": obj["proto"]}
    try:
        for k in _INT_FIELDS:
            if k in obj:
                kwargs[k] = int(obj[k])  # type: ignore[call-overload]
        for k in _FLOAT_FIELDS:
            if k in obj:
                kwargs[k] = float(obj[k])  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise TrafficError(f"nfvflood result line has a non-numeric field: {obj}") from exc
    known = {"mode", "proto", *_INT_FIELDS, *_FLOAT_FIELDS}
    kwargs["extra"] = {k: v for k, v in obj.items() if k not in known}
    return TrafficStats(**kwargs)  # type: ignore[arg-type]


def stop_and_collect(proc: subprocess.Popen[str], timeout: float = 5.0) -> TrafficStats:
    """SIGTERM a running nfvflood (started with ``stdout=PIPE, text=True``), wait, parse its line.

    If it does not exit within ``timeout`` it is killed and :class:`TrafficError` is raised.
    A process that already exited (``--duration``) is just collected.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise TrafficError(f"nfvflood (pid {proc.pid}) did not exit within {timeout} s of SIGTERM") from exc
    if proc.returncode is not None and proc.returncode < 0:
        raise TrafficError(
            f"nfvflood (pid {proc.pid}) was killed by signal {-proc.returncode} before it could report "
            "(signalled before its handlers were installed, i.e. right after start?)"
        )
    if proc.returncode != 0:
        raise TrafficError(f"nfvflood (pid {proc.pid}) exited with status {proc.returncode}: {(err or '').strip()}")
    return parse_flood_stats(out or "")
