"""One asyncio ICMP echo engine per process: one socket per address family, shared by every probe.

Why not a socket (or thread, or process) per target: with raw sockets the kernel copies every incoming
ICMP packet to *each* raw socket, so N sockets cost N² copies and lose replies under load. One socket
per family, replies demultiplexed by sequence number (and identifier on raw sockets), stays cheap at
thousands of targets.

Two socket modes:

- ``dgram``: unprivileged ICMP datagram ("ping") sockets, allowed when the agent's group is inside
  ``net.ipv4.ping_group_range`` (the sysctl covers IPv6 too). The kernel rewrites the echo identifier to
  the socket's port and only hands us our own replies, so replies are matched by sequence and source.
  ICMP errors (unreachable, TTL exceeded, fragmentation needed) arrive on the socket's error queue once
  ``IP_RECVERR``/``IPV6_RECVERR`` is set.
- ``raw``: raw ICMP sockets (CAP_NET_RAW). We choose the identifier and parse ICMP errors ourselves from
  the original header the router embeds; ``ICMP_FILTER`` keeps everything but replies and errors out.

Sends go through one sender task that yields to the event loop every few packets, so replies are read
while a burst of thousands of echoes is still going out (a full receive buffer drops replies, which would
show as false loss). Receive times are the kernel's (``SO_TIMESTAMPNS``), so a busy event loop does not
inflate round-trip times.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import math
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.kernel.errors import StartupError

# Linux constants the socket module does not export (include/uapi/linux/in.h, in6.h, errqueue.h, icmp.h).
IP_RECVERR = 11
IP_RECVTTL = 12
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_DO = 2
IPV6_RECVERR = 25
IPV6_MTU_DISCOVER = 23
IPV6_PMTUDISC_DO = 2
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3

ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
ICMP6_DEST_UNREACH, ICMP6_PACKET_TOO_BIG, ICMP6_TIME_EXCEEDED = 1, 2, 3
ICMP6_ECHO, ICMP6_ECHO_REPLY = 128, 129

#: Every value the ``reason`` label can take for an ICMP probe (bounded on purpose).
REASONS = (
    "timeout",  # no reply and no ICMP error before the deadline
    "net_unreachable",
    "host_unreachable",
    "port_unreachable",
    "admin_prohibited",
    "frag_needed",  # don't-fragment set and the path MTU is smaller than the packet
    "ttl_exceeded",
    "unreachable",  # any other destination-unreachable code
    "send_error",  # the local stack refused to send (no route, interface down)
    "resolve",  # the target name did not resolve
)

_SEQ_SPACE = 1 << 16
_SEND_BATCH = 32  # packets sent before the sender yields so the reader can drain replies
_RCVBUF = 4 << 20
_ERR_STRUCT = struct.Struct("=IBBBBII")  # struct sock_extended_err
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_CSUM_ID_SEQ = struct.Struct("!HHH")  # checksum, identifier, sequence (offset 2)
_SEQ = struct.Struct("!H")  # sequence (offset 6)
_ID_SEQ = struct.Struct("!HH")
_TIMESPEC = struct.Struct("=qq")
_INT = struct.Struct("=i")


def icmp_reason(family: int, icmp_type: int, code: int) -> str | None:
    """The bounded reason for an ICMP error type/code, or None if it is not an error we track."""
    if family == socket.AF_INET:
        if icmp_type == ICMP_TIME_EXCEEDED:
            return "ttl_exceeded"
        if icmp_type == ICMP_DEST_UNREACH:
            return {
                0: "net_unreachable",
                1: "host_unreachable",
                3: "port_unreachable",
                4: "frag_needed",
                6: "net_unreachable",
                7: "host_unreachable",
                9: "admin_prohibited",
                10: "admin_prohibited",
                13: "admin_prohibited",
            }.get(code, "unreachable")
        return None
    if icmp_type == ICMP6_TIME_EXCEEDED:
        return "ttl_exceeded"
    if icmp_type == ICMP6_PACKET_TOO_BIG:
        return "frag_needed"
    if icmp_type == ICMP6_DEST_UNREACH:
        return {
            0: "net_unreachable",
            1: "admin_prohibited",
            3: "host_unreachable",
            4: "port_unreachable",
        }.get(code, "unreachable")
    return None


_ERRNO_REASON = {
    errno.ENETUNREACH: "net_unreachable",
    errno.EHOSTUNREACH: "host_unreachable",
    errno.EMSGSIZE: "frag_needed",
    errno.EACCES: "admin_prohibited",
    errno.EPERM: "admin_prohibited",
}


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass
class EchoResult:
    """What one probe saw: packets sent, round-trip times of the replies, and ICMP errors by reason."""

    sent: int = 0
    rtts: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # reason -> count (a Counter is slow to create)
    hop_limit: int | None = None

    @property
    def received(self) -> int:
        return len(self.rtts)


_NO_RESULT = EchoResult()  # placeholder in a batch's result list until the probe finishes


class _PingRound:
    """The probes of one ``ping_many`` call: their results in order, reported as each probe finishes."""

    __slots__ = ("done", "on_result", "results", "waiting")

    def __init__(
        self, n: int, loop: asyncio.AbstractEventLoop, on_result: Callable[[int, EchoResult], None] | None
    ) -> None:
        self.results: list[EchoResult] = [_NO_RESULT] * n
        self.waiting = n
        self.on_result = on_result
        self.done: asyncio.Future[None] = loop.create_future()

    def finished(self, probe: _Probe) -> None:
        result = EchoResult(probe.sent, probe.rtts, probe.errors, probe.hop_limit)
        self.results[probe.slot] = result
        if self.on_result is not None:
            self.on_result(probe.slot, result)
        self.waiting -= 1
        if not self.waiting and not self.done.done():
            self.done.set_result(None)


class _Probe:
    """One in-flight probe: its destination, send times by packet index, and what came back.

    Plain attributes rather than a result object per probe: the receive path updates them in place.
    """

    __slots__ = (
        "addr",
        "answered",
        "batch",
        "errors",
        "expected",
        "finished",
        "hop_limit",
        "rtts",
        "sent",
        "sent_ns",
        "seqs",
        "slot",
        "sock",
    )

    def __init__(self, addr: str, count: int, sock: _Socket, batch: _PingRound, slot: int) -> None:
        self.addr = addr
        self.sock = sock
        self.batch = batch
        self.slot = slot
        self.sent_ns: list[int] = [0] * count
        self.seqs: list[int] = []
        self.rtts: list[float] = []
        self.errors: dict[str, int] = {}  # reason -> count (a Counter is slow to create)
        self.hop_limit: int | None = None
        self.sent = 0
        self.expected = count
        self.answered = 0  # replies plus errors
        self.finished = False

    def finish(self) -> None:
        """Done (every echo answered, or the reply window closed): forget what is still unanswered, so
        late replies are ignored, and report."""
        if self.finished:
            return
        self.finished = True
        if self.answered < self.sent:
            pending = self.sock.pending
            for seq in self.seqs:
                entry = pending.get(seq)
                if entry is not None and entry[0] is self:
                    del pending[seq]
        self.batch.finished(self)

    def reply(self, index: int, recv_ns: int, hop_limit: int | None) -> None:
        self.rtts.append(max(0, recv_ns - self.sent_ns[index]) / 1e9)
        if hop_limit is not None:
            self.hop_limit = hop_limit
        self.answered += 1
        if self.answered >= self.expected:
            self.finish()

    def error(self, reason: str) -> None:
        errors = self.errors
        errors[reason] = errors.get(reason, 0) + 1
        self.answered += 1
        if self.answered >= self.expected:
            self.finish()


def _finish_all(probes: list[_Probe]) -> None:
    for p in probes:
        p.finish()


class _Socket:
    """One ICMP socket (one family, one don't-fragment setting) and the probes waiting on it."""

    def __init__(self, engine: IcmpEngine, family: int, mode: str, dont_fragment: bool) -> None:
        self.engine = engine
        self.family = family
        self.mode = mode
        self.v6 = family == socket.AF_INET6
        proto = socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP
        kind = socket.SOCK_DGRAM if mode == "dgram" else socket.SOCK_RAW
        self.sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, proto)
        try:
            self._configure(dont_fragment)
        except OSError:
            self.sock.close()
            raise
        if mode == "dgram":
            self.sock.bind(("::", 0) if self.v6 else ("0.0.0.0", 0))  # noqa: S104 - ICMP has no port to expose
            self.ident = self.sock.getsockname()[1]  # the kernel puts the socket's "port" in the identifier
        else:
            self.ident = (os.getpid() ^ id(self)) & 0xFFFF
        self.pending: dict[int, tuple[_Probe, int]] = {}
        self._templates: dict[int, tuple[bytearray, int]] = {}
        self.next_seq = int.from_bytes(os.urandom(2), "big")
        self.echo_type = ICMP6_ECHO if self.v6 else ICMP_ECHO
        self.reply_type = ICMP6_ECHO_REPLY if self.v6 else ICMP_ECHO_REPLY
        self.engine.loop.add_reader(self.sock.fileno(), self._on_readable)

    def _configure(self, dont_fragment: bool) -> None:
        s = self.sock
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, _RCVBUF)
        except OSError:  # without CAP_NET_ADMIN: capped by net.core.rmem_max
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if self.v6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            if dont_fragment:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DONTFRAG, 1)
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO)
            if self.mode == "dgram":
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            else:
                # struct icmp6_filter: a set bit blocks that type; let replies and errors through.
                words = [0xFFFFFFFF] * 8
                for t in (ICMP6_ECHO_REPLY, ICMP6_DEST_UNREACH, ICMP6_PACKET_TOO_BIG, ICMP6_TIME_EXCEEDED):
                    words[t >> 5] &= ~(1 << (t & 31)) & 0xFFFFFFFF
                s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *words))
        else:
            if self.mode == "dgram":  # raw sockets read the TTL from the IP header
                s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            # DONT really lets routers fragment; Linux's default ("want") sets DF anyway.
            s.setsockopt(
                socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO if dont_fragment else IP_PMTUDISC_DONT
            )
            if self.mode == "dgram":
                s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            else:
                allowed = (1 << ICMP_ECHO_REPLY) | (1 << ICMP_DEST_UNREACH) | (1 << ICMP_TIME_EXCEEDED)
                s.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", ~allowed & 0xFFFFFFFF))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.engine.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        probes = [probe for probe, _ in self.pending.values()]
        self.pending.clear()
        _finish_all(probes)

    def template(self, size: int) -> tuple[bytearray, int]:
        """A reusable echo request of ``size`` payload bytes and the folded sum of its constant words.

        The sender writes the sequence number (and, on raw IPv4, the checksum) into it before each send,
        so an echo costs no packet building.
        """
        cached = self._templates.get(size)
        if cached is None:
            payload = self.engine.payload(size)
            buf = bytearray(_HEADER.pack(self.echo_type, 0, 0, self.ident, 0) + payload)
            padded = payload + b"\0" if size % 2 else payload
            total = sum(struct.unpack(f"!{len(padded) // 2}H", padded)) + (self.echo_type << 8) + self.ident
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            cached = self._templates[size] = (buf, total)
        return cached

    # -- receiving -------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        """Drain the socket. Echo replies take an inlined path (this runs once per reply); ICMP errors
        and anything unusual go to ``_other``."""
        recvmsg = self.sock.recvmsg
        pending = self.pending
        raw4 = self.mode == "raw" and not self.v6
        check_ident = self.mode == "raw"
        ident, reply_type, v6 = self.ident, self.reply_type, self.v6
        unpack_ts, unpack_id_seq, time_ns = _TIMESPEC.unpack_from, _ID_SEQ.unpack_from, time.time_ns
        for _ in range(256):  # bounded, so one busy socket cannot starve the loop
            try:
                data, anc, _flags, src = recvmsg(2048, 256)
            except BlockingIOError:
                break
            except OSError:
                # With IP_RECVERR a queued ICMP error is first reported as a pending socket error;
                # the details are on the error queue, drained below.
                self._drain_errqueue()
                continue
            recv_ns = 0
            hop: int | None = None
            for level, ctype, cdata in anc:
                if ctype == SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
                    sec, nsec = unpack_ts(cdata)
                    recv_ns = sec * 1_000_000_000 + nsec
                elif (level == socket.IPPROTO_IP and ctype == socket.IP_TTL) or (
                    level == socket.IPPROTO_IPV6 and ctype == socket.IPV6_HOPLIMIT
                ):
                    hop = _INT.unpack_from(cdata)[0]
            off = 0
            if raw4:  # raw IPv4 sockets see the IP header
                off = (data[0] & 0x0F) * 4
                hop = data[8]
            if len(data) < off + 8:
                continue
            if data[off] != reply_type:
                if check_ident:
                    self._other(data[off:])
                continue
            rid, seq = unpack_id_seq(data, off + 4)
            if check_ident and rid != ident:
                continue
            entry = pending.get(seq)
            if entry is None:
                continue  # late, duplicate, or someone else's reply
            probe, index = entry
            if probe.addr != (_norm(src[0]) if v6 else src[0]):
                continue
            del pending[seq]
            probe.rtts.append(max(0, (recv_ns or time_ns()) - probe.sent_ns[index]) / 1e9)
            if hop is not None:
                probe.hop_limit = hop
            probe.answered += 1
            if probe.answered >= probe.expected:
                probe.finish()
        if self.mode == "dgram":
            self._drain_errqueue()

    def _drain_errqueue(self) -> None:
        if self.mode != "dgram":
            return
        for _ in range(256):
            try:
                data, anc, _flags, dst = self.sock.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            for level, ctype, cdata in anc:
                if (level, ctype) not in (
                    (socket.IPPROTO_IP, IP_RECVERR),
                    (socket.IPPROTO_IPV6, IPV6_RECVERR),
                ):
                    continue
                if len(cdata) < _ERR_STRUCT.size or len(data) < 8:
                    continue
                ee_errno, origin, etype, code, _pad, _info, _data = _ERR_STRUCT.unpack_from(cdata)
                if origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
                    reason = icmp_reason(self.family, etype, code)
                else:
                    reason = _ERRNO_REASON.get(ee_errno, "send_error")
                seq = struct.unpack_from("!H", data, 6)[0]
                self._error(seq, _norm(dst[0]), reason or "unreachable")

    def _other(self, icmp: bytes) -> None:
        """An ICMP message on a raw socket that is not an echo reply: match errors to their echo."""
        itype, code = icmp[0], icmp[1]
        reason = icmp_reason(self.family, itype, code)
        if reason is None:
            return
        # The error embeds the original IP header and the first 8 bytes of our echo request.
        inner = icmp[8:]
        if self.v6:
            if len(inner) < 48 or inner[6] != socket.IPPROTO_ICMPV6:
                return
            dst = socket.inet_ntop(socket.AF_INET6, inner[24:40])
            echo = inner[40:48]
        else:
            if len(inner) < 20:
                return
            ihl = (inner[0] & 0x0F) * 4
            if inner[9] != socket.IPPROTO_ICMP or len(inner) < ihl + 8:
                return
            dst = socket.inet_ntoa(inner[16:20])
            echo = inner[ihl : ihl + 8]
        if echo[0] != self.echo_type:
            return
        ident, seq = struct.unpack_from("!HH", echo, 4)
        if ident == self.ident:
            self._error(seq, dst, reason)

    def _error(self, seq: int, dst: str, reason: str) -> None:
        entry = self.pending.get(seq)
        if entry is None or entry[0].addr != dst:
            return
        del self.pending[seq]
        entry[0].error(reason)


def _parse_ip(address: str) -> tuple[int, str]:
    """(family, the address as the kernel reports it) for an IP literal; ValueError otherwise.

    inet_pton/inet_ntop rather than ``ipaddress``: ten times cheaper, and the same text recvmsg gives.
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return family, socket.inet_ntop(family, socket.inet_pton(family, address))
        except OSError:
            continue
    raise ValueError(f"not an IP address: {address!r}")


def _norm(addr: str) -> str:
    """Canonical text of an address as the kernel reports it (drops any %scope)."""
    return addr.split("%", 1)[0]


class _Run:
    """The sender's unit of work: echo number ``index`` of a list of probes on one socket."""

    __slots__ = ("index", "last", "pos", "probes", "size", "sock", "timeout", "ttl")

    def __init__(
        self,
        sock: _Socket,
        probes: list[_Probe],
        index: int,
        last: bool,
        size: int,
        ttl: int | None,
        timeout: float,
    ) -> None:
        self.sock, self.probes, self.index, self.last = sock, probes, index, last
        self.size, self.ttl, self.timeout = size, ttl, timeout
        self.pos = 0  # next probe to send to


class _Timers:
    """Callbacks grouped by due time at 1 ms resolution: one event-loop timer per millisecond in use
    rather than one per echo (the loop's timer heap compares handles in Python code)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[int, list[tuple[Callable[[Any], None], Any]]] = {}

    def at(self, when: float, fn: Callable[[Any], None], arg: Any) -> None:
        key = math.ceil(when * 1000)
        calls = self.due.get(key)
        if calls is None:
            calls = self.due[key] = []
            self.loop.call_at(key / 1000, self._fire, key)
        calls.append((fn, arg))

    def _fire(self, key: int) -> None:
        for fn, arg in self.due.pop(key, ()):
            fn(arg)


class IcmpEngine:
    """Shared ICMP sockets, the sender task, and ``ping()`` for any number of concurrent probes."""

    def __init__(
        self, mode: str = "auto", max_packets_per_second: float = 0.0, payload_fill: bytes = b""
    ) -> None:
        if mode not in ("auto", "dgram", "raw"):
            raise ValueError(f"mode must be auto, dgram or raw, got {mode!r}")
        self.requested_mode = mode
        self.mode = ""
        self.max_pps = max_packets_per_second
        self._fill = payload_fill or b"giamsat-icmp-probe."
        self._sockets: dict[tuple[int, bool], _Socket] = {}
        self._queue: collections.deque[_Run] = collections.deque()
        self._batches: set[_PingRound] = set()
        self._wake: asyncio.Future[None] | None = None
        self._timers: _Timers | None = None
        self._sender: asyncio.Task[None] | None = None
        self._payloads: dict[int, bytes] = {}
        self._parsed: dict[str, tuple[int, str]] = {}  # address -> (family, text as recvmsg gives it)
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()

    async def start(self) -> None:
        """Pick the socket mode (probing an IPv4 socket) and start the sender; raise if ICMP is impossible."""
        self.loop = asyncio.get_running_loop()
        modes = ["dgram", "raw"] if self.requested_mode == "auto" else [self.requested_mode]
        problems = []
        for mode in modes:
            try:
                self._sockets[(socket.AF_INET, False)] = _Socket(self, socket.AF_INET, mode, False)
            except OSError as exc:
                problems.append(f"{mode}: {exc.strerror or exc}")
                continue
            self.mode = mode
            break
        else:
            raise StartupError(
                "cannot open an ICMP socket ("
                + "; ".join(problems)
                + "). Either allow unprivileged ping sockets for the agent's group, e.g. "
                "`sysctl -w net.ipv4.ping_group_range='0 2147483647'` (persist it in /etc/sysctl.d/), "
                "or give the agent CAP_NET_RAW (systemd: AmbientCapabilities=CAP_NET_RAW)."
            )
        self._timers = _Timers(self.loop)
        self._sender = asyncio.create_task(self._send_loop(), name="giamsat-icmp-sender")

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        for s in self._sockets.values():
            s.close()
        self._sockets.clear()
        self._queue.clear()
        for batch in list(self._batches):  # probes between two echoes are in no socket's pending map
            if not batch.done.done():
                batch.done.set_result(None)

    def _socket(self, family: int, dont_fragment: bool) -> _Socket:
        key = (family, dont_fragment)
        s = self._sockets.get(key)
        if s is None:
            s = self._sockets[key] = _Socket(self, family, self.mode, dont_fragment)
        return s

    def payload(self, size: int) -> bytes:
        cached = self._payloads.get(size)
        if cached is None:
            cached = self._payloads[size] = (self._fill * (size // len(self._fill) + 1))[:size]
        return cached

    async def ping(
        self,
        address: str,
        *,
        count: int = 3,
        interval: float = 1.0,
        timeout: float = 2.0,
        payload_size: int = 56,
        dont_fragment: bool = False,
        ttl: int | None = None,
    ) -> EchoResult:
        """Send ``count`` echoes to an IP address, ``interval`` apart; wait ``timeout`` after the last one."""
        results = await self.ping_many(
            [address],
            count=count,
            interval=interval,
            timeout=timeout,
            payload_size=payload_size,
            dont_fragment=dont_fragment,
            ttl=ttl,
        )
        return results[0]

    async def ping_many(
        self,
        addresses: Sequence[str],
        *,
        count: int = 3,
        interval: float = 1.0,
        timeout: float = 2.0,
        payload_size: int = 56,
        dont_fragment: bool = False,
        ttl: int | None = None,
        on_result: Callable[[int, EchoResult], None] | None = None,
    ) -> list[EchoResult]:
        """``ping`` many IP addresses with the same settings; results in the order of ``addresses``.

        Echo number i goes to every address in one sender run rather than one queue entry and one timer
        per probe, which is most of what a probe costs at thousands of targets. ``on_result(i, result)``
        is called as each probe finishes (so one dead address never holds up the others' results); it
        must be quick and must not raise.
        """
        if self._timers is None:
            raise RuntimeError("IcmpEngine.start() was not awaited")
        batch = _PingRound(len(addresses), self.loop, on_result)
        by_socket: dict[_Socket, list[_Probe]] = {}
        failed: list[_Probe] = []
        for slot, address in enumerate(addresses):
            parsed = self._parsed.get(address)
            if parsed is None:
                if len(self._parsed) >= 100_000:  # addresses from DNS may change: keep it bounded
                    self._parsed.clear()
                parsed = self._parsed[address] = _parse_ip(address)
            family, canonical = parsed
            try:
                sock = self._socket(family, dont_fragment)
            except OSError:
                sock = self._sockets[(socket.AF_INET, False)]
                probe = _Probe(canonical, count, sock, batch, slot)
                probe.errors["send_error"] = 1
                failed.append(probe)
                continue
            probes = by_socket.get(sock)
            if probes is None:
                probes = by_socket[sock] = []
            probes.append(_Probe(canonical, count, sock, batch, slot))
        self._batches.add(batch)
        try:
            _finish_all(failed)
            now = self.loop.time()
            for sock, probes in by_socket.items():
                # Timers, not a sleeping coroutine per echo: cheaper with thousands of probes in flight.
                self._enqueue(_Run(sock, probes, 0, count == 1, payload_size, ttl, timeout))
                for i in range(1, count):
                    run = _Run(sock, probes, i, i == count - 1, payload_size, ttl, timeout)
                    self._timers.at(now + i * interval, self._enqueue, run)
            if batch.waiting:
                # Resolved when every probe has every echo answered (or errored), or ``timeout`` after the
                # sender really sent its last echo (it may be rate limited).
                await batch.done
        finally:
            self._batches.discard(batch)
            if batch.waiting:  # cancelled, or the engine closed: echoes still due are skipped
                batch.on_result = None
                for probes in by_socket.values():
                    _finish_all(probes)
        return batch.results

    def _enqueue(self, run: _Run) -> None:
        self._queue.append(run)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _send_loop(self) -> None:
        queue = self._queue
        window_start = self.loop.time()
        window_sent = 0
        while True:
            if not queue:
                self._wake = self.loop.create_future()
                await self._wake
                continue
            budget = _SEND_BATCH
            if self.max_pps > 0:
                budget = max(1, min(budget, int(self.max_pps / 20) - window_sent))
            sent = 0
            while queue and sent < budget:
                sent += self._send_run(queue[0], budget - sent)
            window_sent += sent
            if self.max_pps > 0 and window_sent >= self.max_pps / 20:
                # rate limit in 50 ms windows
                elapsed = self.loop.time() - window_start
                if elapsed < 0.05:
                    await asyncio.sleep(0.05 - elapsed)
                window_start, window_sent = self.loop.time(), 0
            elif queue:
                await asyncio.sleep(0)  # let the reader drain replies between bursts

    def _send_run(self, run: _Run, budget: int) -> int:
        """Send up to ``budget`` echoes of ``run`` (dropping it from the queue when it is through);
        returns how many were sent. The per-echo path: a sequence number, two fields written into the
        packet template, one sendto."""
        sock = run.sock
        probes, index, ttl = run.probes, run.index, run.ttl
        pos, end = run.pos, len(run.probes)
        buf, base = sock.template(run.size)
        pending, sendto, time_ns = sock.pending, sock.sock.sendto, time.time_ns
        checksummed = sock.mode == "raw" and not sock.v6  # elsewhere the kernel fills the checksum in
        ident = sock.ident
        seq = sock.next_seq
        sent = 0
        lasts: list[_Probe] = []
        while pos < end and sent < budget:
            probe = probes[pos]
            pos += 1
            if probe.finished:  # every echo already errored, or cancelled
                continue
            sent += 1
            if run.last:
                lasts.append(probe)
            if len(pending) >= _SEQ_SPACE:
                probe.sent += 1
                probe.error("send_error")  # every ICMP sequence number is in flight
                continue
            while seq in pending:
                seq = (seq + 1) & 0xFFFF
            pending[seq] = (probe, index)
            probe.seqs.append(seq)
            if checksummed:
                total = base + seq
                total = (total & 0xFFFF) + (total >> 16)
                _CSUM_ID_SEQ.pack_into(buf, 2, ~total & 0xFFFF, ident, seq)
            else:
                _SEQ.pack_into(buf, 6, seq)
            probe.sent_ns[index] = time_ns()
            try:
                if ttl is None:
                    sendto(buf, (probe.addr, 0))
                else:
                    self._send_with_ttl(sock, buf, probe.addr, ttl)
            except OSError as exc:
                self._send_failed(sock, probe, seq, index, buf, ttl, exc)
            else:
                probe.sent += 1
            seq = (seq + 1) & 0xFFFF
        sock.next_seq = seq
        run.pos = pos
        if pos >= end:
            self._queue.popleft()
        if lasts and self._timers is not None:
            self._timers.at(self.loop.time() + run.timeout, _finish_all, lasts)
        return sent

    @staticmethod
    def _send_with_ttl(sock: _Socket, packet: bytearray, addr: str, ttl: int) -> None:
        level, opt = (
            (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT) if sock.v6 else (socket.IPPROTO_IP, socket.IP_TTL)
        )
        sock.sock.sendmsg([packet], [(level, opt, _INT.pack(ttl))], 0, (addr, 0))

    def _send_failed(
        self,
        sock: _Socket,
        probe: _Probe,
        seq: int,
        index: int,
        packet: bytearray,
        ttl: int | None,
        exc: OSError,
    ) -> None:
        """A send raised: retry once (a full send buffer, or another probe's ICMP error surfacing as a
        pending socket error), then count the echo as sent and failed."""
        retry = isinstance(exc, BlockingIOError)
        if not retry and sock.mode == "dgram":
            # IP_RECVERR sets the socket error for *another* probe's ICMP error: hand it to its owner
            # via the error queue first.
            sock._drain_errqueue()
            retry = True
        if retry and pending_owner(sock, seq) is probe:
            probe.sent_ns[index] = time.time_ns()
            try:
                if ttl is None:
                    sock.sock.sendto(packet, (probe.addr, 0))
                else:
                    self._send_with_ttl(sock, packet, probe.addr, ttl)
            except OSError as again:
                exc = again
            else:
                probe.sent += 1
                return
        sock.pending.pop(seq, None)
        probe.sent += 1
        reason = (
            "send_error"
            if isinstance(exc, BlockingIOError)
            else _ERRNO_REASON.get(exc.errno or 0, "send_error")
        )
        probe.error(reason)


def pending_owner(sock: _Socket, seq: int) -> _Probe | None:
    entry = sock.pending.get(seq)
    return entry[0] if entry is not None else None
