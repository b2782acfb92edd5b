"""Render ``profile.py`` to a request RSpec the way the CloudLab portal does.

The portal runs a geni-lib profile as a script in "portal mode": ``GENILIB_PORTAL_MODE`` set,
the parameter values in a JSON file (``GENILIB_PORTAL_PARAMS_PATH``), the request RSpec written to
``GENILIB_PORTAL_REQUEST_PATH``, and parameter errors reported as a JSON list on stderr with exit
status 100 + the number of errors (``geni.portal.Context.verifyParameters``). :func:`render` does
exactly that in a fresh interpreter (``portal.Context`` is a per-process singleton, so one process
per render), with :mod:`nfvlab.cloudlab.geni_compat` installed first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROFILE = REPO / "profile.py"

# Child process: install the Python-3 fixes, then run the profile as __main__ (as the portal does).
_CHILD = (
    "import runpy, sys\n"
    "from nfvlab.cloudlab import geni_compat\n"
    "geni_compat.install()\n"
    "runpy.run_path(sys.argv[1], run_name='__main__')\n"
)


@dataclass(frozen=True)
class ParameterProblem:
    params: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return f"{', '.join(self.params) or 'profile'}: {self.message}"


class RenderError(RuntimeError):
    """The profile refused its parameters or failed to run."""

    def __init__(self, profile: Path, problems: list[ParameterProblem] | None = None, detail: str = "") -> None:
        self.profile = profile
        self.problems = problems or []
        self.detail = detail
        lines = [f"{profile}: invalid parameters"] if self.problems else [f"{profile}: rendering failed"]
        lines += [f"  - {p}" for p in self.problems]
        if detail:
            lines.append(f"  {detail}")
        super().__init__("\n".join(lines))


def bindings(nodes: int, hardware: str, image: str | None = None) -> dict[str, object]:
    """The profile's parameter names for the CLI's options (the same dict goes to the portal)."""
    out: dict[str, object] = {"nodeCount": nodes, "hardware": hardware}
    if image:
        out["image"] = image
    return out


def _problems(stderr: str) -> list[ParameterProblem]:
    # verifyParameters dumps one JSON list on stderr; anything else there is noise.
    start = stderr.find("[")
    try:
        errors = json.loads(stderr[start:]) if start >= 0 else []
    except json.JSONDecodeError:
        return []
    return [ParameterProblem(tuple(e.get("params") or ()), str(e.get("message", e))) for e in errors
            if isinstance(e, dict)]


def render(params: dict[str, object], profile: Path = PROFILE, timeout: float = 60) -> str:
    """Run ``profile`` with ``params`` in portal mode; return the request RSpec (XML text)."""
    profile = Path(profile)
    if not profile.is_file():
        raise RenderError(profile, detail="no such profile")
    with tempfile.TemporaryDirectory(prefix="nfvlab-render-") as tmp:
        params_path, request_path = Path(tmp, "params.json"), Path(tmp, "request.xml")
        params_path.write_text(json.dumps(params))
        env = dict(os.environ, GENILIB_PORTAL_MODE="1", GENILIB_PORTAL_PARAMS_PATH=str(params_path),
                   GENILIB_PORTAL_REQUEST_PATH=str(request_path))
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(profile)], env=env, cwd=tmp,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode >= 100:
            problems = _problems(proc.stderr)
            raise RenderError(profile, problems, "" if problems else proc.stderr.strip()[-2000:])
        if proc.returncode != 0:
            raise RenderError(profile, detail=proc.stderr.strip()[-2000:])
        if not request_path.is_file():
            raise RenderError(profile, detail="the profile printed no request RSpec (printRequestRSpec not called)")
        return request_path.read_text()
