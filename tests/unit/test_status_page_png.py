"""The small PNG reader the status page's screenshot test counts colours with: every row filter,
RGB and RGBA, and refusal of what it does not read."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.pngread import count_near, read_rgb


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def encode(rows: Sequence[Sequence[tuple[int, ...]]], filters: list[int], colour: int = 2) -> bytes:
    """A PNG of ``rows`` (RGB or RGBA pixels), each row filtered with the given type."""
    bpp = 3 if colour == 2 else 4
    raw = b""
    prev = bytes(len(rows[0]) * bpp)
    for row, ftype in zip(rows, filters, strict=True):
        line = bytes(v for px in row for v in px)
        out = bytearray()
        for i, x in enumerate(line):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[ftype]
            out.append((x - pred) & 0xFF)
        raw += bytes([ftype]) + bytes(out)
        prev = line
    ihdr = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


RED, ORANGE, WHITE = (211, 47, 47), (239, 108, 0), (255, 255, 255)


@pytest.mark.parametrize("colour", [2, 6])
def test_every_filter_type(tmp_path: Path, colour: int) -> None:
    rows = [
        [RED, ORANGE, WHITE, (1, 2, 3)],
        [(200, 10, 250), RED, RED, ORANGE],
        [WHITE, (0, 0, 0), (255, 0, 128), RED],
        [ORANGE, ORANGE, (17, 99, 201), WHITE],
        [(90, 91, 92), RED, WHITE, (3, 2, 1)],
    ]
    pixels = [[(*px, 255) for px in row] for row in rows] if colour == 6 else rows
    png = tmp_path / "t.png"
    png.write_bytes(encode(pixels, [0, 1, 2, 3, 4], colour))
    width, height, got = read_rgb(png)
    assert (width, height) == (4, 5)
    assert list(got) == [px for row in rows for px in row]
    assert count_near(png, {"red": RED, "orange": ORANGE}, tolerance=0) == {"red": 5, "orange": 4}


def test_refuses_what_it_does_not_read(tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG"):
        read_rgb(bad)
    grey = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", grey))
    with pytest.raises(ValueError, match="only 8-bit RGB"):
        read_rgb(bad)
