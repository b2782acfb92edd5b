"""Remove every BPF program, link and pin nfvlab's Iron created (``nfvlab clean`` calls this).

Links are pinned under ``/sys/fs/bpf/nfvlab/<tag>/link_*`` and maps beside them; a loaded program
stays alive only through these pins or through a live process's file descriptors. For every pinned
link we first force a detach (``BPF_LINK_DETACH``, supported for XDP and tcx links, so the drop
programs leave the veths even if their owner is still alive), then unlink the pin; once the last
reference is gone the kernel unloads the programs and maps.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from . import libbpf as lb
from .bpf import META_ROOT, PIN_ROOT

log = logging.getLogger(__name__)


def unload_all(pin_root: Path = PIN_ROOT, meta_root: Path = META_ROOT) -> list[str]:
    """Detach and unpin everything under ``/sys/fs/bpf/nfvlab``; return what was removed."""
    removed: list[str] = []
    if pin_root.is_dir():
        for entry in sorted(pin_root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if entry.is_dir():
                continue
            if entry.name.startswith("link_"):
                try:
                    fd = lb.obj_get(entry)
                    try:
                        lb.link_detach(fd)
                    except OSError:
                        pass  # tracing links cannot be force-detached: unpinning releases them
                    finally:
                        os.close(fd)
                except OSError as e:
                    log.debug("iron cleanup: %s: %s", entry, e)
            try:
                entry.unlink()
                removed.append(str(entry))
            except FileNotFoundError:
                pass
        for d in sorted((p for p in pin_root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                        reverse=True):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
        try:
            pin_root.rmdir()
            removed.append(str(pin_root))
        except OSError:
            pass
    if meta_root.is_dir():
        for f in meta_root.glob("*.json"):
            f.unlink(missing_ok=True)
            removed.append(str(f))
    return removed
