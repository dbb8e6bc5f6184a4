"""Host names to addresses for every collector: with a deadline, outside shared thread pools, and with the
last good answer standing in while the name server is down.

``getaddrinfo`` cannot be interrupted: with an unreachable name server it blocks for the resolver's own
timeouts (``timeout:5 attempts:2`` and more). ``loop.getaddrinfo`` runs it in the event loop's default
executor, which the whole agent shares and which ``asyncio.run`` joins at exit: a dead name server then
pins those threads until unrelated work starves. So each lookup runs in a daemon thread of its own,
awaited for at most the caller's budget, and one lookup per name is in flight at a time: a hung resolver
costs one thread per name, not one per collection.

The last good answer of a name is kept for ``STALE_FOR`` seconds, module-wide (so it survives a reload,
which is when an operator may be at work during a resolver outage), and used when a lookup fails or times
out, except after a definite "no such name". A flapping resolver then does not fail every round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from typing import Any, ClassVar

#: (address family, socket address) as ``getaddrinfo`` returns them.
Address = tuple[int, tuple[Any, ...]]

#: Seconds a name's last good addresses stand in while the resolver fails or does not answer.
STALE_FOR = 3600.0

log = logging.getLogger("giamsat.resolver")

_Key = tuple[str, int | None, int, int]  # host, port, family, socket type


class ResolveError(Exception):
    """A name did not resolve. ``definite`` when the name server said the name does not exist (or has no
    address of the family asked for); otherwise it failed or did not answer in time."""

    def __init__(self, message: str, definite: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.definite = definite


def literal(
    host: str, port: int | None = None, family: int = socket.AF_UNSPEC, socktype: int = socket.SOCK_STREAM
) -> list[Address] | None:
    """The address itself when ``host`` is an IP address literal (no lookup), else None."""
    try:
        infos = socket.getaddrinfo(
            host.strip("[]") if host.startswith("[") else host,
            port,
            family=family,
            type=socktype,
            flags=socket.AI_NUMERICHOST,
        )
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return [(fam, sockaddr) for fam, _t, _p, _c, sockaddr in infos]


class Resolver:
    """Resolves names in threads of its own with a deadline, sharing the module's last good answers.

    One per collector (its log says whose lookups failed); lookups of one name through one resolver
    share one thread."""

    _good: ClassVar[dict[_Key, tuple[float, list[Address]]]] = {}

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or log
        self._inflight: dict[_Key, asyncio.Future[list[Address]]] = {}
        self._stale: set[_Key] = set()

    def cached(
        self, host: str, port: int | None, family: int = socket.AF_UNSPEC, socktype: int = socket.SOCK_STREAM
    ) -> list[Address] | None:
        """The last good answer for this name, if it is recent enough to stand in."""
        found = self._good.get((host, port, family, socktype))
        if found is None or time.monotonic() - found[0] > STALE_FOR:
            return None
        return found[1]

    async def resolve(
        self,
        host: str,
        port: int | None,
        timeout: float,
        family: int = socket.AF_UNSPEC,
        socktype: int = socket.SOCK_STREAM,
    ) -> list[Address]:
        """The addresses of ``host`` (in the resolver's order); raises ``ResolveError``."""
        found = literal(host, port, family, socktype)
        if found is not None:
            return found
        key: _Key = (host, port, family, socktype)
        cached = self.cached(host, port, family, socktype)
        fut = self._inflight.get(key)
        if fut is not None and fut.get_loop() is not asyncio.get_running_loop():
            fut = None  # left by an event loop that has ended (a tool, a test)
        if fut is not None and cached is not None:
            return cached  # the previous lookup is still hanging: do not wait on it again
        if fut is None:
            fut = self._start(key)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), max(timeout, 0.001))
        except TimeoutError:
            failure = ResolveError(f"{host}: no answer from the resolver within {timeout:.3g}s")
        except socket.gaierror as exc:
            definite = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
            failure = ResolveError(f"{host}: {exc.strerror or exc}", definite)
            if definite:
                self._good.pop(key, None)  # a definite answer: the name is gone
                raise failure from None
        except (OSError, UnicodeError) as exc:
            failure = ResolveError(f"{host}: {exc}")
        if cached is None:
            raise failure
        if key not in self._stale:
            self._stale.add(key)
            self.log.warning(
                f"resolving {host} failed ({failure.message}); using its last good addresses",
                extra={"host": host},
            )
        return cached

    def _start(self, key: _Key) -> asyncio.Future[list[Address]]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Address]] = loop.create_future()
        self._inflight[key] = fut
        host, port, family, socktype = key

        def deliver(result: list[Address] | None, exc: BaseException | None) -> None:
            if self._inflight.get(key) is fut:
                del self._inflight[key]
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
                return
            assert result is not None
            if not result:
                fut.set_exception(socket.gaierror(socket.EAI_NONAME, "no address"))
                return
            self._good[key] = (time.monotonic(), result)
            self._stale.discard(key)
            fut.set_result(result)

        def lookup() -> None:
            result: list[Address] | None = None
            error: BaseException | None = None
            try:
                infos = socket.getaddrinfo(host, port, family=family, type=socktype)
                result = [(fam, sockaddr) for fam, _t, _p, _c, sockaddr in infos]
            except Exception as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone (the agent stopped)
                loop.call_soon_threadsafe(deliver, result, error)

        # Nobody awaiting a failed lookup must not log "exception was never retrieved".
        fut.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        threading.Thread(target=lookup, name=f"giamsat-resolve {host}", daemon=True).start()
        return fut
