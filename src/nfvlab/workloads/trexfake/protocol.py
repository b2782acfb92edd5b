"""TRex's RPC message framing (``trex/utils/zipmsg.py`` of the client): zlib behind ``>II``."""

from __future__ import annotations

import struct
import zlib

MAGIC = 0xABE85CEA
_HEADER = struct.Struct(">II")


def is_compressed(msg: bytes) -> bool:
    return len(msg) >= _HEADER.size and _HEADER.unpack_from(msg)[0] == MAGIC


def compress(msg: bytes) -> bytes:
    return _HEADER.pack(MAGIC, len(msg)) + zlib.compress(msg)


def decompress(msg: bytes) -> bytes:
    magic, length = _HEADER.unpack_from(msg)
    if magic != MAGIC:
        raise ValueError(f"bad TRex compression magic 0x{magic:08X}")
    out = zlib.decompress(msg[_HEADER.size:])
    if len(out) != length:
        raise ValueError(f"TRex message length {len(out)} != header {length}")
    return out
