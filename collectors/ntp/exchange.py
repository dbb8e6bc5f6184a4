"""One SNTP exchange over UDP on the event loop: send a request, wait for its answer until the deadline.

A connected datagram socket, so the kernel drops datagrams from any other address and reports an ICMP
port unreachable as a refused connection. Answers that fail the checks (``packet.parse``) are dropped and
the wait goes on when the packet cannot be ours (too short, not echoing our cookie): a stale duplicate or
a spoofed packet must not hide the real answer arriving after it. If none comes, the last rejection is
the reason, else ``timeout``. An answer that echoes the cookie is the server's word and ends the wait,
usable or not (a kiss-o'-death, an unsynchronised server).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from dataclasses import dataclass
from typing import Any

from collectors.ntp.packet import Answer, PacketError, offset_and_rtt, parse, request

#: Reasons of a failed exchange besides the packet's own (``packet.REASONS``).
REASONS = ("resolve", "timeout", "connection_refused", "net_unreachable", "host_unreachable", "socket_error")


@dataclass(frozen=True, slots=True)
class Measurement:
    """A checked answer and what it says about our clock."""

    answer: Answer
    offset: float
    rtt: float


class ExchangeError(Exception):
    """No usable answer; ``reason`` is a bounded label value, ``message`` is for the log."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_NOT_OURS = frozenset(("short_packet", "bad_origin"))


class _Client(asyncio.DatagramProtocol):
    def __init__(self, cookie: bytes) -> None:
        self.cookie = cookie
        self.done: asyncio.Future[tuple[Answer, float]] = asyncio.get_running_loop().create_future()
        self.rejected: PacketError | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        arrived = time.monotonic()
        if self.done.done():
            return
        try:
            self.done.set_result((parse(data, self.cookie), arrived))
        except PacketError as exc:
            if exc.reason in _NOT_OURS:
                self.rejected = exc  # keep waiting: the real answer may still come
            else:
                self.done.set_exception(exc)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


def _os_reason(exc: OSError) -> str:
    return {
        errno.ECONNREFUSED: "connection_refused",
        errno.ENETUNREACH: "net_unreachable",
        errno.EHOSTUNREACH: "host_unreachable",
    }.get(exc.errno or 0, "socket_error")


async def exchange(family: int, sockaddr: tuple[Any, ...], version: int, timeout: float) -> Measurement:
    """Ask the server at ``sockaddr`` (as the resolver gives it) for its time, within ``timeout`` seconds;
    raises ``ExchangeError``."""
    loop = asyncio.get_running_loop()
    packet, cookie = request(version)
    transport: asyncio.DatagramTransport | None = None
    client: _Client | None = None
    try:
        async with asyncio.timeout(timeout):
            # Connected here rather than by asyncio's ``remote_addr``, which may call getaddrinfo in the
            # loop's shared executor (for a scoped IPv6 address): the address is already resolved.
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect(sockaddr)
                transport, client = await loop.create_datagram_endpoint(lambda: _Client(cookie), sock=sock)
            except BaseException:
                sock.close()
                raise
            # T1 and T4 on the wall clock, their difference on the monotonic one: a clock step during
            # the exchange does not turn into a false round trip.
            sent_wall, sent = time.time(), time.monotonic()
            transport.sendto(packet)
            answer, arrived = await client.done
    except TimeoutError:
        if client is not None and client.rejected is not None:
            raise ExchangeError(client.rejected.reason, client.rejected.message) from None
        raise ExchangeError("timeout", f"no answer within {timeout:.3g}s") from None
    except PacketError as exc:
        raise ExchangeError(exc.reason, exc.message) from None
    except OSError as exc:
        raise ExchangeError(_os_reason(exc), exc.strerror or str(exc)) from None
    finally:
        if transport is not None:
            transport.close()
    offset, rtt = offset_and_rtt(answer, sent_wall, sent_wall + (arrived - sent))
    return Measurement(answer, offset, rtt)
