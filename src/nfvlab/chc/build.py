"""Builds CHC's C++ data plane from chc/ (make) and finds its binaries.

build/chc/ is the optimised build (experiments); build/chc-asan/ the AddressSanitizer + UBSan build
the tests run, so memory errors in the data plane fail the tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SOURCE = REPO / "chc"
BUILD_ROOT = Path(os.environ.get("NFVLAB_BUILD", REPO / "build"))


class BuildError(RuntimeError):
    pass


def build_dir(sanitize: bool = False) -> Path:
    return BUILD_ROOT / ("chc-asan" if sanitize else "chc")


def build(sanitize: bool = False) -> Path:
    """Run make (incremental; quiet when up to date); returns the build directory."""
    out_dir = build_dir(sanitize)
    argv = ["nice", "-n", "10", "make", "-s", "-C", str(SOURCE), "-j2", f"BUILD={out_dir}"]
    if sanitize:
        argv.append("SANITIZE=1")
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"building the CHC data plane failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return out_dir


def binary(name: str, sanitize: bool = False) -> Path:
    path = build_dir(sanitize) / name
    if not path.exists():
        raise BuildError(f"{path} missing: run `make chc`")
    return path


def sanitizer_env() -> dict[str, str]:
    """Environment for sanitizer binaries: fail on any report; no leak checker noise from libevent's
    process-lifetime globals is expected, so leaks fail too."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "abort_on_error=0:halt_on_error=1:detect_leaks=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    return env
