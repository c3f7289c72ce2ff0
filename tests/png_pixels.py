"""Decode an 8-bit, non-interlaced RGB/RGBA PNG (what chromium's --screenshot writes) into rows of pixels, without
an imaging library: enough for a test to tell a rendered page from a blank one."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def read_png(path) -> np.ndarray:
    """(height, width, channels) uint8 array."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, colour, _c, _f, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.uint8)
    prev = np.zeros(width * bpp, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 0xFF
        elif kind == 2:  # Up
            cur = (line + prev) & 0xFF
        else:  # Average, Paeth: left-dependent, byte by byte (plain lists: numpy scalars are slow here)
            filt, up, rec = line.tolist(), prev.tolist(), [0] * (width * bpp)
            for i in range(width * bpp):
                a = rec[i - bpp] if i >= bpp else 0
                b = up[i]
                if kind == 3:
                    rec[i] = (filt[i] + ((a + b) >> 1)) & 0xFF
                    continue
                c = up[i - bpp] if i >= bpp else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                rec[i] = (filt[i] + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))) & 0xFF
            cur = np.array(rec, dtype=np.int32)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)
