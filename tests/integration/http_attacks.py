"""Hostile HTTP clients for the endpoint's tests and bench/http_abuse.py: slow headers (slowloris), header
floods, connections reset mid-request, and a polling scraper that records what it got.

Loopback only; every loop is bounded by its caller's duration.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def _open(
    host: str, port: int, tls: ssl.SSLContext | None, source: str | None = None, timeout: float = 10.0
) -> socket.socket:
    s = socket.create_connection(
        (host, port), timeout=timeout, source_address=(source, 0) if source else None
    )
    if tls is not None:
        return tls.wrap_socket(s, server_hostname="localhost")
    return s


class Slowloris:
    """``n`` connections that send a request line, then one header byte per connection every
    ``interval`` seconds, never the blank line that ends the headers; each round reopens the ones the
    server closed (as slowloris.py does). Runs in its own thread until ``stop()``."""

    def __init__(
        self,
        host: str,
        port: int,
        n: int,
        interval: float = 2.0,
        tls: ssl.SSLContext | None = None,
        sources: tuple[str, ...] = (),
    ) -> None:
        self.host, self.port, self.n, self.interval, self.tls = host, port, n, interval, tls
        self.sources = sources
        self.opened = 0
        self.closed_by_server = 0
        self.open_failed = 0
        self._socks: list[socket.socket | None] = [None] * n
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def start(self) -> Slowloris:
        self._thread.start()
        return self

    def held(self) -> int:
        return sum(s is not None for s in self._socks)

    def _connect(self, i: int) -> None:
        src = self.sources[i % len(self.sources)] if self.sources else None
        try:
            s = _open(self.host, self.port, self.tls, src, timeout=5.0)
        except OSError:
            self.open_failed += 1
            return
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            s.settimeout(0.0)
        except OSError:
            self.open_failed += 1
            s.close()
            return
        self.opened += 1
        self._socks[i] = s

    def _poke(self, i: int) -> None:
        s = self._socks[i]
        assert s is not None
        try:
            with contextlib.suppress(BlockingIOError, ssl.SSLWantReadError):
                if s.recv(4096) == b"":
                    raise ConnectionResetError  # closed by the server
            s.send(b"X")  # one more byte of an endless header name
        except (BlockingIOError, ssl.SSLWantWriteError):
            pass  # its send buffer is full: still open, try again next round
        except (OSError, ssl.SSLError):
            self.closed_by_server += 1
            s.close()
            self._socks[i] = None

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            for i in range(self.n):
                if self._stop.is_set():
                    break
                if self._socks[i] is None:
                    self._connect(i)
                else:
                    self._poke(i)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for s in self._socks:
            if s is not None:
                s.close()


@dataclass
class ScrapeLog:
    """What a polling scraper got: (seconds taken, HTTP status or 0 for no answer) per scrape."""

    results: list[tuple[float, int]] = field(default_factory=list)

    def answered(self, within: float = float("inf")) -> int:
        return sum(1 for took, status in self.results if status == 200 and took <= within)


class Scraper:
    """GET /metrics every ``period`` seconds on a new connection, each with ``timeout``."""

    def __init__(
        self,
        host: str,
        port: int,
        period: float = 0.25,
        timeout: float = 5.0,
        tls: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.host, self.port, self.period, self.timeout, self.tls = host, port, period, timeout, tls
        self.headers = {}
        if auth is not None:
            self.headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        self.log = ScrapeLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def scrape_once(self) -> tuple[float, int]:
        t0 = time.monotonic()
        conn: http.client.HTTPConnection
        if self.tls is not None:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.tls)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", "/metrics", headers=self.headers)
            r = conn.getresponse()
            r.read()
            status = r.status
        except (OSError, http.client.HTTPException):
            status = 0
        finally:
            conn.close()
        return time.monotonic() - t0, status

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.log.results.append(self.scrape_once())
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t0)))

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def stop(self) -> ScrapeLog:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        return self.log


def header_flood(
    host: str, port: int, header_bytes: int, tls: ssl.SSLContext | None = None, line: int = 63000
) -> int:
    """One request whose headers total ``header_bytes`` (lines of ``line`` bytes: 6 MB is 96 lines, under
    the standard library's own limits of 100 lines of 64 KiB); the status the server answered (0: none,
    the connection was closed or reset while sending)."""
    try:
        s = _open(host, port, tls)
    except OSError:
        return 0
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        sent, k = 0, 0
        while sent < header_bytes:
            chunk = b"X-Fill-%d: " % k + b"a" * max(1, min(line, header_bytes - sent)) + b"\r\n"
            s.sendall(chunk)
            sent += len(chunk)
            k += 1
        s.sendall(b"\r\n")
    except OSError:
        pass
    try:
        answer = s.recv(64)
    except OSError:
        return 0
    finally:
        s.close()
    return int(answer[9:12]) if answer.startswith(b"HTTP/1.") and len(answer) >= 12 else 0


def reset_mid_request(host: str, port: int, tls: ssl.SSLContext | None = None, stage: int = 0) -> None:
    """A client that resets its connection (RST, not FIN): before its request ends (stage 0), right
    after sending it (1), or while the answer is being written (2)."""
    try:
        s = _open(host, port, tls)
    except OSError:
        return
    try:
        if stage == 0:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        else:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        if stage == 2:
            with contextlib.suppress(OSError):
                s.recv(1)
    except OSError:
        pass
    raw = s if not isinstance(s, ssl.SSLSocket) else socket.socket(fileno=s.detach())
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


# --- an agent to attack -----------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
SCRAPE_PASSWORD = "abuse-scrape-pw"  # a throwaway password for a loopback test

AGENT_CONFIG = """
agent: {{site: here, interval: 1s, timeout: 1s, state_dir: {state}{web}}}
sites:
  - {{id: here, name: Here, level: province}}
collectors:
  host: {{parts: [loadavg]}}
"""


@dataclass
class RunningAgent:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    tls: ssl.SSLContext | None
    auth: tuple[str, str] | None

    def scraper(self, period: float = 0.25, timeout: float = 5.0) -> Scraper:
        return Scraper("127.0.0.1", self.port, period, timeout, self.tls, self.auth)

    def metrics(self) -> dict[str, float]:
        """/metrics, parsed (tried again while the agent answers 503: its scrape limit is shared with
        a test's own scraper)."""
        from tests.helpers import parse_exposition

        headers = self.scraper().headers
        for _ in range(50):
            conn: http.client.HTTPConnection
            if self.tls is not None:
                conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.tls)
            else:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/metrics", headers=headers)
                r = conn.getresponse()
                body = r.read().decode()
                if r.status == 200:
                    return parse_exposition(body)
            finally:
                conn.close()
            time.sleep(0.2)
        raise AssertionError(f"/metrics answered {r.status}: {body[:200]}")


def web_config_from_example(dir: Path) -> tuple[Path, ssl.SSLContext]:
    """deploy/web-config.example.yml as shipped, with test certificates in place of its paths and a
    bcrypt-hashed scrape user; and a client TLS context that trusts the test CA."""
    import bcrypt

    from tests.pki import CA

    ca = CA(dir)
    server = ca.issue("server", "localhost", server=True)
    hashed = bcrypt.hashpw(SCRAPE_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    text = (ROOT / "deploy" / "web-config.example.yml").read_text()
    for old, new in (
        ("/etc/giamsat/tls/server.crt", str(server.cert)),
        ("/etc/giamsat/tls/server.key", str(server.key)),
        ("# prometheus: $2y$10$...   (replace with your hash)", f"prometheus: '{hashed}'"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    web = dir / "web.yml"
    web.write_text(text)
    ctx = ssl.create_default_context(cafile=str(ca.pair.cert))
    return web, ctx


@contextlib.contextmanager
def running_agent(
    dir: Path, tls: bool = False, extra_config: str = "", log_level: str = "info"
) -> Iterator[RunningAgent]:
    """`giamsat run` on a free loopback port (over TLS with basic auth from the shipped example web
    config when ``tls``), its stderr in ``dir/agent.log``; stopped on exit."""
    from tests.helpers import GIAMSAT, free_port, stop_process, wait_for

    ctx: ssl.SSLContext | None = None
    web = ""
    if tls:
        web_file, ctx = web_config_from_example(dir)
        web = f", web_config_file: {web_file}"
    (dir / "giamsat.yml").write_text(AGENT_CONFIG.format(state=dir / "state", web=web) + extra_config)
    port = free_port()
    argv = [GIAMSAT, "run", "--config.file", str(dir / "giamsat.yml"), "--web.listen-address"]
    argv += [f"127.0.0.1:{port}", "--log.level", log_level]
    log = dir / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=out)
    agent = RunningAgent(proc, port, log, ctx, ("prometheus", SCRAPE_PASSWORD) if tls else None)
    try:
        wait_for(lambda: agent.scraper().scrape_once()[1] == 200, 30, what="agent answering")
        yield agent
    finally:
        stop_process(proc)
