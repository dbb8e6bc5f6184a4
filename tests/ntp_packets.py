"""NTP server answers built byte by byte, for the tests that must send what no real server sends."""

from __future__ import annotations

import struct

from collectors.ntp.packet import NTP_UNIX_OFFSET


def ntp(unix: float) -> int:
    """Unix seconds as a 64-bit NTP timestamp (era 0)."""
    return round((unix + NTP_UNIX_OFFSET) * 2**32)


def server_packet(
    origin: bytes,
    *,
    leap: int = 0,
    version: int = 4,
    mode: int = 4,
    stratum: int = 2,
    refid: bytes = b"GPS\0",
    root_delay: float = 0.25,
    root_dispersion: float = 0.5,
    received: float = 1_800_000_000.5,
    transmitted: float = 1_800_000_000.75,
) -> bytes:
    """A server's answer echoing ``origin``; a zero ``received``/``transmitted`` is sent as zero."""
    first = (leap << 6) | (version << 3) | mode
    head = struct.pack(
        "!BBbbII4sQ",
        first,
        stratum,
        6,
        -20,
        int(root_delay * 65536),
        int(root_dispersion * 65536),
        refid,
        ntp(transmitted - 64) if transmitted else 0,
    )
    stamps = struct.pack("!QQ", ntp(received) if received else 0, ntp(transmitted) if transmitted else 0)
    return head + origin + stamps
