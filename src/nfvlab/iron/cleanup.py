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


def _owner_alive(instance: Path) -> bool:
    """``iron-<pid>-<n>``: is that process still running (and not us)?"""
    parts = instance.name.split("-")
    if len(parts) < 2 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    return pid != os.getpid() and os.path.exists(f"/proc/{pid}")


def unload_all(pin_root: Path = PIN_ROOT, meta_root: Path = META_ROOT, force: bool = False) -> list[str]:
    """Detach and unpin everything under ``/sys/fs/bpf/nfvlab``; return what was removed.

    Instances whose owning process is still alive (an experiment running right now, e.g. in another
    shell) are left alone unless ``force``: their ``IronRuntime`` will unload them on exit.
    """
    removed: list[str] = []
    if pin_root.is_dir():
        live = [d for d in pin_root.iterdir() if d.is_dir() and not force and _owner_alive(d)]
        for d in live:
            log.info("iron cleanup: %s belongs to running pid, left alone (force=True removes it)", d)
        entries = [p for p in pin_root.rglob("*") if not any(p == d or d in p.parents for d in live)]
        for entry in sorted(entries, key=lambda p: len(p.parts), reverse=True):
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
        for d in sorted((p for p in entries if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
        try:
            pin_root.rmdir()
            removed.append(str(pin_root))
        except OSError:
            pass
    if meta_root.is_dir():
        live_names = {d.name for d in live} if pin_root.is_dir() else set()
        for f in meta_root.glob("*.json"):
            if f.stem in live_names:
                continue
            f.unlink(missing_ok=True)
            removed.append(str(f))
    return removed
