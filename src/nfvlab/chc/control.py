"""Client of a data-plane process's control socket (one text line per command, one reply line).

Commands (docs/chc.md "Control socket"): stats | split SCOPE HOST:PORT... | cache OBJ on|off |
report | stop."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path


class ControlError(RuntimeError):
    pass


def ask(path: Path, line: str, timeout_s: float = 10.0) -> str:
    """Send one command, return the reply after "ok " (raises ControlError on "err ...")."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(path))
        s.sendall(line.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = buf.decode().strip()
    if reply == "ok":
        return ""
    if not reply.startswith("ok "):
        raise ControlError(f"{path}: {line!r} -> {reply!r}")
    return reply[3:]


def wait_ready(path: Path, timeout_s: float = 30.0, alive: Callable[[], bool] | None = None) -> None:
    """Until the process behind `path` answers; with `alive`, give up as soon as it says the process ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ask(path, "stats", timeout_s=1.0)
            return
        except OSError:
            if alive is not None and not alive():
                raise ControlError(f"the process behind {path} ended before its control socket answered") from None
            time.sleep(0.05)
    raise ControlError(f"control socket {path} did not answer within {timeout_s} s")


def parse_kv(text: str, sep: str = " ") -> dict[str, str]:
    """"a=1 b=2" -> {"a": "1", "b": "2"}."""
    return dict(item.split("=", 1) for item in text.split(sep) if "=" in item)
