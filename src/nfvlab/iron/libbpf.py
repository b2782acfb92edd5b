"""Minimal ctypes binding of libbpf.so.1 (Debian's libbpf 1.1): just what Iron needs.

Objects are opened/loaded with libbpf, links are pinned under bpffs so that a crashed run can be
cleaned up by removing the pins; map access uses the raw fd helpers (``bpf_map_lookup_elem`` ...)
so the same code reads maps of another process through their pins (``bpf_obj_get``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

CLONE_NEWNET = 0x40000000
BPF_XDP = 37
BPF_TCX_INGRESS = 46

_lib: ctypes.CDLL | None = None
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class LibbpfError(OSError):
    pass


def lib() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    for name in ("libbpf.so.1", ctypes.util.find_library("bpf") or "libbpf.so"):
        try:
            handle = ctypes.CDLL(name, use_errno=True)
            break
        except OSError:
            continue
    else:
        raise LibbpfError(errno.ENOENT, "libbpf.so.1 not found (apt-get install libbpf1 / libbpf-dev)")
    vp, cp, i, u32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32
    sigs: dict[str, tuple[object, list[object]]] = {
        "bpf_object__open_file": (vp, [cp, vp]),
        "bpf_object__load": (i, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__find_program_by_name": (vp, [vp, cp]),
        "bpf_object__find_map_by_name": (vp, [vp, cp]),
        "bpf_program__set_autoload": (i, [vp, ctypes.c_bool]),
        "bpf_program__fd": (i, [vp]),
        "bpf_program__attach": (vp, [vp]),
        "bpf_program__attach_xdp": (vp, [vp, i]),
        "bpf_link__pin": (i, [vp, cp]),
        "bpf_link__destroy": (i, [vp]),
        "bpf_link__fd": (i, [vp]),
        "bpf_map__fd": (i, [vp]),
        "bpf_map__pin": (i, [vp, cp]),
        "bpf_map_lookup_elem": (i, [i, vp, vp]),
        "bpf_map_update_elem": (i, [i, vp, vp, ctypes.c_uint64]),
        "bpf_map_delete_elem": (i, [i, vp]),
        "bpf_obj_get": (i, [cp]),
        "bpf_obj_pin": (i, [i, cp]),
        "bpf_link_create": (i, [i, i, u32, vp]),
        "bpf_link_detach": (i, [i]),
        "libbpf_num_possible_cpus": (i, []),
        "libbpf_get_error": (ctypes.c_long, [vp]),
        "bpf_obj_get_info_by_fd": (i, [i, vp, ctypes.POINTER(u32)]),
    }
    for fn, (res, args) in sigs.items():
        f = getattr(handle, fn)
        f.restype = res
        f.argtypes = args
    _lib = handle
    return handle


def check(rc: int, what: str) -> int:
    if rc < 0:
        err = -rc if rc != -1 else (ctypes.get_errno() or 1)
        raise LibbpfError(err, f"{what}: {os.strerror(err)}")
    return rc


def check_ptr(ptr: int | None, what: str) -> int:
    if not ptr:
        err = ctypes.get_errno() or errno.EINVAL
        raise LibbpfError(err, f"{what}: {os.strerror(err)}")
    err = lib().libbpf_get_error(ptr)
    if err:
        raise LibbpfError(-err, f"{what}: {os.strerror(-err)}")
    return ptr


def possible_cpus() -> int:
    return check(lib().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


def obj_get(path: str | Path) -> int:
    return check(lib().bpf_obj_get(str(path).encode()), f"bpf_obj_get {path}")


def prog_id(fd: int) -> int:
    """The kernel's id of the program behind fd (bpf_prog_info.id)."""
    info = (ctypes.c_uint32 * 2)()  # struct bpf_prog_info starts with __u32 type, __u32 id
    n = ctypes.c_uint32(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)), "bpf_obj_get_info_by_fd")
    return int(info[1])


def link_detach(fd: int) -> None:
    check(lib().bpf_link_detach(fd), "bpf_link_detach")


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    return check(lib().bpf_link_create(prog_fd, target_fd, attach_type, None), "bpf_link_create")


def obj_pin(fd: int, path: str | Path) -> None:
    check(lib().bpf_obj_pin(fd, str(path).encode()), f"bpf_obj_pin {path}")


def map_lookup(fd: int, key: ctypes.Array | ctypes._SimpleCData | ctypes.Structure, value) -> bool:
    rc = lib().bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value))
    if rc < 0:
        if ctypes.get_errno() == errno.ENOENT or rc == -errno.ENOENT:
            return False
        check(rc, "bpf_map_lookup_elem")
    return True


def map_update(fd: int, key, value, flags: int = 0) -> None:
    check(lib().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), flags), "bpf_map_update_elem")


def map_delete(fd: int, key) -> None:
    rc = lib().bpf_map_delete_elem(fd, ctypes.byref(key))
    if rc < 0 and ctypes.get_errno() != errno.ENOENT and rc != -errno.ENOENT:
        check(rc, "bpf_map_delete_elem")


class InNetns:
    """Switch the calling thread into a named network namespace (``/run/netns/<name>``) and back."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self._orig: int | None = None

    def __enter__(self) -> InNetns:
        if not self.name:
            return self
        self._orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns {self.name}: {os.strerror(e)}")
        except BaseException:
            os.close(self._orig)
            self._orig = None
            raise
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._orig is None:
            return
        try:
            if _libc.setns(self._orig, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns back: {os.strerror(e)}")
        finally:
            os.close(self._orig)
            self._orig = None
