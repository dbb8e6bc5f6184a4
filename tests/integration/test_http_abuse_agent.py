"""`giamsat run` under hostile HTTP clients, with real sockets: slow headers held past the header
deadline (plain, and over TLS with basic auth from the shipped example web config), header floods and
clients that reset. The figures (answers within 1 s, p99, RSS) are printed by bench/http_abuse.py; here
only behaviour is asserted: the scraper keeps getting answers and the log stays clean.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest

from tests.integration.http_attacks import Slowloris, header_flood, reset_mid_request, running_agent


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls-basic-auth"])
def test_a_scraper_is_answered_while_300_connections_trickle_their_headers(tmp_path: Path, tls: bool) -> None:
    """Guards slow headers taking /metrics offline: 300 connections that send a request line and then
    one header byte every 2 s (reopened when closed, as slowloris does), held past the 10 s header
    deadline; a scraper polling every 250 ms on new connections gets every answer."""
    with running_agent(tmp_path, tls=tls) as agent:
        attack = Slowloris("127.0.0.1", agent.port, 300, interval=2.0, tls=agent.tls).start()
        scraper = agent.scraper(period=0.25, timeout=10.0)
        try:
            time.sleep(3)  # the attack is in place
            scraper.start()
            time.sleep(12)  # past the header deadline: the first wave was cut and reopened
            # The agent holds as many of them as one address may (a quarter of 256), while answering.
            assert agent.metrics()["giamsat_http_connections"] >= 60
        finally:
            log = scraper.stop()
            attack.stop()
        statuses = [status for _, status in log.results]
        assert len(statuses) > 20 and set(statuses) == {200}, statuses
        m = agent.metrics()
        assert attack.closed_by_server > 0
        assert m["giamsat_http_connections_evicted_total"] + m["giamsat_http_header_timeouts_total"] > 0
    text = agent.log.read_text()
    assert "Traceback" not in text and "level=error" not in text, text[-3000:]


def test_header_floods_and_resets_leave_memory_and_the_log_alone(tmp_path: Path) -> None:
    """Guards the header flood (250 requests of 6 MB headers took RSS from 64 to 1471 MiB) and the
    traceback per reset client: every flood gets 431, the agent's log has no traceback."""
    from concurrent.futures import ThreadPoolExecutor

    with running_agent(tmp_path) as agent:
        with ThreadPoolExecutor(25) as pool:
            got = list(pool.map(lambda _: header_flood("127.0.0.1", agent.port, 6_000_000), range(100)))
        assert set(got) <= {431, 0} and got.count(431) > 50, got
        for i in range(60):
            reset_mid_request("127.0.0.1", agent.port, stage=i % 3)
        assert agent.scraper().scrape_once()[1] == 200
        m = agent.metrics()
        assert m["giamsat_http_requests_too_large_total"] == got.count(431)
    text = agent.log.read_text()
    assert "Traceback" not in text and "level=error" not in text, text[-3000:]


def test_tls_clients_that_vanish_leave_no_traceback(tmp_path: Path) -> None:
    """Over TLS: a client that closes before, during or after its handshake, sends plain HTTP to the TLS
    port, or resets while its answer is written. Each is an expected event: debug only."""
    with running_agent(tmp_path, tls=True) as agent:
        assert agent.tls is not None
        for i in range(30):
            kind = i % 5
            if kind == 0:  # TCP only, closed before any handshake
                socket.create_connection(("127.0.0.1", agent.port), timeout=5).close()
            elif kind == 1:  # plain HTTP on the TLS port
                with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    with contextlib.suppress(OSError):  # the agent gives up on the handshake
                        s.recv(100)
            else:  # a complete handshake, then a reset at stage 0, 1 or 2
                reset_mid_request("127.0.0.1", agent.port, tls=agent.tls, stage=kind - 2)
        assert agent.scraper().scrape_once()[1] == 200
    text = agent.log.read_text()
    assert "Traceback" not in text and "level=error" not in text, text[-3000:]
