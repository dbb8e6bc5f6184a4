"""The HTTP endpoint's connections: capped, evicted when idle, accepted without spinning when out of
descriptors, TLS set up in each connection's own thread.

A connection costs a thread and a file descriptor, which the probes need too, so live connections are
capped. A connection waiting for a request (new, or kept alive between scrapes as Prometheus does) is
closed, oldest first, to make room for a new one, as nginx reuses idle keep-alive connections when it
runs out: idle connections then cannot lock scrapers out. Only when every slot is serving a request is
the new connection closed at once. The wait for a request line is short (10 s), ``accept()`` backs off
when the process is out of descriptors instead of spinning, and the open-files soft limit is raised to
the hard one at start, as Go programs (node_exporter, Prometheus) do.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.webconfig import WebConfig

log = logging.getLogger("giamsat.web")

#: How long a connection may wait before sending a request line (new or kept-alive); then it is closed.
REQUEST_LINE_TIMEOUT = 10.0
#: Socket timeout while reading the rest of a request and writing the response.
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


class _Conn:
    """One live connection: its socket (the TLS one once wrapped) and whether its slot was taken over."""

    __slots__ = ("evicted", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.evicted = False

    def close_now(self) -> None:
        """Wake the connection's thread from its read: it sees end of file and ends."""
        # The plain socket method, also for an SSLSocket: SSLSocket.shutdown() would drop its TLS state
        # under the thread that is using it. OSError: already closed by its own thread.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class ConnectionManagedServer(ThreadingHTTPServer):
    """A threading HTTP server whose connections are capped and evicted when idle (see the module)."""

    daemon_threads = True
    block_on_close = False  # server_close() closes idle connections and waits for busy ones itself
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
        self.request_line_timeout = REQUEST_LINE_TIMEOUT
        self._conn_lock = threading.Lock()
        self._live = 0
        #: connections waiting for a request, oldest first (an ordered set)
        self._idle: OrderedDict[_Conn, None] = OrderedDict()
        self._conn_threads: set[threading.Thread] = set()
        self._local = threading.local()
        self._closing = False
        self.connections_rejected_total = 0
        self.connections_evicted_total = 0
        self.accept_errors_total = 0
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

    def process_request(self, request: Any, client_address: Any) -> None:
        victim: _Conn | None = None
        with self._conn_lock:
            if self._closing:
                admitted = False
            elif self._live < self.max_connections:
                self._live += 1
                admitted = True
            elif self._idle:
                victim, _ = self._idle.popitem(last=False)
                victim.evicted = True  # its slot passes to the new connection
                self.connections_evicted_total += 1
                admitted = True
            else:
                self.connections_rejected_total += 1
                admitted = False
            if admitted:
                conn = _Conn(request)
                self._idle[conn] = None  # waiting for its first request line
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
                self._idle.pop(conn, None)
                if not conn.evicted:
                    self._live -= 1
                self._conn_threads.discard(threading.current_thread())

    def connection_idle(self) -> bool:
        """Called from a connection's thread before it waits for a request; False: close it instead."""
        conn: _Conn = self._local.conn
        with self._conn_lock:
            if self._closing or conn.evicted:
                return False
            self._idle[conn] = None
            return True

    def connection_busy(self) -> None:
        """Called from a connection's thread once a request line arrived: not to be closed for room."""
        conn: _Conn = self._local.conn
        with self._conn_lock:
            self._idle.pop(conn, None)

    def server_close(self) -> None:
        """Close the listener and idle connections at once; wait (bounded) for requests being served."""
        super().server_close()
        with self._conn_lock:
            self._closing = True
            idle = list(self._idle)
            threads = list(self._conn_threads)
        for conn in idle:
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
            "Connections the HTTP endpoint holds at most; beyond it idle ones are closed for new ones.",
            value=self.max_connections,
        )
        rejected = CounterMetricFamily(
            "giamsat_http_connections_rejected",
            "Connections closed at once because every connection slot was serving a request.",
            value=self.connections_rejected_total,
        )
        evicted = CounterMetricFamily(
            "giamsat_http_connections_evicted",
            "Idle connections (no request yet, or kept alive) closed to make room for a new one.",
            value=self.connections_evicted_total,
        )
        accept_errors = CounterMetricFamily(
            "giamsat_http_accept_errors",
            "Failed accept() calls for lack of file descriptors or memory (each followed by a pause).",
            value=self.accept_errors_total,
        )
        return [live, limit, rejected, evicted, accept_errors]

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS is set up here, in the connection's own thread, not on the listening socket: a client that
        # never completes its handshake then holds only its thread, never accept().
        ctx = self.web_config.ssl_context()
        if ctx is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(self.request_line_timeout)
        try:
            tls = ctx.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError:
            return
        self._local.conn.sock = tls  # (the plain socket object is detached by wrap_socket)
        try:
            tls.do_handshake()
            super().finish_request(tls, client_address)
        except OSError as exc:
            log.debug("TLS connection failed", extra={"client": client_address[0], "error": str(exc)[:200]})
        finally:
            tls.close()

    def serve_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="giamsat-http", daemon=True)
        t.start()
        return t


class ManagedConnectionHandler(BaseHTTPRequestHandler):
    """Request handler base that tells ``ConnectionManagedServer`` when its connection waits for a request
    (and may be evicted) and when it is busy; short timeout for the request line."""

    server: ConnectionManagedServer
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    timeout = REQUEST_TIMEOUT  # a client that stalls mid-request only holds its own thread, and not for long
    protocol_version = "HTTP/1.1"

    def handle_one_request(self) -> None:
        # Waiting for a request line: a short timeout, and the slot may be taken for a new connection.
        if not self.server.connection_idle():
            self.close_connection = True
            return
        self.connection.settimeout(self.server.request_line_timeout)
        super().handle_one_request()

    def parse_request(self) -> bool:
        # The request line has arrived (headers are read from here on): the connection is busy.
        self.server.connection_busy()
        self.connection.settimeout(self.timeout)
        return super().parse_request()
