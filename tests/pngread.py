"""A tiny PNG reader for screenshot checks: 8-bit RGB/RGBA, non-interlaced (what Chromium writes),
with zlib from the standard library; no imaging dependency."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_rgb(path: Path) -> tuple[int, int, Iterator[tuple[int, int, int]]]:
    """Width, height and the pixels (row by row) of a PNG as RGB triples."""
    data = path.read_bytes()
    if not data.startswith(SIGNATURE):
        raise ValueError(f"{path}: not a PNG")
    pos, idat = len(SIGNATURE), bytearray()
    width = height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in (2, 6) or interlace:
                raise ValueError(f"{path}: only 8-bit RGB/RGBA, non-interlaced PNGs are read")
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp

    def pixels() -> Iterator[tuple[int, int, int]]:
        prev = bytearray(stride)
        for y in range(height):
            start = y * (stride + 1)
            line = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), prev, bpp)
            for x in range(0, stride, bpp):
                yield line[x], line[x + 1], line[x + 2]
            prev = line

    return width, height, pixels()


def _unfilter(ftype: int, line: bytearray, prev: bytearray, bpp: int) -> bytearray:
    if ftype == 0:
        return line
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if ftype == 1:
            pred = a
        elif ftype == 2:
            pred = b
        elif ftype == 3:
            pred = (a + b) // 2
        elif ftype == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
        else:
            raise ValueError(f"bad PNG filter type {ftype}")
        line[i] = (line[i] + pred) & 0xFF
    return line


def count_near(path: Path, colours: dict[str, tuple[int, int, int]], tolerance: int = 12) -> dict[str, int]:
    """How many pixels are within ``tolerance`` (per channel) of each named colour."""
    counts = dict.fromkeys(colours, 0)
    _, _, pixels = read_rgb(path)
    items = list(colours.items())
    for r, g, b in pixels:
        for name, (cr, cg, cb) in items:
            if abs(r - cr) <= tolerance and abs(g - cg) <= tolerance and abs(b - cb) <= tolerance:
                counts[name] += 1
                break
    return counts
