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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import StartupError

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


class _Probe:
    """One in-flight probe: its destination, send times by packet index, and what came back."""

    __slots__ = ("addr", "answered", "done", "expected", "result", "sent_ns", "seqs", "timeout")

    def __init__(self, addr: str, count: int, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.addr = addr
        self.sent_ns: list[int] = [0] * count
        self.seqs: list[int] = []
        self.result = EchoResult()
        self.expected = count
        self.answered = 0  # replies plus errors
        self.done: asyncio.Future[None] = loop.create_future()
        self.timeout = timeout

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _check_done(self) -> None:
        self.answered += 1
        if self.answered >= self.expected and not self.done.done():
            self.done.set_result(None)

    def reply(self, index: int, recv_ns: int, hop_limit: int | None) -> None:
        self.result.rtts.append(max(0, recv_ns - self.sent_ns[index]) / 1e9)
        if hop_limit is not None:
            self.result.hop_limit = hop_limit
        self._check_done()

    def error(self, reason: str) -> None:
        errors = self.result.errors
        errors[reason] = errors.get(reason, 0) + 1
        self._check_done()


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
        self._next_seq = int.from_bytes(os.urandom(2), "big")
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
        for probe, _ in self.pending.values():
            if not probe.done.done():
                probe.done.set_result(None)
        self.pending.clear()

    def alloc_seq(self, probe: _Probe, index: int) -> int:
        if len(self.pending) >= _SEQ_SPACE:
            raise OverflowError("every ICMP sequence number is in flight")
        seq = self._next_seq
        while seq in self.pending:
            seq = (seq + 1) % _SEQ_SPACE
        self._next_seq = (seq + 1) % _SEQ_SPACE
        self.pending[seq] = (probe, index)
        probe.seqs.append(seq)
        return seq

    def build(self, seq: int, payload: bytes, payload_sum: int) -> bytes:
        if self.v6 or self.mode == "dgram":  # the kernel fills in the checksum (and, for dgram, the id)
            return struct.pack("!BBHHH", self.echo_type, 0, 0, self.ident, seq) + payload
        total = payload_sum + (self.echo_type << 8) + self.ident + seq
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return struct.pack("!BBHHH", self.echo_type, 0, ~total & 0xFFFF, self.ident, seq) + payload

    # -- receiving -------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        sock = self.sock
        for _ in range(256):  # bounded, so one busy socket cannot starve the loop
            try:
                data, anc, _flags, src = sock.recvmsg(2048, 256)
            except BlockingIOError:
                break
            except OSError:
                # With IP_RECVERR a queued ICMP error is first reported as a pending socket error;
                # the details are on the error queue, drained below.
                self._drain_errqueue()
                continue
            self._dispatch(data, anc, src[0])
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

    def _dispatch(self, data: bytes, anc: list[tuple[int, int, bytes]], src: str) -> None:
        recv_ns = 0
        hop: int | None = None
        for level, ctype, cdata in anc:
            if level == socket.SOL_SOCKET and ctype == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack_from("=qq", cdata)
                recv_ns = sec * 1_000_000_000 + nsec
            elif (level == socket.IPPROTO_IP and ctype == socket.IP_TTL) or (
                level == socket.IPPROTO_IPV6 and ctype == socket.IPV6_HOPLIMIT
            ):
                hop = struct.unpack_from("=i", cdata)[0]
        if not recv_ns:
            recv_ns = time.time_ns()
        icmp = data
        if not self.v6 and self.mode == "raw":  # raw IPv4 sockets see the IP header
            ihl = (data[0] & 0x0F) * 4
            hop = data[8]
            icmp = data[ihl:]
        if len(icmp) < 8:
            return
        itype, code = icmp[0], icmp[1]
        if itype == self.reply_type:
            ident, seq = struct.unpack_from("!HH", icmp, 4)
            if self.mode == "raw" and ident != self.ident:
                return
            entry = self.pending.get(seq)
            if entry is None or entry[0].addr != (_norm(src) if self.v6 else src):
                return  # late, duplicate, or someone else's reply
            del self.pending[seq]
            entry[0].reply(entry[1], recv_ns, hop)
            return
        if self.mode != "raw":
            return
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


@dataclass
class _Send:
    sock: _Socket
    probe: _Probe
    index: int
    packet_size: int
    ttl: int | None


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
        self._queue: collections.deque[_Send] = collections.deque()
        self._wake: asyncio.Future[None] | None = None
        self._timers: _Timers | None = None
        self._sender: asyncio.Task[None] | None = None
        self._payloads: dict[int, tuple[bytes, int]] = {}
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

    def _socket(self, family: int, dont_fragment: bool) -> _Socket:
        key = (family, dont_fragment)
        s = self._sockets.get(key)
        if s is None:
            s = self._sockets[key] = _Socket(self, family, self.mode, dont_fragment)
        return s

    def _payload(self, size: int) -> tuple[bytes, int]:
        cached = self._payloads.get(size)
        if cached is None:
            payload = (self._fill * (size // len(self._fill) + 1))[:size]
            padded = payload + b"\0" if size % 2 else payload
            total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
            cached = self._payloads[size] = (payload, total)
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
        if self._timers is None:
            raise RuntimeError("IcmpEngine.start() was not awaited")
        family, canonical = _parse_ip(address)
        try:
            sock = self._socket(family, dont_fragment)
        except OSError:
            result = EchoResult(sent=0)
            result.errors["send_error"] = 1
            return result
        probe = _Probe(canonical, count, self.loop, timeout)
        # Timers, not a sleeping coroutine per echo: cheaper with thousands of probes in flight.
        self._enqueue(_Send(sock, probe, 0, payload_size, ttl))
        now = self.loop.time()
        for i in range(1, count):
            self._timers.at(now + i * interval, self._enqueue, _Send(sock, probe, i, payload_size, ttl))
        try:
            # Resolved when every echo is answered (or errored), or ``timeout`` after the sender really
            # sent the last one (it may be rate limited).
            await probe.done
        finally:
            if not probe.done.done():  # cancelled: this probe's echoes still due are skipped
                probe.done.cancel()
            for seq in probe.seqs:  # forget what is still unanswered (late replies are then ignored)
                entry = sock.pending.get(seq)
                if entry is not None and entry[0] is probe:
                    del sock.pending[seq]
        return probe.result

    def _enqueue(self, item: _Send) -> None:
        self._queue.append(item)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _send_loop(self) -> None:
        queue = self._queue
        sent_in_batch = 0
        window_start = self.loop.time()
        window_sent = 0
        while True:
            if not queue:
                self._wake = self.loop.create_future()
                await self._wake
                continue
            item = queue.popleft()
            self._send_one(item)
            sent_in_batch += 1
            window_sent += 1
            if self.max_pps > 0 and window_sent >= self.max_pps / 20:
                # rate limit in 50 ms windows
                elapsed = self.loop.time() - window_start
                if elapsed < 0.05:
                    await asyncio.sleep(0.05 - elapsed)
                window_start, window_sent = self.loop.time(), 0
                sent_in_batch = 0
            elif sent_in_batch >= _SEND_BATCH and queue:
                sent_in_batch = 0
                await asyncio.sleep(0)  # let the reader drain replies between bursts

    def _send_one(self, item: _Send) -> None:
        probe = item.probe
        if probe.done.done():  # cancelled, or the engine is closing
            return
        try:
            self._send_packet(item)
        finally:
            if item.index == probe.expected - 1 and not probe.done.done() and self._timers is not None:
                self._timers.at(self.loop.time() + probe.timeout, _Probe.finish, probe)

    def _send_packet(self, item: _Send) -> None:
        sock, probe = item.sock, item.probe
        payload, psum = self._payload(item.packet_size)
        try:
            seq = sock.alloc_seq(probe, item.index)
        except OverflowError:
            probe.result.sent += 1
            probe.error("send_error")
            return
        packet = sock.build(seq, payload, psum)
        addr = (probe.addr, 0)
        for attempt in (0, 1):
            probe.sent_ns[item.index] = time.time_ns()
            try:
                if item.ttl is None:
                    sock.sock.sendto(packet, addr)
                else:
                    level, opt = (
                        (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)
                        if sock.v6
                        else (socket.IPPROTO_IP, socket.IP_TTL)
                    )
                    sock.sock.sendmsg([packet], [(level, opt, struct.pack("=i", item.ttl))], 0, addr)
            except BlockingIOError:
                if attempt == 0:
                    continue
                reason = "send_error"
            except OSError as exc:
                # A pending error from *another* probe's ICMP error can surface here (IP_RECVERR sets
                # the socket error): hand it to its owner via the error queue and try once more.
                if attempt == 0 and sock.mode == "dgram":
                    sock._drain_errqueue()
                    continue
                reason = _ERRNO_REASON.get(exc.errno or 0, "send_error")
            else:
                probe.result.sent += 1
                return
            break
        sock.pending.pop(seq, None)
        probe.result.sent += 1
        probe.error(reason)
