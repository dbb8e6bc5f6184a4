"""Misbehaving SNMP agents for tests: one that never answers, one that answers garbage, one whose walks
loop (non-increasing OIDs), and the hostile answers of ``HOSTILE``: truncated, oversized, for another
request id, the request echoed back, a response with broken inner types or a wrong outer tag. Each runs an asyncio UDP
server in its own thread on a free loopback port.

The looping agent speaks just enough SNMPv2c BER to be believable: GET answers every OID with
INTEGER 1, GETNEXT/GETBULK answer ``<requested>.1``, ``<requested>.2`` and then ``<requested>.1``
again, so a walk sees an OID that does not increase.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def enc_int(v: int) -> bytes:
    return tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def enc_oid(oid: str) -> bytes:
    parts = [int(p) for p in oid.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def dec_oid(b: bytes) -> str:
    parts = [b[0] // 40, b[0] % 40]
    cur = 0
    for x in b[1:]:
        cur = (cur << 7) | (x & 0x7F)
        if not x & 0x80:
            parts.append(cur)
            cur = 0
    return ".".join(map(str, parts))


def parse(b: bytes) -> list[tuple[int, bytes]]:
    """TLVs in ``b`` (one level)."""
    out, i = [], 0
    while i < len(b):
        tag, n = b[i], b[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(b[i : i + k], "big")
            i += k
        out.append((tag, b[i : i + n]))
        i += n
    return out


def loop_response(req: bytes, reqid_delta: int = 0) -> bytes | None:
    try:
        ((_, msg),) = parse(req)
        (_, ver), (_, community), (pdu_tag, pdu) = parse(msg)
        (_, reqid), _, _, (_, vbl) = parse(pdu)
        oids = [dec_oid(parse(vb)[0][1]) for _, vb in parse(vbl)]
    except (ValueError, IndexError):
        return None
    if pdu_tag == 0xA0:  # GET
        vbs = [(o, 1) for o in oids]
    else:  # GETNEXT / GETBULK: two steps forward, one back
        o = oids[0]
        vbs = [(o + ".1", 1), (o + ".2", 2), (o + ".1", 3)] if pdu_tag == 0xA5 else [(o + ".1", 1)]
        if pdu_tag == 0xA1 and o.endswith(".1"):
            vbs = [(o[: -len(".1")] + ".0", 1)]  # GETNEXT: step back
    body = b"".join(tlv(0x30, enc_oid(o) + enc_int(v)) for o, v in vbs)
    if reqid_delta:
        reqid = enc_int(int.from_bytes(reqid, "big", signed=True) + reqid_delta)[2:]
    resp_pdu = tlv(0xA2, tlv(0x02, reqid) + enc_int(0) + enc_int(0) + tlv(0x30, body))
    return tlv(0x30, tlv(0x02, ver) + tlv(0x04, community) + resp_pdu)


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        assert self.transport is not None
        if self.mode == "silent":
            return  # read and discard
        if self.mode == "garbage":
            self.transport.sendto(b"\x30\x03\x02\x01" + os.urandom(24), addr)
            return
        resp = hostile_response(self.mode, data) if self.mode in HOSTILE else loop_response(data)
        if resp is not None:
            self.transport.sendto(resp, addr)


#: answers a broken or hostile device (or a spoofer) may send; each must fail one poll and nothing more
HOSTILE = ("truncated", "oversized", "wrong_reqid", "echo", "bad_types", "bad_tag")


def hostile_response(mode: str, req: bytes) -> bytes | None:
    if mode == "echo":
        return req  # the request itself: a GET/GETBULK PDU where a response was expected
    if mode == "wrong_reqid":
        return loop_response(req, reqid_delta=1)
    resp = loop_response(req)
    if resp is None:
        return None
    if mode == "truncated":
        return resp[: len(resp) // 2]
    if mode == "bad_tag":  # the outer SEQUENCE tag turned into a private constructed one (pyasn1 TypeError)
        return b"\xf8" + resp[1:]
    if mode == "oversized":  # a well-formed envelope around 60 KB of filler where the PDU should be
        ((_, msg),) = parse(resp)
        (_, ver), (_, community), _ = parse(msg)
        return tlv(0x30, tlv(0x02, ver) + tlv(0x04, community) + tlv(0xA2, b"\x04" * 60_000))
    if mode == "bad_types":  # a response whose varbind list is an INTEGER and whose status is a string
        ((_, msg),) = parse(resp)
        (_, ver), (_, community), (_, pdu) = parse(msg)
        (_, reqid), _, _, _ = parse(pdu)
        bad = tlv(0xA2, tlv(0x02, reqid) + tlv(0x04, b"x") + enc_int(0) + enc_int(7))
        return tlv(0x30, tlv(0x02, ver) + tlv(0x04, community) + bad)
    raise ValueError(mode)


@dataclass
class FakeAgent:
    mode: str  # silent | garbage | loop | one of HOSTILE
    host: str = "127.0.0.1"
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _proto: _Proto | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> FakeAgent:
        self._thread = threading.Thread(target=self._run, name=f"fake-snmp-{self.mode}", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("fake agent did not start")
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()

        async def main() -> None:
            transport, proto = await loop.create_datagram_endpoint(
                lambda: _Proto(self.mode), local_addr=(self.host, 0)
            )
            self._proto = proto
            self.port = transport.get_extra_info("sockname")[1]
            self._ready.set()

        loop.run_until_complete(main())
        loop.run_forever()
        assert self._proto is not None and self._proto.transport is not None
        self._proto.transport.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    @property
    def received(self) -> int:
        return self._proto.received if self._proto else 0

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
