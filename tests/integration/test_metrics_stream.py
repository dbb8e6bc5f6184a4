"""/metrics streamed over real HTTP: the same bytes as the joined answer, whatever the client asks for."""

from __future__ import annotations

import gzip
import http.client
import socket
import time

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.kernel.results import JobResult
from exporters.exposition import render_openmetrics, render_text
from tests.integration.static_agent import StaticAgent, serve

OM_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def big_agent() -> StaticAgent:
    """~1.5 MB of answer: several of the endpoint's slices."""
    results = []
    for i in range(2000):
        fams: list[Metric] = []
        for name in ("probe_success", "probe_duration_seconds", "probe_icmp_rtt_seconds"):
            g = GaugeMetricFamily(name, f"help {name}", labels=["phase"])
            for phase in ("resolve", "setup", "rtt", "total"):
                g.add_metric([phase], i / 7)
            fams.append(g)
        results.append(JobResult(f"icmp/t{i}", "icmp", f"t{i}", "tinh", tuple(fams), time.time(), 0.01, True))
    return StaticAgent(results)


def expected(agent: StaticAgent, openmetrics: bool) -> bytes:
    """The answer as joined: the store's results, no own metrics (connection figures change per request)."""
    render = render_openmetrics if openmetrics else render_text
    return render(agent.store.snapshot(), [], 256)[0]


def results_part(body: bytes) -> bytes:
    """The answer without the endpoint's own ``giamsat_http_*`` families, which come first."""
    at = body.index(b"# HELP probe_")
    return body[at:]


def test_plain_answer_has_its_length_and_the_joined_bytes() -> None:
    agent = big_agent()
    with serve(agent) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200
        assert r.getheader("Transfer-Encoding") is None
        assert int(r.getheader("Content-Length") or -1) == len(body) > 1_000_000
        assert results_part(body) == results_part(expected(agent, False))
        conn.close()


def test_gzip_answer_is_chunked_on_http_1_1_and_the_connection_stays_usable() -> None:
    agent = big_agent()
    with serve(agent) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        for _ in range(2):  # the chunked answer ends where it should: the next request is answered
            conn.request("GET", "/metrics", headers={"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"})
            r = conn.getresponse()
            raw = r.read()
            assert r.status == 200
            assert r.getheader("Content-Encoding") == "gzip"
            assert r.getheader("Transfer-Encoding") == "chunked"
            assert r.getheader("Content-Length") is None
            assert r.getheader("Content-Type", "").startswith("application/openmetrics-text")
            body = gzip.decompress(raw)
            assert len(raw) < len(body) / 5
            assert results_part(body) == results_part(expected(agent, True))
        conn.close()


def raw_exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while data := s.recv(1 << 16):
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return head, body


def test_gzip_answer_to_http_1_0_and_head_carry_a_content_length() -> None:
    agent = big_agent()
    with serve(agent) as server:
        port = server.server_address[1]
        head, body = raw_exchange(port, b"GET /metrics HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
        assert b"\r\nContent-Encoding: gzip" in head and b"chunked" not in head
        assert f"\r\nContent-Length: {len(body)}\r\n".encode() in head
        assert results_part(gzip.decompress(body)) == results_part(expected(agent, False))
        head, body = raw_exchange(
            port, b"HEAD /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )
        assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nContent-Length: " in head
        assert b"chunked" not in head and body == b""
