"""The HTTP endpoint: /metrics, blackbox-style /probe, snmp_exporter-style /snmp, /, /-/healthy,
/-/ready and POST /-/reload.

It runs in its own threads (stdlib ``ThreadingHTTPServer``), apart from the event loop that collects,
and only reads the store: a scrape never waits on a target, and even a wedged event loop leaves
/metrics answering (with results going stale, which is what an operator should then see).

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
import gzip
import html
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.kernel.store import JobResult, Store
from agent.kernel.version import __version__
from exporters.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    OwnFamilyCache,
    render_openmetrics,
    render_text,
)
from exporters.webconfig import WWW_AUTHENTICATE, WebConfig

log = logging.getLogger("giamsat.web")

MAX_QUERY_LENGTH = 2048
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


class AgentView(Protocol):
    """What the HTTP endpoint needs from the running agent."""

    store: Store
    max_label_length: int

    def own_metrics(self) -> list[Metric]: ...
    def is_ready(self) -> bool: ...
    def is_configured(self, job_id: str) -> bool: ...
    def module_filter(self, kind: str) -> Callable[[Sequence[Metric], str], list[Metric] | None] | None: ...
    def landing(self) -> dict[str, Any]: ...
    def request_reload(self) -> tuple[bool, str]: ...
    def note_scrape(self, rejected: bool, conflicts: int) -> None: ...


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # server_close() closes idle connections and waits for busy ones itself
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        agent: AgentView,
        max_concurrent: int,
        web_config: WebConfig | None = None,
        max_connections: int | None = None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.agent = agent
        self.scrape_slots = threading.BoundedSemaphore(max_concurrent)
        self.own_cache = OwnFamilyCache()
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
        super().__init__(address, Handler)

    def set_scrape_limit(self, max_concurrent: int) -> None:
        """Apply a reloaded ``agent.max_concurrent_scrapes``; scrapes in progress finish on the old limit."""
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.scrape_slots = threading.BoundedSemaphore(max_concurrent)

    # --- connections ----------------------------------------------------------------------------------
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

    def own_metrics(self) -> list[Metric]:
        """The endpoint's own counters, added to every /metrics answer."""
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


class Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    timeout = REQUEST_TIMEOUT  # a client that stalls mid-request only holds its own thread, and not for long
    server_version = f"giamsat/{__version__}"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format, *args)

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

    # --- plumbing -----------------------------------------------------------------------------------
    def _authorized(self) -> bool:
        """Basic auth from the web config; the same 401 whatever was wrong."""
        if self.server.web_config.check_basic_auth(self.headers.get("Authorization")):
            return True
        self._send(HTTPStatus.UNAUTHORIZED, b"Unauthorized\n", extra={"WWW-Authenticate": WWW_AUTHENTICATE})
        return False

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        extra: dict[str, str] | None = None,
    ) -> None:
        gz = "gzip" in self.headers.get("Accept-Encoding", "") and len(body) > 1024
        if gz:
            body = gzip.compress(body, compresslevel=1)
        self.send_response(status)
        for k, v in {**self.server.web_config.headers, **(extra or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gz:
            self.send_header("Content-Encoding", "gzip")
        if "X-Content-Type-Options" not in self.server.web_config.headers:
            self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, text: str) -> None:
        self._send(status, (text.rstrip("\n") + "\n").encode("utf-8"))

    def _query(self) -> dict[str, str] | None:
        raw = urlsplit(self.path).query
        if len(raw) > MAX_QUERY_LENGTH:
            self._text(HTTPStatus.REQUEST_URI_TOO_LONG, "query string too long")
            return None
        try:
            parsed = parse_qs(raw, keep_blank_values=True, strict_parsing=False, errors="strict")
        except (ValueError, UnicodeDecodeError):
            self._text(HTTPStatus.BAD_REQUEST, "malformed query string")
            return None
        return {k: v[-1] for k, v in parsed.items()}

    # --- routes -------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if not self._authorized():
            return
        try:
            if path == "/metrics":
                self._metrics()
            elif path == "/probe":
                self._single(kind=None)
            elif path == "/snmp":
                self._single(kind="snmp")
            elif path == "/-/healthy":
                self._text(HTTPStatus.OK, "Healthy")
            elif path == "/-/ready":
                ready = self.server.agent.is_ready()
                self._text(
                    HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
                    "Ready" if ready else "Not ready",
                )
            elif path == "/":
                self._landing()
            elif path == "/-/reload":
                self._text(HTTPStatus.METHOD_NOT_ALLOWED, "use POST to reload")
            else:
                self._text(HTTPStatus.NOT_FOUND, "not found")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("error serving request", extra={"path": path})
            self._text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        raw = (self.headers.get("Content-Length") or "0").strip()
        # isdigit() alone accepts "²" and other digits int() refuses.
        if (
            not (raw.isascii() and raw.isdigit())
            or int(raw) > 65536
            or "chunked" in self.headers.get("Transfer-Encoding", "")
        ):
            # An unread body would be parsed as the next request on this keep-alive connection.
            self.close_connection = True
            self._text(HTTPStatus.BAD_REQUEST, "a body, if any, must have a Content-Length of at most 65536")
            return
        if int(raw):
            self.rfile.read(int(raw))
        if not self._authorized():
            return
        if path == "/-/reload":
            ok, message = self.server.agent.request_reload()
            self._text(HTTPStatus.OK if ok else HTTPStatus.INTERNAL_SERVER_ERROR, message)
        else:
            self._text(HTTPStatus.NOT_FOUND, "not found")

    def _wants_openmetrics(self) -> bool:
        # Prometheus 2.x lists OpenMetrics first on every scrape; curl and older scrapers get text.
        return "application/openmetrics-text" in self.headers.get("Accept", "")

    def _metrics(self) -> None:
        agent = self.server.agent
        slots = self.server.scrape_slots  # the one acquired is the one released, even across a reload
        if not slots.acquire(blocking=False):
            agent.note_scrape(rejected=True, conflicts=0)
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, "too many concurrent scrapes; try again")
            return
        try:
            results = agent.store.snapshot()
            own = agent.own_metrics() + self.server.own_metrics()
            render = render_openmetrics if self._wants_openmetrics() else render_text
            body, conflicts = render(results, own, agent.max_label_length, self.server.own_cache)
            agent.note_scrape(rejected=False, conflicts=conflicts)
            ctype = OPENMETRICS_CONTENT_TYPE if render is render_openmetrics else TEXT_CONTENT_TYPE
            self._send(HTTPStatus.OK, body, ctype)
        finally:
            slots.release()

    def _single(self, kind: str | None) -> None:
        """One configured target's cached result, without site/target labels (as the peer exporter)."""
        q = self._query()
        if q is None:
            return
        target, module = q.get("target", ""), q.get("module", "")
        if not target:
            self._text(HTTPStatus.BAD_REQUEST, "target parameter is missing")
            return
        if not module and kind is None:
            self._text(HTTPStatus.BAD_REQUEST, "module parameter is missing")
            return
        job_kind = kind or module
        agent = self.server.agent
        job_id = f"{job_kind}/{target}"
        if not agent.is_configured(job_id):
            # Only configured targets are served: a caller can never make the agent probe an address.
            self._text(HTTPStatus.NOT_FOUND, f"unknown target {target[:100]!r} for module {job_kind[:50]!r}")
            return
        result = agent.store.get(job_id)
        if result is None:
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, "no fresh result for this target yet")
            return
        families: Sequence[Metric] = result.families
        if kind is not None and module:
            select = agent.module_filter(kind)
            if select is not None:
                chosen = select(families, module)
                if chosen is None:
                    self._text(HTTPStatus.NOT_FOUND, f"unknown module {module[:50]!r}")
                    return
                families = chosen
        single = JobResult(
            job_id=result.job_id,
            kind=result.kind,
            target=None,
            site=None,
            families=tuple(families),
            timestamp=result.timestamp,
            duration=result.duration,
            success=result.success,
        )
        if self._wants_openmetrics():
            body, _ = render_openmetrics([single], [], agent.max_label_length)
            self._send(HTTPStatus.OK, body, OPENMETRICS_CONTENT_TYPE)
        else:
            body, _ = render_text([single], [], agent.max_label_length)
            self._send(HTTPStatus.OK, body, TEXT_CONTENT_TYPE)

    def _landing(self) -> None:
        info = self.server.agent.landing()
        e = html.escape
        rows = "".join(
            f"<tr><td>{e(j['collector'])}</td><td>{e(j['target'])}</td><td>{e(j['site'])}</td>"
            f"<td>{'ok' if j['success'] else e('failing: ' + j['reason']) if j['success'] is False else '-'}</td>"
            f"<td>{e(j['age'])}</td></tr>"
            for j in info["jobs"]
        )
        sites = "".join(
            f"<tr><td>{e(s['id'])}</td><td>{e(s['name'])}</td><td>{e(s['level'])}</td><td>{e(s['parent'])}</td></tr>"
            for s in info["sites"]
        )
        page = f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>giamsat</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}</style></head>
<body><h1>giamsat {e(__version__)}</h1>
<p><a href="/metrics">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a></p>
<p>Configuration: {e(info["config"])} · last reload {"successful" if info["reload_ok"] else "FAILED"}</p>
<h2>Collection jobs</h2><table><tr><th>Collector</th><th>Target</th><th>Site</th><th>State</th><th>Last run</th></tr>
{rows}</table>
<h2>Sites</h2><table><tr><th>Id</th><th>Name</th><th>Level</th><th>Parent</th></tr>{sites}</table>
</body></html>
"""
        self._send(HTTPStatus.OK, page.encode("utf-8"), "text/html; charset=utf-8")


def format_age(ts: float, now: float | None = None) -> str:
    if not ts:
        return "never"
    return f"{max(0.0, (now or time.time()) - ts):.1f}s ago"
