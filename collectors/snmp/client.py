"""The SNMP engine behind a small interface (GET, walk), with two implementations selectable per device.

- ``GufoClient`` (gufo-snmp, Rust core, asyncio): the polling engine; an order of magnitude less CPU
  per poll than pysnmp (figures in docs/benchmarks.md).
- ``PysnmpClient`` (pysnmp 7 asyncio): the reference engine, for agents gufo cannot talk to (SNMPv3
  contexts) and to cross-check values.

Both return plain Python values (int, bytes, str for OIDs and IP addresses); types come from the module
definition, as snmp_exporter's generator does. noSuchObject/noSuchInstance leave a GET result out,
endOfMibView ends a walk. Every failure is a ``SnmpClientError`` with a bounded ``reason``; messages
never carry credentials. pysnmp's debug logging prints keys: nothing here enables it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from gufo.snmp import (
    Aes128Key,
    Aes192Key,
    Aes256Key,
    DesKey,
    KeyExpansion,
    Md5Key,
    NoSuchInstance,
    Sha1Key,
    Sha224Key,
    Sha256Key,
    Sha384Key,
    Sha512Key,
    SnmpAuthError,
    SnmpDecodeError,
    SnmpError,
    SnmpVersion,
    User,
)
from gufo.snmp.aio import SnmpSession

from agent.kernel.resolver import ResolveError, Resolver
from collectors.snmp.config import Auth

_GetIter: Any
try:  # gufo's compiled core; private, see _SocketWalk
    from gufo.snmp._fast import GetIter as _GetIter
except ImportError:  # a gufo-snmp without it: the public iterator is used
    _GetIter = None


Value = int | float | str | bytes
T = TypeVar("T")

log = logging.getLogger("giamsat.collector.snmp")

#: bounded set of failure reasons (label values)
REASONS = (
    "timeout",
    "auth_failed",
    "empty_response",
    "decode_error",
    "oid_loop",
    "too_many_varbinds",
    "error_status",
    "network",
    "config",
    "error",
)

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


class SnmpClientError(Exception):
    """An SNMP request failed; ``reason`` is one of ``REASONS``, ``message`` is for logs only."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class SnmpEndpoint:
    """Where and how to ask one device."""

    host: str
    port: int
    auth: Auth
    auth_name: str
    timeout: float = 5.0
    retries: int = 3
    max_repetitions: int = 25
    max_varbinds: int = 100_000
    #: snmp_exporter walk_params ``allow_nonincreasing_oids``: accept agents whose walks go backwards
    #: (the walk still ends at ``max_varbinds``)
    allow_nonincreasing_oids: bool = False
    #: looks the host name up (the collector's, so lookups of one name share a thread)
    resolver: Resolver = field(default_factory=Resolver, compare=False, repr=False)

    def __str__(self) -> str:  # never the credentials
        return f"{self.host}:{self.port}"


@dataclass
class PacketStats:
    """Requests sent (retries included) and retried, for snmp_exporter's ``snmp_scrape_packets_*``."""

    sent: int = 0
    retried: int = 0


class SnmpClient(Protocol):
    """What the collector needs from an SNMP engine."""

    stats: PacketStats

    async def get(self, oids: Sequence[str]) -> dict[str, Value]:
        """GET; OIDs the agent has no value for (noSuchObject/noSuchInstance) are left out."""

    async def walk(self, oid: str) -> list[tuple[str, Value]]:
        """All (oid, value) under ``oid`` in order: GETBULK for v2c/v3, GETNEXT for v1."""

    async def walk_many(self, oids: Sequence[str]) -> list[list[tuple[str, Value]]]:
        """``walk`` of each OID, one after the other (the same requests), as one call."""

    async def close(self) -> None:
        """Drop sockets and state."""


class WalkGuard:
    """Stops a walk at the end of its subtree and refuses agents that loop or never end.

    An agent returning an OID not greater than the previous one would make a naive walk loop forever
    (pysnmp's ``ignoreNonIncreasingOid`` exists for this); a walk must also end within ``limit``
    varbinds.
    """

    def __init__(self, root: str, limit: int, allow_nonincreasing: bool = False) -> None:
        self.allow_nonincreasing = allow_nonincreasing
        self.root = root
        self.prefix = root + "."
        self.cut = len(self.prefix)
        self.last_oid = ""
        self.last_head = ""
        self.last_arc = -1
        self.limit = limit
        self.count = 0

    def accept(self, oid: str) -> bool:
        """True if ``oid`` belongs to the walk; False when the subtree has ended."""
        if not oid.startswith(self.prefix):
            return False
        head, _, arc = oid.rpartition(".")
        n = int(arc)
        if head == self.last_head:  # a column walk: only the last arc moves, compare just that
            increasing = n > self.last_arc
        else:
            increasing = not self.last_oid or self._key(oid) > self._key(self.last_oid)
        if not increasing and not self.allow_nonincreasing:
            raise SnmpClientError("oid_loop", f"agent returned {oid} after {self.last_oid}")
        self.last_oid, self.last_head, self.last_arc = oid, head, n
        self.count += 1
        if self.count > self.limit:
            raise SnmpClientError("too_many_varbinds", f"walk of {self.root} passed {self.limit}")
        return True

    def _key(self, oid: str) -> tuple[int, ...]:
        return tuple(map(int, oid[self.cut :].split(".")))


async def resolve(ep: SnmpEndpoint) -> str:
    """The first address of the device (kept as is when already an address)."""
    host = ep.host
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    # The module's deadline bounds the wait (the poll runs under it); this is only an outer bound.
    try:
        addrs = await ep.resolver.resolve(
            host, ep.port, ep.timeout * (ep.retries + 1), socktype=socket.SOCK_DGRAM
        )
    except ResolveError as exc:
        raise SnmpClientError("network", f"cannot resolve {exc.message}") from None
    return str(addrs[0][1][0])


# --------------------------------------------------------------------------------------------- gufo


class GufoClient:
    """gufo-snmp session per device, kept across polls (v3 engine discovery happens once).

    gufo-snmp has no retries of its own, so each request is resent here on timeout. Its GETBULK to a
    v3 user that needs more privacy than configured returns zero varbinds with no error; an empty walk
    on v3 is therefore confirmed with a GET, which does raise the authentication error.
    """

    def __init__(self, ep: SnmpEndpoint) -> None:
        if ep.auth.version == 3 and ep.auth.context_name:
            raise SnmpClientError("config", "gufo-snmp has no SNMPv3 context support; use engine: pysnmp")
        self.ep = ep
        self.stats = PacketStats()
        self._session: Any = None
        self._last_used = 0.0

    def _user(self) -> Any:
        a = self.ep.auth
        assert a.username is not None
        if a.security_level == "noAuthNoPriv":
            return User(a.username)
        auth_cls = {
            "MD5": Md5Key,
            "SHA": Sha1Key,
            "SHA224": Sha224Key,
            "SHA256": Sha256Key,
            "SHA384": Sha384Key,
            "SHA512": Sha512Key,
        }[a.auth_protocol]
        assert a.password is not None
        auth_key = auth_cls(a.password.get_secret_value().encode())
        if a.security_level == "authNoPriv":
            return User(a.username, auth_key=auth_key)
        priv_cls, expansion = {
            "DES": (DesKey, KeyExpansion.Blumenthal),
            "AES": (Aes128Key, KeyExpansion.Blumenthal),
            "AES192-Blumenthal": (Aes192Key, KeyExpansion.Blumenthal),
            "AES256-Blumenthal": (Aes256Key, KeyExpansion.Blumenthal),
            "AES192-Reeder": (Aes192Key, KeyExpansion.Cisco),
            "AES256-Reeder": (Aes256Key, KeyExpansion.Cisco),
        }[a.priv_protocol]
        assert a.priv_password is not None
        priv_key = priv_cls(a.priv_password.get_secret_value().encode())
        return User(a.username, auth_key=auth_key, priv_key=priv_key, key_expansion=expansion)

    async def _open(self) -> Any:
        ep = self.ep
        if self._session is None:
            addr = await resolve(ep)
            kwargs: dict[str, Any] = {
                "addr": addr,
                "port": ep.port,
                "timeout": ep.timeout,
                "max_repetitions": ep.max_repetitions,
            }
            if ep.auth.version == 3:
                kwargs.update(version=SnmpVersion.v3, user=self._user())
            else:
                assert ep.auth.community is not None
                kwargs.update(
                    version=SnmpVersion.v1 if ep.auth.version == 1 else SnmpVersion.v2c,
                    community=ep.auth.community.get_secret_value(),
                )
            try:
                session = SnmpSession(**kwargs)
            except (ValueError, OSError) as exc:
                raise SnmpClientError(
                    "network", f"cannot open a socket to {ep}: {type(exc).__name__}"
                ) from None
            if ep.auth.version == 3:  # engine discovery and time sync (nothing to send on v1/v2c)
                await self._retry(session.refresh)
            self._session = session
        elif ep.auth.version == 3 and time.monotonic() - self._last_used > 100:
            # gufo: "should be resent manually if over 150 seconds left from the last request"
            await self._retry(self._session.refresh)
        self._last_used = time.monotonic()
        return self._session

    async def _retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self.ep.retries + 1):
            self.stats.sent += 1
            self.stats.retried += attempt > 0
            try:
                return await fn()
            except TimeoutError:
                continue
            except SnmpError as exc:
                raise self._error(exc) from None
            except OSError as exc:
                self._session = None
                raise SnmpClientError("network", f"{self.ep}: {exc.strerror or type(exc).__name__}") from None
        raise self._timeout()

    def _timeout(self) -> SnmpClientError:
        # A reply to an abandoned request may still arrive; a fresh socket next time never sees it.
        self._session = None
        return SnmpClientError(
            "timeout", f"{self.ep}: no answer within {self.ep.timeout:g}s, {self.ep.retries} retries"
        )

    def _error(self, exc: SnmpError) -> SnmpClientError:
        if isinstance(exc, SnmpAuthError):
            self._session = None
            return SnmpClientError("auth_failed", f"{self.ep}: SNMPv3 authentication failed")
        if isinstance(exc, SnmpDecodeError):
            self._session = None
            return SnmpClientError("decode_error", f"{self.ep}: undecodable response: {exc}")
        return SnmpClientError("error_status", f"{self.ep}: {type(exc).__name__}: {exc}")

    def _walk_error(self, exc: BaseException) -> BaseException:
        """What a failed ``_SocketWalk`` raises (raised outside any ``except``: nothing chains to it)."""
        if isinstance(exc, TimeoutError):
            return self._timeout()
        if isinstance(exc, SnmpError):
            return self._error(exc)
        if isinstance(exc, OSError):
            self._session = None
            return SnmpClientError("network", f"{self.ep}: {exc.strerror or type(exc).__name__}")
        return exc  # WalkGuard's SnmpClientError

    async def get(self, oids: Sequence[str]) -> dict[str, Value]:
        session = await self._open()
        if self.ep.auth.version != 1:
            res = await self._retry(lambda: session.get_many(list(oids)))
            return {k: v for k, v in res.items() if v is not None}
        # SNMPv1 fails the whole PDU on one missing OID (noSuchName): ask one by one.
        out: dict[str, Value] = {}
        for oid in oids:

            async def one(oid: str = oid) -> Any:
                return await session.get(oid)

            try:
                v = await self._retry(one)
            except NoSuchInstance:
                continue
            except SnmpClientError as exc:
                if exc.reason != "error_status":
                    raise
                continue
            if v is not None:
                out[oid] = v
        return out

    async def walk(self, oid: str) -> list[tuple[str, Value]]:
        return (await self.walk_many([oid]))[0]

    async def walk_many(self, oids: Sequence[str]) -> list[list[tuple[str, Value]]]:
        session = await self._open()
        if self.ep.auth.version != 1 and _can_drive(session):
            walk = _SocketWalk(session._sock, session._fd, oids, self.ep, self.stats)
            try:
                await walk.start()
            finally:
                walk.stop()
            if walk.failure is not None:
                # no local names the exception: its traceback holds this frame
                raise self._walk_error(walk.take_failure())
            results = walk.results
        else:
            results = [
                await self._iter_walk(
                    session, oid, WalkGuard(oid, self.ep.max_varbinds, self.ep.allow_nonincreasing_oids)
                )
                for oid in oids
            ]
        if self.ep.auth.version == 3 and not all(results):
            # https://github.com/gufolabs/gufo_snmp: GETBULK hides a v3 report (e.g. usmStatsUnsupported
            # SecLevels) as zero varbinds; a GET raises it.
            empty = oids[results.index([])]
            try:
                await self._retry(lambda: session.get_many([SYS_UPTIME]))
            except SnmpClientError as exc:
                if exc.reason == "auth_failed":
                    raise SnmpClientError(
                        "auth_failed",
                        f"{self.ep}: walk of {empty} returned zero varbinds and a GET was refused "
                        "(security level or privacy protocol mismatch?)",
                    ) from None
                raise
        return results

    async def _iter_walk(self, session: Any, oid: str, guard: WalkGuard) -> list[tuple[str, Value]]:
        """The walk through gufo's public iterators (GETNEXT for v1, and the fallback for GETBULK)."""
        it = session.getnext(oid) if self.ep.auth.version == 1 else session.getbulk(oid)
        out: list[tuple[str, Value]] = []
        attempts = 0
        while True:
            self.stats.sent += 1
            self.stats.retried += attempts > 0
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                attempts += 1
                if attempts > self.ep.retries:
                    raise self._timeout() from None
                continue  # the iterator resends the same request
            except SnmpError as exc:
                raise self._error(exc) from None
            except OSError as exc:
                self._session = None
                raise SnmpClientError("network", f"{self.ep}: {exc.strerror or type(exc).__name__}") from None
            attempts = 0
            # gufo's GetBulkIter hands out one buffered varbind per coroutine call; taking the rest of
            # the response at once halves the walk's CPU. Falls back to one by one if it ever changes.
            batch: list[tuple[str, Any] | None] = [first]
            buffered = getattr(it, "_buffer", None)
            if isinstance(buffered, list) and buffered:
                batch.extend(buffered)
                buffered.clear()
            ended = False
            for item in batch:
                if item is None or not guard.accept(item[0]):
                    ended = True
                    break
                if item[1] is not None:
                    out.append(item)
            if ended:
                break
        return out

    async def close(self) -> None:
        self._session = None


class _SocketWalk:
    """GETBULK walks of several subtrees, one after the other, on a gufo socket, request after request
    from the reader callback: the awaiting task wakes once for all of them.

    gufo-snmp's asyncio iterator registers and unregisters its socket with the event loop and arms a
    ``wait_for`` for every request; even a loop awaiting one future per request spent most of an
    if_mib poll's CPU in asyncio (bench/snmp.py; a blocking walk of the same requests costs a third).
    This drives the same Rust socket calls (send_get_bulk/recv_get_bulk with a GetIter context)
    directly; ``_can_drive`` falls back to the public iterator if gufo's internals ever change.
    Each request gets ``timeout`` seconds and is resent (the same GetIter context) up to ``retries``
    times. One timer serves all the walks: it is re-armed only when it fires before the current
    request's deadline, instead of a timer per request.

    A failure is kept without its traceback and the future only says "done": an exception stored in
    the future would hold the reader callback's frame, hence this walk and gufo's socket, in a
    reference cycle. The agent runs the cyclic collector rarely (agent/lifecycle.py), so every
    undecodable answer used to keep a socket open until then.
    """

    def __init__(
        self, sock: Any, fd: int, roots: Sequence[str], ep: SnmpEndpoint, stats: PacketStats | None = None
    ) -> None:
        self.stats = stats if stats is not None else PacketStats()
        self.allow_nonincreasing = ep.allow_nonincreasing_oids
        self.loop = asyncio.get_running_loop()
        self.sock, self.fd, self.roots = sock, fd, roots
        self.timeout, self.retries = ep.timeout, ep.retries
        self.max_repetitions, self.max_varbinds = ep.max_repetitions, ep.max_varbinds
        self.results: list[list[tuple[str, Value]]] = []
        self.failure: BaseException | None = None
        self.fut: asyncio.Future[None] = self.loop.create_future()
        self.attempts = 0
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.reading = False

    def start(self) -> asyncio.Future[None]:
        self.loop.add_reader(self.fd, self._readable)
        self.reading = True
        self._next_root()
        return self.fut

    def stop(self) -> None:
        """Unregister the socket and the timer (also when the awaiting task was cancelled)."""
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.fut.done():
            self.fut.cancel()

    def take_failure(self) -> BaseException:
        """The failure that ended the walks, let go here."""
        failure, self.failure = self.failure, None
        assert failure is not None
        return failure

    def _finish(self, exc: BaseException | None = None) -> None:
        if not self.fut.done():
            if exc is not None:
                self.failure = exc.with_traceback(None)
            self.fut.set_result(None)
        self.stop()

    def _next_root(self) -> None:
        """The current walk is over: start the next one, or finish."""
        if len(self.results) == len(self.roots):
            self._finish()
            return
        root = self.roots[len(self.results)]
        self.out: list[tuple[str, Value]] = []
        self.results.append(self.out)
        self.guard = WalkGuard(root, self.max_varbinds, self.allow_nonincreasing)
        self.ctx = _GetIter(root, self.max_repetitions)
        self.attempts = 0
        self._send()

    def _send(self) -> None:
        self.deadline = self.loop.time() + self.timeout
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._expired)
        self.stats.sent += 1
        self.stats.retried += self.attempts > 0
        try:
            self.sock.send_get_bulk(self.ctx)
        except BlockingIOError:
            pass  # send buffer full: counts as a lost request, resent when its deadline passes
        except Exception as exc:
            self._finish(exc)

    def _expired(self) -> None:
        self.timer = None
        if self.fut.done():
            return
        if self.loop.time() < self.deadline:  # armed for an earlier request
            self.timer = self.loop.call_at(self.deadline, self._expired)
            return
        self.attempts += 1
        if self.attempts > self.retries:
            self._finish(TimeoutError())
        else:
            self._send()  # the same context: the same request again

    def _readable(self) -> None:
        if self.fut.done():
            return
        try:
            batch = self.sock.recv_get_bulk(self.ctx)
        except BlockingIOError:
            return  # a datagram that was not our answer (gufo drops it): keep waiting
        except StopAsyncIteration:
            self._next_root()  # gufo's way of saying the walk is over (as its iterators do)
            return
        except Exception as exc:  # SnmpError, OSError: mapped by GufoClient.walk_many
            self._finish(exc)
            return
        if not batch:
            self._next_root()  # end of the MIB view (or gufo's zero-varbind v3 report: walk_many)
            return
        accept, out = self.guard.accept, self.out
        more = True
        try:
            for item in batch:
                if item is None or not accept(item[0]):
                    more = False
                    break
                if item[1] is not None:
                    out.append(item)
        except SnmpClientError as exc:
            self._finish(exc)
            return
        if more:
            self.attempts = 0
            self._send()
        else:
            self._next_root()


def _can_drive(session: Any) -> bool:
    """Whether gufo's session exposes what ``_SocketWalk`` drives (gufo-snmp 0.13)."""
    sock = getattr(session, "_sock", None)
    return (
        _GetIter is not None
        and isinstance(getattr(session, "_fd", None), int)
        and hasattr(sock, "send_get_bulk")
        and hasattr(sock, "recv_get_bulk")
    )


# ------------------------------------------------------------------------------------------- pysnmp


class PysnmpEngines:
    """One pysnmp ``SnmpEngine`` per auth: a USM user name may carry different keys in two auths."""

    def __init__(self) -> None:
        self._engines: dict[str, Any] = {}

    def get(self, auth_name: str) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        eng = self._engines.get(auth_name)
        if eng is None:
            eng = self._engines[auth_name] = SnmpEngine()
            eng.register_transport_dispatcher(_dispatcher())
            _drop_undecodable(eng)
        return eng

    def close(self) -> None:
        for eng in self._engines.values():
            # closing a dispatcher that never opened raises
            eng.close_dispatcher()
        self._engines.clear()


def _dispatcher() -> Any:
    """pysnmp's asyncio dispatcher, dropping the answers that arrive after it closed.

    Polls cut by their deadline leave answers on the way; when the engine closes, those already read
    from the socket are still queued on the event loop, and pysnmp's dispatcher raised "Unregistered
    transport" into the loop for each (an asyncio traceback per late answer). Dropped with a debug line.
    """
    from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
    from pysnmp.carrier.error import CarrierError

    class Dispatcher(AsyncioDispatcher):  # type: ignore[misc]
        def _callback_function(self, transport: Any, address: Any, message: bytes) -> None:
            try:
                super()._callback_function(transport, address, message)
            except CarrierError as exc:
                log.debug(
                    "SNMP: dropped a datagram from %s after its engine closed (%s)", _peer(address), exc
                )

    return Dispatcher()


def _drop_undecodable(engine: Any) -> None:
    """Make pysnmp drop a datagram it cannot decode instead of raising into the event loop.

    pysnmp drops what pyasn1 reports as a parse error, but some malformed datagrams (an unexpected
    constructed tag, for one) raise ``TypeError`` from inside pyasn1; that escapes pysnmp's receive
    callback and asyncio logs a traceback per datagram. Dropped here the same way (the request then
    times out, as for any answer pysnmp drops), with one debug line.
    """
    dispatcher = engine.message_dispatcher
    receive = dispatcher.receive_message

    def receive_message(
        snmp_engine: Any, transport_domain: Any, transport_address: Any, whole_msg: bytes
    ) -> Any:
        try:
            return receive(snmp_engine, transport_domain, transport_address, whole_msg)
        except Exception as exc:
            log.debug(
                "SNMP: dropped an undecodable datagram of %d bytes from %s (%s)",
                len(whole_msg),
                _peer(transport_address),
                type(exc).__name__,
            )
            return b""

    dispatcher.receive_message = receive_message


def _peer(address: Any) -> str:
    try:
        return f"{address[0]}:{address[1]}"
    except (TypeError, IndexError):
        return "?"


def pysnmp_auth_data(auth: Auth, auth_name: str) -> Any:
    from pysnmp.hlapi.v3arch.asyncio import auth as pa

    if auth.version in (1, 2):
        assert auth.community is not None
        # communityIndex is an internal table key: name it after the auth, not the community.
        return pa.CommunityData(
            f"giamsat-{auth_name}", auth.community.get_secret_value(), mpModel=0 if auth.version == 1 else 1
        )
    assert auth.username is not None
    if auth.security_level == "noAuthNoPriv":
        return pa.UsmUserData(auth.username)  # noqa: S509 - the user chose noAuthNoPriv; docs warn
    auth_proto = {
        "MD5": pa.USM_AUTH_HMAC96_MD5,
        "SHA": pa.USM_AUTH_HMAC96_SHA,
        "SHA224": pa.USM_AUTH_HMAC128_SHA224,
        "SHA256": pa.USM_AUTH_HMAC192_SHA256,
        "SHA384": pa.USM_AUTH_HMAC256_SHA384,
        "SHA512": pa.USM_AUTH_HMAC384_SHA512,
    }[auth.auth_protocol]
    assert auth.password is not None
    if auth.security_level == "authNoPriv":
        return pa.UsmUserData(auth.username, auth.password.get_secret_value(), authProtocol=auth_proto)
    priv_proto = {
        "DES": pa.USM_PRIV_CBC56_DES,
        "AES": pa.USM_PRIV_CFB128_AES,
        # pysnmp: the "Blumenthal" constants follow draft-blumenthal-aes-usm; the plain 192/256 ones
        # extend the key the Reeder (Cisco) way.
        "AES192-Blumenthal": pa.USM_PRIV_CFB192_AES_BLUMENTHAL,
        "AES256-Blumenthal": pa.USM_PRIV_CFB256_AES_BLUMENTHAL,
        "AES192-Reeder": pa.USM_PRIV_CFB192_AES,
        "AES256-Reeder": pa.USM_PRIV_CFB256_AES,
    }[auth.priv_protocol]
    assert auth.priv_password is not None
    return pa.UsmUserData(
        auth.username,
        auth.password.get_secret_value(),
        auth.priv_password.get_secret_value(),
        authProtocol=auth_proto,
        privProtocol=priv_proto,
    )


def _pysnmp_value(val: Any) -> Value | None:
    from pyasn1.type import univ
    from pysnmp.proto import rfc1902

    if isinstance(val, rfc1902.IpAddress):
        return ".".join(str(b) for b in val.asOctets())
    if isinstance(val, rfc1902.OctetString):
        return bytes(val.asOctets())
    if isinstance(val, univ.ObjectIdentifier):
        return ".".join(str(p) for p in val)
    if isinstance(val, rfc1902.Integer | rfc1902.Integer32 | rfc1902.Unsigned32 | rfc1902.Gauge32):
        return int(val)
    if isinstance(val, rfc1902.Counter32 | rfc1902.Counter64 | rfc1902.TimeTicks):
        return int(val)
    return None  # Null, noSuchObject, noSuchInstance, endOfMibView


class PysnmpClient:
    """pysnmp 7 asyncio, the reference engine. Retries and timeouts are pysnmp's own."""

    def __init__(self, ep: SnmpEndpoint, engine: Any) -> None:
        self.ep = ep
        self.stats = PacketStats()  # pysnmp retries inside: only first sends are seen
        self.engine = engine
        self._auth = pysnmp_auth_data(ep.auth, ep.auth_name)
        self._target: Any = None

    async def _transport(self) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import Udp6TransportTarget, UdpTransportTarget

        if self._target is None:
            addr = await resolve(self.ep)
            cls = Udp6TransportTarget if ":" in addr else UdpTransportTarget
            try:
                self._target = await cls.create(
                    (addr, self.ep.port), timeout=self.ep.timeout, retries=self.ep.retries
                )
            except Exception as exc:
                raise SnmpClientError("network", f"{self.ep}: {type(exc).__name__}") from None
        return self._target

    def _context(self) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import ContextData

        return ContextData(contextName=self.ep.auth.context_name.encode())

    def _check(self, err_ind: Any, err_status: Any, err_index: Any) -> None:
        if err_ind:
            text = str(err_ind)
            name = type(err_ind).__name__
            if name == "RequestTimedOut" or "timed out" in text.lower():
                raise SnmpClientError(
                    "timeout", f"{self.ep}: no answer within {self.ep.timeout:g}s, {self.ep.retries} retries"
                )
            if any(
                k in name for k in ("Unknown", "Wrong", "Unsupported", "NotInTimeWindow", "Authentication")
            ):
                raise SnmpClientError("auth_failed", f"{self.ep}: {text}")
            if "decod" in text.lower() or "parse" in text.lower():
                raise SnmpClientError("decode_error", f"{self.ep}: {text}")
            raise SnmpClientError("error", f"{self.ep}: {name}: {text}")
        if err_status and int(err_status) == 16:  # authorizationError: the USM user may not read this
            raise SnmpClientError("auth_failed", f"{self.ep}: authorizationError")
        if err_status and int(err_status) != 0:
            raise SnmpClientError(
                "error_status", f"{self.ep}: {err_status.prettyPrint()} at index {err_index}"
            )

    async def _call(self, coro: Awaitable[tuple[Any, Any, Any, Any]]) -> tuple[Any, Any, Any, Any]:
        try:
            return await coro
        except SnmpClientError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # pysnmp raises from deep inside its dispatcher on undecodable or unexpected packets
            raise SnmpClientError("decode_error", f"{self.ep}: {type(exc).__name__}") from None

    async def get(self, oids: Sequence[str]) -> dict[str, Value]:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, get_cmd

        tt = await self._transport()
        if self.ep.auth.version == 1 and len(oids) > 1:
            out: dict[str, Value] = {}
            for oid in oids:
                try:
                    out.update(await self.get([oid]))
                except SnmpClientError as exc:
                    if exc.reason != "error_status":
                        raise
            return out
        self.stats.sent += 1
        ei, es, ex, vbs = await self._call(
            get_cmd(
                self.engine,
                self._auth,
                tt,
                self._context(),
                *(ObjectType(ObjectIdentity(o)) for o in oids),
                lookupMib=False,
            )
        )
        self._check(ei, es, ex)
        res: dict[str, Value] = {}
        for name, val in vbs:
            v = _pysnmp_value(val)
            if v is not None:
                res[str(name)] = v
        return res

    async def walk(self, oid: str) -> list[tuple[str, Value]]:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, bulk_cmd, next_cmd
        from pysnmp.proto.rfc1905 import EndOfMibView

        tt = await self._transport()
        guard = WalkGuard(oid, self.ep.max_varbinds, self.ep.allow_nonincreasing_oids)
        out: list[tuple[str, Value]] = []
        cur = oid
        while True:
            vb = ObjectType(ObjectIdentity(cur))
            self.stats.sent += 1
            if self.ep.auth.version == 1:
                ei, es, ex, vbs = await self._call(
                    next_cmd(self.engine, self._auth, tt, self._context(), vb, lookupMib=False)
                )
                if es and int(es) == 2:  # noSuchName: end of the MIB view in SNMPv1
                    break
            else:
                ei, es, ex, vbs = await self._call(
                    bulk_cmd(
                        self.engine,
                        self._auth,
                        tt,
                        self._context(),
                        0,
                        self.ep.max_repetitions,
                        vb,
                        lookupMib=False,
                    )
                )
            self._check(ei, es, ex)
            if not vbs:
                raise SnmpClientError("empty_response", f"{self.ep}: response without varbinds for {cur}")
            done = False
            for name, val in vbs:
                o = str(name)
                if isinstance(val, EndOfMibView) or not guard.accept(o):
                    done = True
                    break
                v = _pysnmp_value(val)
                if v is not None:
                    out.append((o, v))
                cur = o
            if done:
                break
        return out

    async def walk_many(self, oids: Sequence[str]) -> list[list[tuple[str, Value]]]:
        return [await self.walk(oid) for oid in oids]

    async def close(self) -> None:
        self._target = None
