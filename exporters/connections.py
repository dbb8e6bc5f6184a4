"""The HTTP endpoint's connections: capped per process and per client address, evicted while they have
not yet sent a whole request, bounded in header size and header time, TLS set up in each connection's
own thread, accepted without spinning when out of descriptors.

A connection costs a thread and a file descriptor, which the probes need too, so live connections are
capped. A connection that has not yet delivered a complete request (new, kept alive between scrapes as
Prometheus does, or still sending its headers) is *waiting*; when the slots run out the oldest waiting
connection is closed to make room for the new one, as nginx reuses idle keep-alive connections: idle
or slow clients then cannot lock scrapers out. Only when every slot is serving a request is the new
connection closed at once. One client address holds at most a quarter of the slots (beyond it, its own
oldest waiting connection makes room), so one host cannot fill the endpoint with slow responses either.

Time and size: a connection waits at most ``IDLE_TIMEOUT`` for the first byte of a request, then has
``HEADER_TIMEOUT`` in all for the request line and headers (Go's ``ReadHeaderTimeout``; a per-read
timeout alone lets a client send one byte every few seconds forever), and ``MAX_HEADER_BYTES`` for them
(431 beyond; the standard library alone takes 100 lines of 64 KiB). Bodies are only accepted on POST and
only up to ``MAX_BODY_BYTES`` (413 beyond). A client that resets or times out is an expected event: one
debug line, never a traceback. The open-files soft limit is raised to the hard one at start, as Go
programs (node_exporter, Prometheus) do.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import io
import logging
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.webconfig import WebConfig

log = logging.getLogger("giamsat.web")

#: How long a connection may wait for the first byte of a request (new or kept-alive); then it is closed.
IDLE_TIMEOUT = 10.0
#: From the first byte of a request to the end of its headers (and for a TLS handshake), at most.
HEADER_TIMEOUT = 10.0
#: Request line plus headers, at most (431 beyond). A Prometheus scrape sends about 300 bytes.
MAX_HEADER_BYTES = 16384
#: A request body (only POST /-/reload takes one, and needs none), at most (413 beyond).
MAX_BODY_BYTES = 65536
#: Socket timeout for each read of a body and each write of a response.
REQUEST_TIMEOUT = 30.0
#: Upper bound on live connections; lower when the open-files limit is low (see ``default_max_connections``).
MAX_CONNECTIONS = 256
#: accept() errors that mean "out of descriptors or memory": retried after this pause, not at once.
ACCEPT_BACKOFF = 0.1
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit, as Go's runtime does at start; (old, new) soft.

    Probes, SNMP and SSH sessions and HTTP connections all take descriptors; the soft limit systemd and
    shells give (1024) is a compatibility default for select(), which nothing here uses. Under a
    sandbox that forbids setrlimit the limit stays as it was (the unit sets LimitNOFILE= instead).
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return soft, soft
    # RLIM_INFINITY as the hard limit: setting the soft limit to it fails; stay within nr_open.
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.debug("cannot raise the open-files limit", extra={"soft": soft, "error": str(exc)})
        return soft, soft
    return soft, target


def default_max_connections() -> int:
    """``MAX_CONNECTIONS``, or an eighth of the open-files limit if that is lower (at least 16)."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft // 8))


def expected_network_error(exc: BaseException) -> bool:
    """A client going away or stalling: reset, broken pipe, TLS cut short, a timeout. Not a bug."""
    if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOTCONN, errno.EBADF, errno.ETIMEDOUT)


class HeaderTooLarge(http.client.LineTooLong):
    """The request line and headers passed ``MAX_HEADER_BYTES``. (A LineTooLong, so that the standard
    library's header parser answers 431 itself.)"""

    def __init__(self) -> None:
        super().__init__("request line and headers")


class _Conn:
    """One live connection: its socket (the TLS one once wrapped), its client address and whether its
    slot was taken over."""

    __slots__ = ("addr", "evicted", "sock")

    def __init__(self, sock: socket.socket, addr: str) -> None:
        self.sock = sock
        self.addr = addr
        self.evicted = False

    def close_now(self) -> None:
        """Wake the connection's thread from its read: it sees end of file and ends."""
        # The plain socket method, also for an SSLSocket: SSLSocket.shutdown() would drop its TLS state
        # under the thread that is using it. OSError: already closed by its own thread.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class _DeadlineReader(io.RawIOBase):
    """The socket read side, with an optional absolute deadline: each read waits at most until then
    (then ``TimeoutError``), otherwise the socket's own per-read timeout applies."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        self.sock = sock
        self.timeout = timeout
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.deadline is None:
            self.sock.settimeout(self.timeout)
        else:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request headers not complete in time")
            self.sock.settimeout(min(left, self.timeout))
        return self.sock.recv_into(b)


class _HeaderBudget:
    """What the request-line and header parser reads through: ``readline`` with a total byte budget."""

    def __init__(self, rfile: io.BufferedReader[Any]) -> None:
        self.rfile = rfile
        self.left = 0
        #: the client closed before the blank line that ends the headers (the parser takes end of file
        #: for that line: such a request must not be served)
        self.eof = False

    def reset(self, budget: int) -> None:
        self.left = budget
        self.eof = False

    def readline(self, limit: int = -1) -> bytes:
        cap = self.left + 1 if limit < 0 else min(limit, self.left + 1)
        line = self.rfile.readline(cap)
        if not line.endswith(b"\n"):
            self.eof = True
        self.left -= len(line)
        if self.left < 0:
            raise HeaderTooLarge()
        return line


class ConnectionManagedServer(ThreadingHTTPServer):
    """A threading HTTP server whose connections are capped and evicted while waiting (see the module)."""

    daemon_threads = True
    block_on_close = False  # server_close() closes waiting connections and waits for busy ones itself
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        web_config: WebConfig | None = None,
        max_connections: int | None = None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        #: TLS, basic auth and headers; swapped whole on reload (new connections use the new one).
        self.web_config = web_config or WebConfig.disabled()
        old, new = raise_open_files_limit()
        if new != old:
            log.debug("raised the open-files limit", extra={"from": old, "to": new})
        self.max_connections = max_connections or default_max_connections()
        self.max_per_address = max(4, self.max_connections // 4)
        self.idle_timeout = IDLE_TIMEOUT
        self.header_timeout = HEADER_TIMEOUT
        self.max_header_bytes = MAX_HEADER_BYTES
        self.max_body_bytes = MAX_BODY_BYTES
        self._conn_lock = threading.Lock()
        self._live = 0
        self._per_address: dict[str, int] = {}
        #: connections without a complete request (new, kept alive, or sending headers), oldest first
        self._waiting: OrderedDict[_Conn, None] = OrderedDict()
        self._conn_threads: set[threading.Thread] = set()
        self._local = threading.local()
        self._closing = False
        self.connections_rejected_total = 0
        self.connections_evicted_total = 0
        self.accept_errors_total = 0
        self.header_timeouts_total = 0
        self.requests_too_large_total = 0
        super().__init__(address, handler)

    def get_request(self) -> tuple[Any, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in _RESOURCE_ERRNOS:
                # The listening socket stays readable while the connection waits in the backlog:
                # retrying at once would spin a core and starve the probes of the descriptors that
                # just freed up. (serve_forever ignores the OSError and selects again.)
                self.accept_errors_total += 1
                if self.accept_errors_total % 100 == 1:
                    log.warning(
                        "cannot accept connections: out of file descriptors",
                        extra={"error": exc.strerror, "live_connections": self._live},
                    )
                time.sleep(ACCEPT_BACKOFF)
            raise

    def _oldest_waiting(self, addr: str | None) -> _Conn | None:
        for conn in self._waiting:
            if addr is None or conn.addr == addr:
                return conn
        return None

    def process_request(self, request: Any, client_address: Any) -> None:
        addr = str(client_address[0])
        victim: _Conn | None = None
        with self._conn_lock:
            if self._closing:
                admitted = False
            else:
                if self._per_address.get(addr, 0) >= self.max_per_address:
                    victim = self._oldest_waiting(addr)  # this address makes room itself, or waits
                elif self._live >= self.max_connections:
                    victim = self._oldest_waiting(None)
                admitted = victim is not None or (
                    self._per_address.get(addr, 0) < self.max_per_address
                    and self._live < self.max_connections
                )
            if victim is not None:
                del self._waiting[victim]
                victim.evicted = True  # its slot passes to the new connection
                self.connections_evicted_total += 1
                self._live -= 1
                self._per_address[victim.addr] -= 1
                if not self._per_address[victim.addr]:
                    del self._per_address[victim.addr]
            if admitted:
                self._live += 1
                self._per_address[addr] = self._per_address.get(addr, 0) + 1
                conn = _Conn(request, addr)
                self._waiting[conn] = None  # waiting for its first request
            elif not self._closing:
                self.connections_rejected_total += 1
        if victim is not None:
            victim.close_now()
        if not admitted:
            self.shutdown_request(request)
            return
        t = threading.Thread(
            target=self._connection_thread, args=(request, client_address, conn), daemon=True
        )
        with self._conn_lock:
            self._conn_threads.add(t)
        t.start()

    def _connection_thread(self, request: Any, client_address: Any, conn: _Conn) -> None:
        self._local.conn = conn
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._waiting.pop(conn, None)
                if not conn.evicted:
                    self._live -= 1
                    self._per_address[conn.addr] -= 1
                    if not self._per_address[conn.addr]:
                        del self._per_address[conn.addr]
                self._conn_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets or stalls is logged at debug; anything else once, with its traceback."""
        import sys

        exc = sys.exc_info()[1]
        if exc is not None and expected_network_error(exc):
            log.debug("connection ended", extra={"client": client_address[0], "error": repr(exc)[:200]})
            return
        log.error("error serving a connection", exc_info=True, extra={"client": client_address[0]})

    def connection_waiting(self) -> bool:
        """Called from a connection's thread before it waits for a request; False: close it instead."""
        conn: _Conn = self._local.conn
        with self._conn_lock:
            if self._closing or conn.evicted:
                return False
            self._waiting[conn] = None
            return True

    def connection_busy(self) -> bool:
        """Called from a connection's thread once its headers are in: not to be closed for room from now
        on. False if its slot was taken over meanwhile (the connection is then closed, unanswered)."""
        conn: _Conn = self._local.conn
        with self._conn_lock:
            self._waiting.pop(conn, None)
            return not conn.evicted

    def server_close(self) -> None:
        """Close the listener and waiting connections at once; wait (bounded) for requests being served."""
        super().server_close()
        with self._conn_lock:
            self._closing = True
            waiting = list(self._waiting)
            threads = list(self._conn_threads)
        for conn in waiting:
            conn.close_now()
        deadline = time.monotonic() + 5
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def connection_metrics(self) -> list[Metric]:
        """The endpoint's connection counters (a source of the agent's own metrics)."""
        live = GaugeMetricFamily(
            "giamsat_http_connections", "Open connections to the HTTP endpoint.", value=self._live
        )
        limit = GaugeMetricFamily(
            "giamsat_http_connections_limit",
            "Connections the HTTP endpoint holds at most; beyond it waiting ones are closed for new ones.",
            value=self.max_connections,
        )
        rejected = CounterMetricFamily(
            "giamsat_http_connections_rejected",
            "Connections closed at once because every slot they could take was serving a request.",
            value=self.connections_rejected_total,
        )
        evicted = CounterMetricFamily(
            "giamsat_http_connections_evicted",
            "Connections without a complete request (idle, kept alive or sending headers) closed to make "
            "room for a new one.",
            value=self.connections_evicted_total,
        )
        timeouts = CounterMetricFamily(
            "giamsat_http_header_timeouts",
            "Connections closed because their request line and headers did not arrive in time.",
            value=self.header_timeouts_total,
        )
        too_large = CounterMetricFamily(
            "giamsat_http_requests_too_large",
            "Requests refused for oversized headers (431) or body (413).",
            value=self.requests_too_large_total,
        )
        accept_errors = CounterMetricFamily(
            "giamsat_http_accept_errors",
            "Failed accept() calls for lack of file descriptors or memory (each followed by a pause).",
            value=self.accept_errors_total,
        )
        return [live, limit, rejected, evicted, timeouts, too_large, accept_errors]

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS is set up here, in the connection's own thread, not on the listening socket: a client that
        # never completes its handshake then holds only its thread, never accept().
        ctx = self.web_config.ssl_context()
        if ctx is None:
            super().finish_request(request, client_address)
            return
        try:
            tls = ctx.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError:
            return
        self._local.conn.sock = tls  # (the plain socket object is detached by wrap_socket)
        try:
            self._handshake(tls)
            super().finish_request(tls, client_address)
        except Exception as exc:
            if not expected_network_error(exc):
                raise
            log.debug("TLS connection ended", extra={"client": client_address[0], "error": str(exc)[:200]})
        finally:
            tls.close()

    def _handshake(self, tls: ssl.SSLSocket) -> None:
        """The TLS handshake within ``header_timeout`` in all, however slowly the client sends it."""
        deadline = time.monotonic() + self.header_timeout
        tls.setblocking(False)
        try:
            while True:
                try:
                    tls.do_handshake()
                    return
                except ssl.SSLWantReadError:
                    events = select.POLLIN
                except ssl.SSLWantWriteError:
                    events = select.POLLOUT
                left = deadline - time.monotonic()
                if left <= 0:
                    self.header_timeouts_total += 1
                    raise TimeoutError("TLS handshake not complete in time")
                poller = select.poll()
                poller.register(tls.fileno(), events)
                poller.poll(left * 1000)
        finally:
            if tls.fileno() >= 0:
                tls.setblocking(True)

    def serve_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="giamsat-http", daemon=True)
        t.start()
        return t


class ManagedConnectionHandler(BaseHTTPRequestHandler):
    """Request handler base that tells ``ConnectionManagedServer`` when its connection waits for a request
    (and may be evicted) and when it is busy, and holds the request line and headers to their deadline
    and size; bodies other than a small POST one are refused."""

    server: ConnectionManagedServer
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    timeout = REQUEST_TIMEOUT  # per read of a body and write of a response
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain buffered reader setup() made: replaced by one with a deadline
        self._reader = _DeadlineReader(self.connection, self.timeout)
        self._buffered = io.BufferedReader(self._reader)
        self._budget = _HeaderBudget(self._buffered)
        self.rfile = self._buffered

    def handle_one_request(self) -> None:
        server = self.server
        # Waiting for a request: the slot may be taken for a new connection.
        if not server.connection_waiting():
            self.close_connection = True
            return
        self._reader.deadline = time.monotonic() + server.idle_timeout
        try:
            if not self._buffered.peek(1):
                self.close_connection = True
                return
        except TimeoutError:
            self.close_connection = True  # idle too long: a normal end of a kept-alive connection
            return
        # The request has begun: its line and headers have HEADER_TIMEOUT and MAX_HEADER_BYTES in all.
        self._reader.deadline = time.monotonic() + server.header_timeout
        self._budget.reset(server.max_header_bytes)
        self.rfile = self._budget  # type: ignore[assignment]
        try:
            super().handle_one_request()
        except HeaderTooLarge:
            # Over budget in the request line itself: nothing of the request is parsed yet.
            self.requestline, self.request_version, self.command = "", "", ""
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request line and headers too large")
        finally:
            self.rfile = self._buffered
            self._reader.deadline = None

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out") and self._reader.deadline is not None:
            self.server.header_timeouts_total += 1
        super().log_error(format, *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code in (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, HTTPStatus.REQUEST_URI_TOO_LONG):
            self.server.requests_too_large_total += 1
            message = message if code == HTTPStatus.REQUEST_URI_TOO_LONG else "request headers too large"
        super().send_error(code, message, explain)

    def _refuse(self, status: HTTPStatus, text: str) -> None:
        """Answer with ``status`` and close: the rest of the request is never read."""
        self.close_connection = True
        if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            self.server.requests_too_large_total += 1
        self.send_error(status, text)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        # Headers complete: the deadline ends, the connection is busy, and the body is checked.
        self.rfile = self._buffered
        self._reader.deadline = None
        if not self.server.connection_busy() or self._budget.eof:
            self.close_connection = True
            return False
        return self._body_allowed()

    def _body_allowed(self) -> bool:
        """A body only on POST, with a Content-Length of at most ``max_body_bytes`` (413 beyond); an
        unread body would otherwise be parsed as the next request on a kept-alive connection."""
        raw = self.headers.get("Content-Length")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if raw is None and not chunked:
            return True
        raw = (raw or "").strip()
        # isdigit() alone accepts "²" and other digits int() refuses.
        if chunked or not (raw.isascii() and raw.isdigit()):
            self._refuse(HTTPStatus.BAD_REQUEST, "a body needs a plain Content-Length")
            return False
        n = int(raw)
        if n > self.server.max_body_bytes or (n and self.command != "POST"):
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            return False
        return True
