"""Secrets quoted back from outside never reach the log or /metrics: `giamsat run` remote-writes to a
real HTTP server that echoes the request's Authorization header in its 4xx and 5xx bodies (as some
proxies do), with a bearer token and with basic auth."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.helpers import wait_for
from tests.integration.http_attacks import running_agent

TOKEN = "canary-bearer-4f1c9e27a"
USER, PASSWORD = "rw-user", "canary-password-8d2e"


class EchoAuth(BaseHTTPRequestHandler):
    """Answers every write with the Authorization header quoted back: 400 and 503 in turn."""

    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).calls += 1
        status = 400 if type(self).calls % 2 else 503
        auth = self.headers.get("Authorization", "")
        raw = auth.split(" ", 1)[-1]
        decoded = base64.b64decode(raw).decode() if auth.startswith("Basic") else raw
        body = f"denied: you sent Authorization: {auth} ({decoded}; token={raw})\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def echo_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoAuth)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_receiver_that_echoes_the_authorization_header_leaks_nothing(tmp_path: Path) -> None:
    with echo_server() as receiver:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/api/v1/write"
        rw = f"""
remote_write:
  - {{name: token, url: "{url}", bearer_token: {TOKEN}, min_backoff: 100ms, max_backoff: 200ms}}
  - name: basic
    url: "{url}"
    basic_auth: {{username: {USER}, password: {PASSWORD}}}
    min_backoff: 100ms
    max_backoff: 200ms
"""
        with running_agent(tmp_path, extra_config=rw, log_level="debug") as agent:
            wait_for(lambda: EchoAuth.calls >= 12, 30, what="writes answered with the header echoed")
            metrics = agent.scraper().scrape_once()
            assert metrics[1] == 200
            text = agent.metrics()
    log = agent.log.read_text()
    assert "denied: you sent Authorization: Bearer <secret>" in log  # the echo is logged, masked
    # once per remote when refusals start, not once per refused batch
    assert log.count("receiver rejects batches") == 2, log
    pair = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for leak in (TOKEN, PASSWORD, pair, base64.b64encode(TOKEN.encode()).decode()):
        assert leak not in log, leak
        assert not [k for k in text if leak in k], leak
