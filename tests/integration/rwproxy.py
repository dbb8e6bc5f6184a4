"""A scriptable HTTP proxy in front of a real receiver: forwards remote-write requests and can answer
with a given status, or forward and then drop the answer (a lost acknowledgement)."""

from __future__ import annotations

import http.client
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Proxy:
    """Actions are consumed one per request: "pass", "drop_answer" (forward, then close without answering),
    or an int status to answer without forwarding; once exhausted every request passes."""

    def __init__(
        self, upstream: str, actions: list[str | int] | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.actions = list(actions or [])
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int | str] = []
        self.retry_after: str | None = None
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a client that connects and never speaks only holds its own thread, briefly

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with proxy._lock:
                    proxy.headers.append({k.lower(): v for k, v in self.headers.items()})
                    action = proxy.actions.pop(0) if proxy.actions else "pass"
                if isinstance(action, int):
                    proxy.statuses.append(action)
                    self.send_response(action)
                    if proxy.retry_after is not None:
                        self.send_header("Retry-After", proxy.retry_after)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.write(b"test")
                    return
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname or "", proxy.upstream.port, timeout=30
                )
                fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", proxy.upstream.path, body=body, headers=fwd)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                proxy.statuses.append(resp.status if action == "pass" else "dropped")
                if action == "drop_answer":
                    self.close_connection = True
                    return  # the handler returns without a response: the client sees the connection closed
                self.send_response(resp.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            # The handshake must not run in accept(): a client that connects and then goes away before its
            # ClientHello would block serve_forever, and with it shutdown(), forever. With the handshake
            # deferred, it happens on the first read, in the connection's own thread, under its timeout.
            self.server.socket = tls.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.scheme = "https" if tls is not None else "http"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.upstream.path}"

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
