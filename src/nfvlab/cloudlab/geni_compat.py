"""Make geni-lib 0.9.9.4 (the last PyPI release, 2020) run on Python 3, in memory.

The release imports fine except for ``geni.portal``, the one module a CloudLab profile needs.
Its defects (checked on the installed 0.9.9.4):

- ``geni/portal.py`` still has Python-2 ``print x`` statements and ``raw_input`` (a SyntaxError
  on import);
- ``six`` is imported but not declared (nfvlab's pyproject lists it);
- ``Request.writeXML`` writes the ``bytes`` of ``lxml.etree.tostring`` to a text file or stdout;
- BOOLEAN parameters are coerced with ``bool(str)``, so ``"false"`` binds as ``True``;
- ``Link.setNoBandwidthShaping`` exists only after ``import geni.rspec.emulab``;
- ``portal.Context`` is a per-process singleton (one request, one binding per process).

Why an in-memory patch and not a fork: nothing of geni-lib is committed here, the installed
package stays byte-identical (``pip check`` and upgrades keep working), and a profile written for
the real portal (which runs its own, fixed geni-lib) runs unchanged. The source of
``geni/portal.py`` is read from the installed file, the few line-level fixes below are applied, and
the result is compiled under the real module name and file path (tracebacks point at the installed
file). A release whose source no longer needs a fix just compiles; one whose fixed source still
fails raises :class:`GeniCompatError` naming the file.

The singleton is not patched: :mod:`nfvlab.cloudlab.render` runs each profile in a fresh
interpreter, exactly as the portal does, so every render gets a clean ``Context``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path

__all__ = ["GeniCompatError", "install", "parse_bool", "patch_portal_source"]

_PRINT_STMT = re.compile(r"^(?P<indent>\s*)print (?P<args>[^(].*?)\s*$")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}


class GeniCompatError(ImportError):
    """geni-lib cannot be made to run on this Python."""


def parse_bool(value: object) -> bool:
    """BOOLEAN profile parameters: accept real booleans and the strings the portal sends."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r} (use true/false)")


def patch_portal_source(source: str) -> str:
    """Return ``geni/portal.py`` with its Python-2 statements rewritten (line by line)."""
    out = []
    for line in source.splitlines():
        m = _PRINT_STMT.match(line)
        if m:
            line = f"{m['indent']}print({m['args']})"
        out.append(re.sub(r"\braw_input\(", "input(", line))
    return "\n".join(out) + "\n"


class _PatchedPortalLoader(importlib.abc.Loader):
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def create_module(self, spec):  # default module creation
        return None

    def exec_module(self, module) -> None:
        source = Path(self.origin).read_text()
        try:
            code = compile(patch_portal_source(source), self.origin, "exec")
        except SyntaxError as exc:
            raise GeniCompatError(f"{self.origin}: still not Python 3 after nfvlab's fixes: {exc}") from exc
        exec(code, module.__dict__)
        module.ParameterType.argparsemap[module.ParameterType.BOOLEAN] = parse_bool


class _PortalFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "geni.portal":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        return importlib.util.spec_from_file_location(fullname, spec.origin,
                                                      loader=_PatchedPortalLoader(spec.origin))


def _patch_write_xml() -> None:
    from geni.rspec import pg

    def write_xml(self, path=None):
        # The release writes bytes to a text stream; write the unicode serialisation instead.
        text = self.toXMLString(pretty_print=True, ucode=True)
        if path is None:
            sys.stdout.write(text)
        else:
            Path(path).write_text(text)

    pg.Request.writeXML = write_xml


def install() -> None:
    """Install the fixes; call before the profile imports ``geni.portal``. Idempotent."""
    if not any(isinstance(f, _PortalFinder) for f in sys.meta_path):
        if "geni.portal" in sys.modules:
            raise GeniCompatError("geni.portal was imported before nfvlab's fixes were installed")
        sys.meta_path.insert(0, _PortalFinder())
    try:
        import geni.rspec.emulab  # noqa: F401  registers Link.setNoBandwidthShaping & co.
        import six  # noqa: F401  imported by geni-lib, not declared by it
    except ImportError as exc:
        raise GeniCompatError(f"geni-lib is not installed or incomplete: {exc} (pip install geni-lib)") from exc
    _patch_write_xml()
