"""SNTP packets (RFC 4330, RFC 5905): the 48-byte client request and the checks a server's answer must pass.

Pure bytes in, values out: no sockets, no clock, so hostile packets are tested alone. The request carries
a random transmit timestamp instead of our clock (as chrony's client does): it leaks nothing about this
host's time, and a server must echo it as the origin timestamp, so an answer that does not is spoofed or
stale and is rejected.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800
PACKET_LEN = 48
MODE_CLIENT, MODE_SERVER = 3, 4
LEAP_UNSYNCHRONISED = 3
#: Root distance beyond which a server's time is unusable (RFC 5905 MAXDISP, 16 s).
MAX_ROOT_DISTANCE = 16.0

#: Kiss codes of RFC 5905 section 7.4; any other code becomes ``kod`` so the reason set stays bounded.
KISS_CODES = frozenset(
    ("ACST", "AUTH", "AUTO", "BCST", "CRYP", "DENY", "DROP", "RSTR", "INIT", "MCST", "NKEY", "RATE", "RMOT",
     "STEP")
)  # fmt: skip

#: Every reason a packet is rejected for (``kod_<code>`` besides, from ``KISS_CODES``).
REASONS = ("short_packet", "bad_version", "bad_mode", "bad_origin", "bad_timestamps", "unsynchronised",
           "bad_root_distance", "kod")  # fmt: skip

_HEADER = struct.Struct("!BBbbII4sQQQQ")


class PacketError(Exception):
    """The answer is unusable; ``reason`` is a bounded label value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Answer:
    """A server's answer, its timestamps as Unix seconds."""

    leap: int
    version: int
    stratum: int
    poll: int
    precision: int
    root_delay: float
    root_dispersion: float
    reference_id: bytes
    reference: float
    received: float  # T2: when the server received our request
    transmitted: float  # T3: when the server sent its answer


def request(version: int = 4) -> tuple[bytes, bytes]:
    """A client request and the 8-byte cookie the answer must echo as its origin timestamp."""
    cookie = os.urandom(8)
    if cookie == bytes(8):  # zero means "no timestamp"; a server would echo it as nothing
        cookie = b"\x00" * 7 + b"\x01"
    first = (0 << 6) | (version << 3) | MODE_CLIENT
    return bytes((first,)) + bytes(39) + cookie, cookie


def ntp_to_unix(value: int) -> float:
    """A 64-bit NTP timestamp as Unix seconds. A top bit of 0 means era 1 (from 2036), as RFC 4330 says."""
    seconds, fraction = value >> 32, value & 0xFFFF_FFFF
    if not seconds & 0x8000_0000:
        seconds += 1 << 32
    return seconds - NTP_UNIX_OFFSET + fraction / 2**32


def _short(value: int) -> float:
    """An NTP short format (16.16 fixed point) as seconds."""
    return value / 65536


def parse(data: bytes, cookie: bytes) -> Answer:
    """Check and decode a server's answer to the request that carried ``cookie``; raises ``PacketError``.

    The order matters: an answer that does not echo the cookie is not an answer to us, so nothing else
    it says (a kiss code, a leap indicator) is believed."""
    if len(data) < PACKET_LEN:
        raise PacketError("short_packet", f"{len(data)} bytes, an NTP packet has at least {PACKET_LEN}")
    first, stratum, poll, precision, delay, dispersion, refid, ref, _origin, recv, xmt = _HEADER.unpack_from(
        data
    )
    leap, version, mode = first >> 6, (first >> 3) & 7, first & 7
    if data[24:32] != cookie:
        raise PacketError("bad_origin", "origin timestamp is not the one we sent: spoofed or stale answer")
    if mode != MODE_SERVER:
        raise PacketError("bad_mode", f"mode {mode}, a server answers with mode {MODE_SERVER}")
    if not 1 <= version <= 4:
        raise PacketError("bad_version", f"version {version}")
    if stratum == 0:
        code = refid.decode("ascii", "replace")
        reason = f"kod_{code.lower()}" if code in KISS_CODES else "kod"
        raise PacketError(reason, f"kiss-o'-death {code!r}: the server asks us to stop or slow down")
    if leap == LEAP_UNSYNCHRONISED or stratum > 15:
        raise PacketError("unsynchronised", f"server is not synchronised (leap {leap}, stratum {stratum})")
    if xmt == 0 or recv == 0:
        raise PacketError("bad_timestamps", "receive or transmit timestamp is zero")
    answer = Answer(
        leap=leap,
        version=version,
        stratum=stratum,
        poll=poll,
        precision=precision,
        root_delay=_short(delay),
        root_dispersion=_short(dispersion),
        reference_id=refid,
        reference=ntp_to_unix(ref) if ref else 0.0,
        received=ntp_to_unix(recv),
        transmitted=ntp_to_unix(xmt),
    )
    if answer.transmitted < answer.received:
        raise PacketError("bad_timestamps", "the server sent its answer before it received our request")
    if answer.root_delay / 2 + answer.root_dispersion > MAX_ROOT_DISTANCE:
        raise PacketError("bad_root_distance", "root distance beyond 16 s: the server's time is unusable")
    return answer


def offset_and_rtt(answer: Answer, sent: float, arrived: float) -> tuple[float, float]:
    """(clock offset, round trip) from our send/arrival times (T1, T4) and the server's (T2, T3).

    The offset is the server's clock minus ours: add it to this host's time to get the server's."""
    t2, t3 = answer.received, answer.transmitted
    return ((t2 - sent) + (t3 - arrived)) / 2, max(0.0, (arrived - sent) - (t3 - t2))
