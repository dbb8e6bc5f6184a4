"""TCP and HTTP(S) probes against real servers on loopback (Python socket, http.server and TLS servers)."""

from __future__ import annotations

import datetime
import http.server
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporters.exposition import render_text
from tests.integration.probes_support import free_port, make_cert, run, run_config, value, write_config

EXPIRY = datetime.datetime(2031, 7, 4, 12, 30, 0, tzinfo=datetime.UTC)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that connects and never speaks only holds its own thread, briefly

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(
        self, code: int, body: bytes, headers: dict[str, str] | None = None, chunked: bool = False
    ) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 5):
                part = body[i : i + 5]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ok":
            self._send(200, b"Cong thong tin dien tu: OK", {"Last-Modified": "Wed, 21 Oct 2026 07:28:00 GMT"})
        elif self.path == "/chunked":
            self._send(200, b"chunked body for the probe", chunked=True)
        elif self.path == "/redirect":
            self._send(302, b"", {"Location": "/ok"})
        elif self.path == "/loop":
            self._send(302, b"", {"Location": "/loop"})
        elif self.path == "/error":
            self._send(503, b"maintenance")
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self._send(201, b"got " + self.rfile.read(length))


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"), EXPIRY)


@pytest.fixture(scope="module")
def https_server(tls_files: tuple[Path, Path]) -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    # Handshake on first read, in the connection's thread: a client that connects and leaves before its
    # ClientHello must not block serve_forever (and shutdown) in accept().
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def banner_server() -> Iterator[tuple[int, int]]:
    """Port 1 sends an SSH-like banner; port 2 accepts and stays silent."""
    talk = socket.create_server(("127.0.0.1", 0))
    mute = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve(srv: socket.socket, banner: bytes) -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if banner:
                conn.sendall(banner)
                conn.close()
            else:
                held.append(conn)

    threads = [
        threading.Thread(target=serve, args=(talk, b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n"), daemon=True),
        threading.Thread(target=serve, args=(mute, b""), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        yield talk.getsockname()[1], mute.getsockname()[1]
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in (talk, mute, *held):
            s.close()


def test_tcp_connect_expect_refused_and_silent(banner_server: tuple[int, int], tmp_path: Path) -> None:
    talk, mute = banner_server
    cfg = write_config(
        tmp_path,
        {
            "tcp": [
                {"name": "ssh", "address": "127.0.0.1", "port": talk, "expect": "^SSH-2\\.0-"},
                {"name": "wrong", "address": "127.0.0.1", "port": talk, "expect": "^220 "},
                {"name": "closed", "address": "127.0.0.1", "port": free_port()},
                {"name": "silent", "address": "127.0.0.1", "port": mute, "expect": "^SSH", "timeout": "1s"},
                {"name": "connect", "address": "127.0.0.1", "port": mute},
            ]
        },
    )
    res = run(run_config(cfg))
    assert all(r.success for r in res.values())  # down targets are data, never collector failures
    assert value(res["ssh"].families, "probe_success") == 1
    assert value(res["ssh"].families, "probe_failed_due_to_regex") == 0
    assert value(res["wrong"].families, "probe_failure_reason", reason="expect_mismatch") == 1
    assert value(res["wrong"].families, "probe_failed_due_to_regex") == 1
    assert value(res["closed"].families, "probe_failure_reason", reason="connection_refused") == 1
    assert value(res["silent"].families, "probe_failure_reason", reason="timeout") == 1
    assert value(res["connect"].families, "probe_success") == 1


def test_tcp_tls_reports_expiry_and_version(
    https_server: int, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, _ = tls_files
    cfg = write_config(
        tmp_path,
        {
            "tcp": [
                {
                    "name": "tls",
                    "address": "127.0.0.1",
                    "port": https_server,
                    "tls": True,
                    "tls_config": {"ca_file": str(cert), "server_name": "localhost"},
                },
                {"name": "untrusted", "address": "127.0.0.1", "port": https_server, "tls": True},
            ]
        },
    )
    res = run(run_config(cfg))
    fams = res["tls"].families
    assert value(fams, "probe_success") == 1
    assert value(fams, "probe_ssl_earliest_cert_expiry") == EXPIRY.timestamp()
    assert value(fams, "probe_tls_version_info", version="TLS 1.3") == 1
    assert value(res["untrusted"].families, "probe_failure_reason", reason="tls_verify") == 1


def test_http_status_body_redirects_and_phases(http_server: int, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{http_server}"
    cfg = write_config(
        tmp_path,
        {
            "http": [
                {"name": "ok", "url": f"{base}/ok", "fail_if_body_not_matches_regexp": ["thong tin"]},
                {"name": "redirect", "url": f"{base}/redirect"},
                {
                    "name": "noredirect",
                    "url": f"{base}/redirect",
                    "follow_redirects": False,
                    "valid_status_codes": [302],
                },
                {"name": "loop", "url": f"{base}/loop", "max_redirects": 3},
                {"name": "missing", "url": f"{base}/nope"},
                {"name": "maint", "url": f"{base}/error"},
                {"name": "bodybad", "url": f"{base}/ok", "fail_if_body_matches_regexp": ["OK$"]},
                {
                    "name": "chunked",
                    "url": f"{base}/chunked",
                    "fail_if_body_not_matches_regexp": ["for the probe"],
                },
                {
                    "name": "post",
                    "url": f"{base}/submit",
                    "method": "POST",
                    "body": "x=1",
                    "valid_status_codes": [201],
                    "fail_if_body_not_matches_regexp": ["^got x=1$"],
                },
                {"name": "refused", "url": f"http://127.0.0.1:{free_port()}/"},
            ]
        },
    )
    res = run(run_config(cfg))
    ok = res["ok"].families
    assert value(ok, "probe_success") == 1
    assert value(ok, "probe_http_status_code") == 200
    assert value(ok, "probe_http_version") == 1.1
    assert value(ok, "probe_http_content_length") == len(b"Cong thong tin dien tu: OK")
    assert (
        value(ok, "probe_http_last_modified_timestamp_seconds")
        == datetime.datetime(2026, 10, 21, 7, 28, tzinfo=datetime.UTC).timestamp()
    )
    for phase in ("connect", "processing"):
        v = value(ok, "probe_http_duration_seconds", phase=phase)
        assert v is not None and v > 0
    assert value(ok, "probe_http_duration_seconds", phase="tls") == 0
    assert value(ok, "probe_http_ssl") == 0
    assert value(res["redirect"].families, "probe_http_redirects") == 1
    assert value(res["redirect"].families, "probe_http_status_code") == 200
    assert value(res["noredirect"].families, "probe_success") == 1
    assert value(res["noredirect"].families, "probe_http_status_code") == 302
    assert value(res["loop"].families, "probe_failure_reason", reason="too_many_redirects") == 1
    assert value(res["missing"].families, "probe_failure_reason", reason="status_code") == 1
    assert value(res["missing"].families, "probe_http_status_code") == 404
    assert value(res["maint"].families, "probe_http_status_code") == 503
    assert value(res["bodybad"].families, "probe_failed_due_to_regex") == 1
    assert value(res["bodybad"].families, "probe_failure_reason", reason="body_regex") == 1
    assert value(res["chunked"].families, "probe_success") == 1
    assert value(res["chunked"].families, "probe_http_uncompressed_body_length") == len(
        b"chunked body for the probe"
    )
    assert value(res["post"].families, "probe_success") == 1
    assert value(res["refused"].families, "probe_failure_reason", reason="connection_refused") == 1


def test_https_self_signed_gives_the_right_expiry(
    https_server: int, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, _ = tls_files
    url = f"https://localhost:{https_server}/ok"
    cfg = write_config(
        tmp_path,
        {
            "http": [
                {
                    "name": "trusted",
                    "url": url,
                    "ip_protocol": "ip4",
                    "tls_config": {"ca_file": str(cert)},
                    "fail_if_not_ssl": True,
                },
                {
                    "name": "insecure",
                    "url": url,
                    "ip_protocol": "ip4",
                    "tls_config": {"insecure_skip_verify": True},
                },
                {"name": "untrusted", "url": url, "ip_protocol": "ip4"},
            ]
        },
    )
    res = run(run_config(cfg))
    for name in ("trusted", "insecure"):
        fams = res[name].families
        assert value(fams, "probe_success") == 1, name
        assert value(fams, "probe_ssl_earliest_cert_expiry") == EXPIRY.timestamp()
        assert value(fams, "probe_http_ssl") == 1
        tls = value(fams, "probe_http_duration_seconds", phase="tls")
        assert tls is not None and tls > 0
        assert value(fams, "probe_tls_version_info", version="TLS 1.3") == 1
    assert value(res["untrusted"].families, "probe_success") == 0
    assert value(res["untrusted"].families, "probe_failure_reason", reason="tls_verify") == 1
    # the TLS metrics and the failure reasons as the exporter renders them are promtool-clean
    body, conflicts = render_text(list(res.values()), [], 256)
    assert conflicts == 0
    assert b"probe_ssl_earliest_cert_expiry{" in body and b"probe_failure_reason{" in body
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert (lint.stdout + lint.stderr).strip() == b""
