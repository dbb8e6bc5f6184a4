"""A minimal HTTP server that applies a WebConfig the way the exporter does, for TLS and auth tests.

It follows the contract of ``exporters.webconfig``: wrap the listening socket with ``ssl_context()``,
handshake in the request thread (a client that never finishes its handshake must not block accept),
answer 401 with ``WWW-Authenticate`` when ``check_basic_auth`` says no, and add ``headers`` to every
response.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporters.webconfig import WWW_AUTHENTICATE, WebConfig


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        wc = self.server.web_config
        if not wc.check_basic_auth(self.headers.get("Authorization")):
            self._send(401, b"Unauthorized\n", {"WWW-Authenticate": WWW_AUTHENTICATE})
            return
        self._send(200, b"# HELP test_up A test gauge.\n# TYPE test_up gauge\ntest_up 1\n", {})

    def _send(self, code: int, body: bytes, extra: dict[str, str]) -> None:
        self.send_response(code)
        for k, v in {**self.server.web_config.headers, **extra}.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, web_config: WebConfig) -> None:
        self.web_config = web_config
        super().__init__(("127.0.0.1", 0), _Handler)
        ctx = web_config.ssl_context()
        if ctx is not None:
            self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(10)
            try:
                request.do_handshake()
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        pass


@contextmanager
def serve(web_config: WebConfig) -> Iterator[int]:
    """Serve on a free loopback port; yields the port and always shuts down."""
    srv = _Server(web_config)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)
