"""The HTTP endpoint: /metrics, the routes collectors register (/probe, /snmp), /, /-/healthy,
/-/ready and POST /-/reload.

It runs in its own threads (stdlib ``ThreadingHTTPServer``, connections managed in
``exporters.connections``), apart from the event loop that collects, and only reads: a scrape never waits
on a target, and even a wedged event loop leaves /metrics answering (with results going stale, which is
what an operator should then see).
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from agent.kernel.collector import Reply, RouteHandler, RouteRequest
from agent.kernel.registry import SelfMetrics
from agent.kernel.results import JobResult
from agent.kernel.store import Store
from agent.kernel.version import __version__
from exporters.connections import ConnectionManagedServer, ManagedConnectionHandler
from exporters.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Exposition,
    OwnFamilyCache,
    ResultRenderCache,
    render_exposition,
    render_openmetrics,
    render_text,
)
from exporters.status import StatusPage, StatusSnapshot
from exporters.webconfig import WWW_AUTHENTICATE, WebConfig

log = logging.getLogger("giamsat.web")

MAX_QUERY_LENGTH = 2048

#: Bytes handed to the socket (or to the compressor) at a time when an answer is streamed.
STREAM_CHUNK = 256 * 1024


def coalesced(pieces: Iterable[bytes], size: int = STREAM_CHUNK) -> Iterator[bytes | bytearray]:
    """``pieces`` regrouped into slices of about ``size`` bytes: one write per slice instead of per
    piece (an answer has ~100 000 of them). A yielded bytearray is reused once the caller moves on."""
    buf = bytearray()
    for piece in pieces:
        if len(piece) >= size:
            if buf:
                yield buf
                buf.clear()
            yield piece
            continue
        buf += piece
        if len(buf) >= size:
            yield buf
            buf.clear()
    if buf:
        yield buf


def gzipped(chunks: Iterable[bytes | bytearray]) -> Iterator[bytes]:
    """A gzip stream (as ``gzip.compress(compresslevel=1)``) of the chunks, compressed as they come."""
    z = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: gzip header and trailer
    for chunk in chunks:
        out = z.compress(chunk)
        if out:
            yield out
    yield z.flush()


class AgentView(Protocol):
    """What the HTTP endpoint needs from the running agent (also the ``RouteContext`` of its routes)."""

    store: Store
    max_label_length: int
    self_metrics: SelfMetrics

    def is_ready(self) -> bool: ...
    def routes(self, path: str) -> tuple[RouteHandler, ...]: ...
    def result(self, job_id: str) -> JobResult | None: ...
    def has_job(self, job_id: str) -> bool: ...
    def status(self) -> StatusSnapshot: ...
    def request_reload(self) -> tuple[bool, str]: ...
    def note_scrape(self, rejected: bool, conflicts: int) -> None: ...


class ExporterServer(ConnectionManagedServer):
    """The endpoint's server: the agent it reads, the scrape limit and the render caches."""

    def __init__(
        self,
        address: tuple[str, int],
        agent: AgentView,
        max_concurrent: int,
        web_config: WebConfig | None = None,
        max_connections: int | None = None,
    ) -> None:
        self.agent = agent
        self.scrape_slots = threading.BoundedSemaphore(max_concurrent)
        self.own_cache = OwnFamilyCache()
        self.result_cache = ResultRenderCache()
        self.status_page = StatusPage()
        super().__init__(address, Handler, web_config, max_connections)

    def set_scrape_limit(self, max_concurrent: int) -> None:
        """Apply a reloaded ``agent.max_concurrent_scrapes``; scrapes in progress finish on the old limit."""
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.scrape_slots = threading.BoundedSemaphore(max_concurrent)


class Handler(ManagedConnectionHandler):
    server: ExporterServer
    server_version = f"giamsat/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format, *args)

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
        gz = self._wants_gzip() and len(body) > 1024
        if gz:
            body = gzip.compress(body, compresslevel=1)
        self._head(status, content_type, len(body), gz, extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _wants_gzip(self) -> bool:
        return "gzip" in self.headers.get("Accept-Encoding", "")

    def _head(
        self,
        status: int,
        content_type: str,
        length: int | None,
        gz: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Status and headers; ``length`` None: the body follows in chunked transfer coding."""
        self.send_response(status)
        for k, v in {**self.server.web_config.headers, **(extra or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if gz:
            self.send_header("Content-Encoding", "gzip")
        if "X-Content-Type-Options" not in self.server.web_config.headers:
            self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()

    def _send_exposition(self, status: int, body: Exposition, content_type: str) -> None:
        """An answer written as it is produced, never joined: as ``_send`` would answer, except that a
        gzip answer to an HTTP/1.1 GET goes out in chunked transfer coding (its length is known only
        at its end). Otherwise the compressed answer (~1/15 of the plain one) is held to be counted."""
        head = self.command == "HEAD"
        write = self.wfile.write
        if not (self._wants_gzip() and body.length > 1024):
            self._head(status, content_type, body.length, False)
            if not head:
                for chunk in coalesced(body.pieces()):
                    write(chunk)
            return
        compressed = gzipped(coalesced(body.pieces()))
        if head or self.request_version != "HTTP/1.1":
            held = list(compressed)
            self._head(status, content_type, sum(map(len, held)), True)
            if not head:
                for chunk in held:
                    write(chunk)
            return
        self._head(status, content_type, None, True)
        for chunk in compressed:
            write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        write(b"0\r\n\r\n")

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
            elif path == "/-/healthy":
                self._text(HTTPStatus.OK, "Healthy")
            elif path == "/-/ready":
                ready = self.server.agent.is_ready()
                self._text(
                    HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
                    "Ready" if ready else "Not ready",
                )
            elif path == "/":
                self._status_page()
            elif path == "/-/reload":
                self._text(HTTPStatus.METHOD_NOT_ALLOWED, "use POST to reload")
            else:
                self._route(path)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("error serving request", extra={"path": path})
            self._text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        # The body's size was checked with the headers (exporters.connections): read it, so that it is
        # not parsed as the next request on this kept-alive connection.
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
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
            own = agent.self_metrics.collect()
            openmetrics = self._wants_openmetrics()
            body, conflicts = render_exposition(
                results,
                own,
                agent.max_label_length,
                openmetrics,
                self.server.own_cache,
                self.server.result_cache,
            )
            agent.note_scrape(rejected=False, conflicts=conflicts)
            ctype = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
            self._send_exposition(HTTPStatus.OK, body, ctype)
        finally:
            slots.release()

    def _status_page(self) -> None:
        q = self._query()
        if q is None:
            return
        body, lang = self.server.status_page.render(
            self.server.agent.status(),
            self.headers.get("Accept-Language"),
            q.get("lang"),
            open_site=q.get("open"),
        )
        extra = {"Content-Language": lang, "Vary": "Accept-Language", "Cache-Control": "no-store"}
        self._send(HTTPStatus.OK, body, "text/html; charset=utf-8", extra)

    def _route(self, path: str) -> None:
        """A route a collector registered (``/probe``, ``/snmp``): each handler is asked in turn."""
        agent = self.server.agent
        handlers = agent.routes(path)
        if not handlers:
            self._text(HTTPStatus.NOT_FOUND, "not found")
            return
        q = self._query()
        if q is None:
            return
        every = parse_qs(urlsplit(self.path).query, keep_blank_values=True)  # already checked by _query
        request = RouteRequest(path, q, {k.lower(): v for k, v in self.headers.items()}, every)
        reply: Reply | None = None
        for handler in handlers:
            reply = handler(request, agent)
            if reply is not None:
                break
        if reply is None:  # no collector serves that module: blackbox_exporter's answer
            reply = Reply(
                HTTPStatus.BAD_REQUEST,
                f"Unknown module {json.dumps(q.get('module', '')[:50], ensure_ascii=False)}",
            )
        if reply.families is None:
            if reply.content_type.startswith("text/plain"):
                self._text(reply.status, reply.text)
            else:
                self._send(reply.status, reply.text.encode("utf-8"), reply.content_type)
            return
        # As the peer exporters serve one target: its families without site/target labels.
        single = JobResult("", "", None, None, tuple(reply.families), time.time(), 0.0, True)
        if self._wants_openmetrics():
            body, _ = render_openmetrics([single], [], agent.max_label_length)
            self._send(reply.status, body, OPENMETRICS_CONTENT_TYPE)
        else:
            body, _ = render_text([single], [], agent.max_label_length)
            self._send(reply.status, body, TEXT_CONTENT_TYPE)
