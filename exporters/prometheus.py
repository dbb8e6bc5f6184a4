"""The HTTP endpoint: /metrics, blackbox-style /probe, snmp_exporter-style /snmp, /, /-/healthy,
/-/ready and POST /-/reload.

It runs in its own threads (stdlib ``ThreadingHTTPServer``), apart from the event loop that collects,
and only reads the store: a scrape never waits on a target, and even a wedged event loop leaves
/metrics answering (with results going stale, which is what an operator should then see).
"""

from __future__ import annotations

import gzip
import html
import logging
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from prometheus_client.core import Metric

from agent import __version__
from agent.store import JobResult, Store
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
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        agent: AgentView,
        max_concurrent: int,
        web_config: WebConfig | None = None,
    ) -> None:
        import socket

        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.agent = agent
        self.scrape_slots = threading.BoundedSemaphore(max_concurrent)
        self.own_cache = OwnFamilyCache()
        #: TLS, basic auth and headers; swapped whole on reload (new connections use the new one).
        self.web_config = web_config or WebConfig.disabled()
        super().__init__(address, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS is set up here, in the connection's own thread, not on the listening socket: a client that
        # never completes its handshake then holds only its thread, never accept().
        ctx = self.web_config.ssl_context()
        if ctx is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(Handler.timeout)
        try:
            tls = ctx.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError:
            return
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
    timeout = 30  # a client that stalls mid-request only holds its own thread, and not for long
    server_version = f"giamsat/{__version__}"
    protocol_version = "HTTP/1.1"

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
        if not raw.isdigit() or int(raw) > 65536 or "chunked" in self.headers.get("Transfer-Encoding", ""):
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

    def _metrics(self) -> None:
        agent = self.server.agent
        if not self.server.scrape_slots.acquire(blocking=False):
            agent.note_scrape(rejected=True, conflicts=0)
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, "too many concurrent scrapes; try again")
            return
        try:
            results = agent.store.snapshot()
            own = agent.own_metrics()
            if "application/openmetrics-text" in self.headers.get("Accept", ""):
                body = render_openmetrics(results, own, agent.max_label_length)
                self._send(HTTPStatus.OK, body, OPENMETRICS_CONTENT_TYPE)
            else:
                body, conflicts = render_text(results, own, agent.max_label_length, self.server.own_cache)
                agent.note_scrape(rejected=False, conflicts=conflicts)
                self._send(HTTPStatus.OK, body, TEXT_CONTENT_TYPE)
        finally:
            self.server.scrape_slots.release()

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
