"""The HTTP endpoint under hostile or odd clients: idle connection floods, descriptor exhaustion, slow
request lines, odd Content-Length values, a reloaded scrape limit, and OpenMetrics for real Prometheus.

Most tests run the endpoint's real server in-process over a fixed agent view (tests/integration/
static_agent.py); the flood and the open-files limit are checked on `giamsat run` as an operator runs it.
"""

from __future__ import annotations

import http.client
import logging
import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    GIAMSAT,
    CountingListener,
    free_port,
    http_get,
    parse_exposition,
    stop_process,
    wait_for,
)
from tests.integration.http_attacks import header_flood, reset_mid_request
from tests.integration.static_agent import StaticAgent, serve
from tests.prom import prometheus, query
from tests.unit.test_exposition import gauge, mixed_results

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)  # what Prometheus 2.42 sends on every scrape


def url(server: object) -> str:
    port = server.server_address[1]  # type: ignore[attr-defined]
    return f"http://127.0.0.1:{port}"


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def closed_by_server(s: socket.socket) -> bool:
    """True when the server closed the connection (EOF or reset) before the 10 s socket timeout."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def read_to_end(s: socket.socket) -> bytes:
    """Everything until the server closes the connection (fails on the 10 s socket timeout)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def scrape_in_thread(base: str, out: list[int]) -> threading.Thread:
    t = threading.Thread(target=lambda: out.append(http_get(base + "/metrics", timeout=30)[0]), daemon=True)
    t.start()
    return t


# --- connection cap -------------------------------------------------------------------------------------
def test_idle_connections_make_room_for_a_scrape_and_stay_capped() -> None:
    """Guards the idle-connection flood: connections beyond the cap cost no thread; the oldest idle ones
    are closed to make room, so a scraper still gets in while the flood goes on."""
    agent = StaticAgent(own=[gauge("giamsat_sites", 2)])
    with serve(agent, max_connections=8) as server:
        port = server.server_address[1]
        flood = [connect(port) for _ in range(60)]
        try:
            wait_for(lambda: server.connections_evicted_total >= 52, 10, what="idle connections evicted")
            assert server._live <= 8
            status, body, _ = http_get(url(server) + "/metrics")
            assert status == 200
            m = parse_exposition(body)
            assert m["giamsat_http_connections_evicted_total"] >= 53
            assert m["giamsat_http_connections_limit"] == 8
            assert m["giamsat_http_connections_rejected_total"] == 0
            # The oldest were closed; the newest still wait for their request line.
            assert closed_by_server(flood[0])
        finally:
            for s in flood:
                s.close()


def test_when_every_slot_serves_a_request_a_new_connection_is_closed_at_once() -> None:
    agent = StaticAgent()
    agent.hold.set()
    with serve(agent, max_connections=2) as server:
        statuses: list[int] = []
        threads = [scrape_in_thread(url(server), statuses) for _ in range(2)]
        for _ in range(2):
            assert agent.held.acquire(timeout=10)  # both slots busy in a scrape
        extra = connect(server.server_address[1])
        try:
            assert closed_by_server(extra)
        finally:
            extra.close()
        assert server.connections_rejected_total == 1
        agent.hold.clear()
        agent.release.set()
        for t in threads:
            t.join(10)
        assert statuses == [200, 200]
        assert http_get(url(server) + "/metrics")[0] == 200  # the slots were given back


def test_a_connection_has_a_short_time_to_start_a_request_and_to_finish_its_headers() -> None:
    """An idle connection is closed after the idle timeout; a request line and headers sent one byte at
    a time are cut at the header deadline (however steady the trickle), while a request that completes
    in time is served and its connection kept alive until the idle timeout."""
    with serve(StaticAgent()) as server:
        server.idle_timeout = 0.5
        server.header_timeout = 1.0
        port = server.server_address[1]
        idle = connect(port)
        slow = connect(port)
        ok = None
        try:
            slow.sendall(b"GET /-/healthy HTTP/1.1\r\n")
            assert closed_by_server(idle)
            slow.settimeout(0.2)
            closed = False
            for _ in range(100):  # 20 s of one byte every 0.2 s, far past the 1 s deadline
                try:
                    slow.sendall(b"X")
                    closed = slow.recv(100) == b""
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                if closed:
                    break
            assert closed
            assert server.header_timeouts_total == 1
            ok = connect(port)
            ok.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"Healthy\n") and (chunk := ok.recv(1000)):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
            assert closed_by_server(ok)  # kept alive, then idle: closed after the idle timeout
        finally:
            for s in (idle, slow, ok):
                if s is not None:
                    s.close()


def test_connections_stuck_in_their_headers_make_room_for_a_scrape() -> None:
    """Guards slow headers taking /metrics offline: connections that sent a request line and trickle
    their headers are evicted, oldest first, when the slots run out, so a scraper still gets in."""
    agent = StaticAgent(own=[gauge("giamsat_sites", 2)])
    with serve(agent, max_connections=16) as server:
        port = server.server_address[1]
        stuck = []
        try:
            for i in range(40):
                s = socket.create_connection(("127.0.0.1", port), source_address=(f"127.0.0.{2 + i % 4}", 0))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                stuck.append(s)
            wait_for(lambda: server.connections_evicted_total >= 24, 10, what="connections evicted")
            for _ in range(5):
                status, body, _ = http_get(url(server) + "/metrics")
                assert status == 200
            assert parse_exposition(body)["giamsat_sites"] == 2
            assert server.connections_rejected_total == 0
            assert closed_by_server(stuck[0])  # the oldest went first
        finally:
            for s in stuck:
                s.close()


def test_a_request_whose_headers_end_in_a_close_is_not_served() -> None:
    """End of file is not the blank line that ends the headers: a client that sent part of its headers
    and closed (or was evicted) gets no answer, and nothing is rendered for it."""
    agent = StaticAgent()
    with serve(agent) as server:
        for partial in (
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: abc",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
        ):
            s = connect(server.server_address[1])
            try:
                s.sendall(partial)
                s.shutdown(socket.SHUT_WR)
                assert read_to_end(s) == b""
            finally:
                s.close()
        assert agent.scrapes == []
        assert http_get(url(server) + "/metrics")[0] == 200


def test_one_address_holds_at_most_a_quarter_of_the_slots() -> None:
    """Beyond its share an address makes room among its own waiting connections, and when all of its
    share is busy its new connections are refused, while other addresses are still served."""
    agent = StaticAgent()
    with serve(agent, max_connections=16, max_concurrent=16) as server:
        port = server.server_address[1]
        assert server.max_per_address == 4
        mine = [
            socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0)) for _ in range(10)
        ]
        try:
            wait_for(lambda: server.connections_evicted_total >= 6, 10, what="own connections evicted")
            assert server._per_address["127.0.0.2"] == 4
            assert server.connections_evicted_total == 6
        finally:
            for s in mine:
                s.close()
        wait_for(lambda: "127.0.0.2" not in server._per_address, 10, what="connections gone")
        agent.hold.set()
        busy = []
        for _ in range(4):  # four scrapes from one address, held in the middle of their answer
            s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            busy.append(s)
        for _ in range(4):
            assert agent.held.acquire(timeout=10)
        agent.hold.clear()
        extra = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0))
        try:
            assert closed_by_server(extra)
            assert server.connections_rejected_total == 1
            assert http_get(url(server) + "/-/healthy")[0] == 200  # from 127.0.0.1
        finally:
            extra.close()
            agent.release.set()
            for s in busy:
                s.close()


def test_oversized_headers_get_431_and_bodies_413(capfd: pytest.CaptureFixture[str]) -> None:
    """Guards the header flood (the standard library alone accepts 100 lines of 64 KiB): the request
    line and headers together get 16 KiB, a body 64 KiB and only on POST."""
    with serve(StaticAgent()) as server:
        port = server.server_address[1]
        assert header_flood("127.0.0.1", port, 6_000_000) == 431
        assert header_flood("127.0.0.1", port, 20_000, line=200) == 431  # many short lines, too
        assert header_flood("127.0.0.1", port, 12_000, line=200) == 200
        long_line = connect(port)
        try:
            long_line.sendall(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")
            assert read_to_end(long_line).startswith(b"HTTP/1.1 431")
        finally:
            long_line.close()
        for request in (
            b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789",
        ):
            s = connect(port)
            try:
                s.sendall(request)
                answer = read_to_end(s)
                assert answer.startswith(b"HTTP/1.1 413") and answer.count(b"HTTP/1.1") == 1, answer
            finally:
                s.close()
        s = connect(port)
        try:
            s.sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            assert s.recv(100).startswith(b"HTTP/1.1 200")
        finally:
            s.close()
        assert server.requests_too_large_total == 5
        body = http_get(url(server) + "/metrics")[1]
        assert parse_exposition(body)["giamsat_http_requests_too_large_total"] == 5
    assert "Traceback" not in capfd.readouterr().err


def test_clients_that_reset_leave_no_traceback(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Guards the ~24-line traceback a reset client printed on stderr: expected network errors are one
    debug line each."""
    agent = StaticAgent(own=[gauge(f"giamsat_big_{i}", i) for i in range(20000)])  # an answer of ~500 KiB
    with caplog.at_level("DEBUG", logger="giamsat.web"), serve(agent) as server:
        port = server.server_address[1]
        for i in range(30):
            reset_mid_request("127.0.0.1", port, stage=i % 3)
        assert http_get(url(server) + "/-/healthy")[0] == 200
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG or r.exc_info]


def test_server_close_closes_idle_connections_at_once() -> None:
    agent = StaticAgent()
    server_cm = serve(agent)
    server = server_cm.__enter__()
    kept = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        kept.request("GET", "/-/healthy")
        kept.getresponse().read()
        sock = kept.sock
        assert sock is not None
        server_cm.__exit__(None, None, None)  # shutdown + server_close
        assert closed_by_server(sock)
        assert server._live == 0
    finally:
        kept.close()


ACCEPT_UNDER_EMFILE = textwrap.dedent(
    """
    import os, resource, sys, time
    sys.path.insert(0, sys.argv[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    from tests.integration.static_agent import StaticAgent, serve
    with serve(StaticAgent()) as server:
        fds = []
        try:
            while True:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        print(server.server_address[1], flush=True)  # only now: a connection before would get in
        sys.stdin.readline()  # the test has connected: a connection waits in the backlog
        time.sleep(2)
        print(server.accept_errors_total, flush=True)
        for fd in fds:
            os.close(fd)
        sys.stdin.readline()
    """
)


def test_accept_backs_off_when_the_process_is_out_of_descriptors() -> None:
    """Guards the EMFILE busy loop: accept() failing for lack of descriptors is retried after a pause
    (at most ~20 tries in 2 s; without it, tens of thousands), and connections are served again once
    descriptors are free."""
    with subprocess.Popen(
        [sys.executable, "-c", ACCEPT_UNDER_EMFILE, str(Path(__file__).resolve().parents[2])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as p:
        _talk_to_emfile_server(p)


def _talk_to_emfile_server(p: subprocess.Popen[str]) -> None:
    try:
        assert p.stdin is not None and p.stdout is not None
        port = int(p.stdout.readline())
        waiting = socket.create_connection(("127.0.0.1", port), timeout=30)
        p.stdin.write("connected\n")
        p.stdin.flush()
        errors = int(p.stdout.readline())
        assert 1 <= errors <= 40
        waiting.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert waiting.recv(100).startswith(b"HTTP/1.1 200")
        waiting.close()
        p.stdin.write("done\n")
        p.stdin.flush()
        assert p.wait(30) == 0
    finally:
        stop_process(p)


# --- request framing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [b"\xb2", b"1\xb3", b"\xb9\xb2", b"+5", b" -1", b"0x10"])
def test_odd_content_length_gets_400_not_a_dropped_connection(
    value: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    """Header bytes are read as Latin-1, where b"\\xb2" is '²': '²'.isdigit() is True but int('²')
    raises, and the connection used to be dropped with a traceback on stderr."""
    with serve(StaticAgent()) as server:
        s = connect(server.server_address[1])
        try:
            s.sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\nab")
            answer = read_to_end(s)  # and closed: the unread body must not be parsed as a next request
            assert answer.startswith(b"HTTP/1.1 400") and answer.count(b"HTTP/1.1") == 1, answer
        finally:
            s.close()
    assert "Traceback" not in capfd.readouterr().err


# --- scrape limit --------------------------------------------------------------------------------------
def test_a_new_scrape_limit_applies_without_restart() -> None:
    """Guards reloading agent.max_concurrent_scrapes (the lifecycle calls set_scrape_limit on reload);
    a scrape still running on the old limit finishes and gives its slot back without error."""
    agent = StaticAgent()
    agent.hold.set()
    with serve(agent, max_concurrent=1) as server:
        base = url(server)
        first: list[int] = []
        t1 = scrape_in_thread(base, first)
        assert agent.held.acquire(timeout=10)
        agent.hold.clear()
        assert http_get(base + "/metrics")[0] == 503  # limit 1, one running
        server.set_scrape_limit(2)
        assert http_get(base + "/metrics")[0] == 200  # runs beside the held one
        agent.release.set()
        t1.join(10)
        assert first == [200]
        assert [rejected for rejected, _ in agent.scrapes] == [True, False, False]
        agent.release.clear()
        agent.hold.set()
        held: list[int] = []
        threads = [scrape_in_thread(base, held) for _ in range(2)]
        for _ in range(2):
            assert agent.held.acquire(timeout=10)  # two at once under the new limit
        agent.hold.clear()
        assert http_get(base + "/metrics")[0] == 503  # and not three
        agent.release.set()
        for t in threads:
            t.join(10)
        assert held == [200, 200]


# --- OpenMetrics ---------------------------------------------------------------------------------------
def test_openmetrics_scrapes_count_conflicts_like_text_scrapes() -> None:
    results, own = mixed_results()
    agent = StaticAgent(results, own)
    with serve(agent) as server:
        status, om, headers = http_get(url(server) + "/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
        assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
        assert om.endswith("# EOF\n")
        status, _, headers = http_get(url(server) + "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert agent.scrapes == [(False, 3), (False, 3)]


def test_real_prometheus_stores_what_the_text_format_says(tmp_path: Path) -> None:
    """Prometheus 2.42 asks for OpenMetrics: it must accept the answer (up 1) and store exactly the
    series the text format carries, for counter, gauge, histogram, info, summary, stateset and unknown
    families."""
    results, own = mixed_results()
    results = [
        type(r)(r.job_id, r.kind, r.target, r.site, r.families, time.time(), 0.01, True, interval=3600)
        for r in results
    ]
    agent = StaticAgent(results, own)
    with serve(agent) as server:
        port = server.server_address[1]
        text = http_get(url(server) + "/metrics")[1]
        expected = {k: v for k, v in parse_exposition(text).items() if not k.startswith("giamsat_http_")}
        config = f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: giamsat
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
"""
        with prometheus(tmp_path / "prom", config) as prom:
            wait_for(
                lambda: query(prom, 'up{job="giamsat"} == 1') and query(prom, "probe_success"),
                30,
                what="a successful scrape",
            )
            stored = {}
            for s in query(prom, '{job="giamsat",__name__!~"giamsat_http_.*|up|scrape_.*"}'):
                labels = {k: v for k, v in s["metric"].items() if k not in ("job", "instance")}
                name = labels.pop("__name__")
                stored[(name, tuple(sorted(labels.items())))] = float(s["value"][1])
    want = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith("giamsat_http_"):
            continue
        key = line.rpartition(" ")[0]
        name, _, rest = key.partition("{")
        labels = parse_labels(rest[:-1]) if rest else {}
        want[(name, tuple(sorted(labels.items())))] = expected[key]
    assert stored.keys() == want.keys()
    for k, v in want.items():
        assert stored[k] == v or (math.isnan(v) and math.isnan(stored[k])), k
    assert any(rejected is False for rejected, _ in agent.scrapes)


def parse_labels(body: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(body):
        eq = body.index("=", i)
        name = body[i:eq]
        j = eq + 2
        value = []
        while body[j] != '"':
            if body[j] == "\\":
                value.append({"n": "\n", "\\": "\\", '"': '"'}[body[j + 1]])
                j += 2
            else:
                value.append(body[j])
                j += 1
        out[name] = "".join(value)
        i = j + 2  # past the quote and the comma
    return out


# --- as an operator runs it -------------------------------------------------------------------------------
AGENT_CONFIG = """
agent: {{site: tinh, interval: 1s, timeout: 1s, state_dir: {state}}}
sites:
  - {{id: tinh, name: "Tinh", level: province, uplinks: [wan]}}
collectors:
  host: {{enabled: false}}
targets:
  tcp:
    - {{name: wan, site: tinh, address: 127.0.0.1, port: {port}}}
"""


@pytest.fixture
def limited_agent(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, CountingListener]]:
    """`giamsat run` under an open-files limit of 1024 it cannot raise (soft = hard), probing a local
    TCP target every second."""
    target = CountingListener(backlog=100)
    (tmp_path / "giamsat.yml").write_text(AGENT_CONFIG.format(state=tmp_path / "state", port=target.port))
    port = free_port()
    argv = [
        "prlimit",
        "--nofile=1024:1024",
        "--",
        GIAMSAT,
        "run",
        "--config.file",
        str(tmp_path / "giamsat.yml"),
    ]
    argv += ["--web.listen-address", f"127.0.0.1:{port}"]
    with (tmp_path / "agent.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_get(base + "/-/ready")[0] == 200, 30, what="agent ready")
        yield proc, base, target
    finally:
        stop_process(proc)
        target.close()


def test_a_flood_of_idle_connections_starves_neither_scrapes_nor_probes(
    limited_agent: tuple[subprocess.Popen[bytes], str, CountingListener],
) -> None:
    """Guards the flood found by review: 1100 idle connections under a 1024 descriptor limit used to
    take every descriptor (one thread each), so accept() spun on EMFILE, scrapes timed out and TCP
    probes failed for lack of a socket."""
    proc, base, target = limited_agent
    port = int(base.rsplit(":", 1)[1])
    flood = []
    try:
        for _ in range(1100):
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        threads = len(os.listdir(f"/proc/{proc.pid}/task"))
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert threads < 200 and fds < 300, (threads, fds)  # cap 128 (1024 / 8)
        before = target.accepted
        wait_for(lambda: target.accepted >= before + 2, 15, what="TCP probes during the flood")
        status, body, _ = http_get(base + "/metrics", timeout=10)
        assert status == 200
        m = parse_exposition(body)
        assert m['probe_success{probe="tcp",site="tinh",target="wan"}'] == 1
        assert m['giamsat_collector_success{collector="tcp",site="tinh",target="wan"}'] == 1
        assert m["giamsat_http_connections_evicted_total"] > 900
        assert m["giamsat_http_connections_limit"] == 128
    finally:
        for s in flood:
            s.close()


def test_the_agent_raises_its_open_files_soft_limit_to_the_hard_one(tmp_path: Path) -> None:
    (tmp_path / "giamsat.yml").write_text(AGENT_CONFIG.format(state=tmp_path / "state", port=free_port()))
    port = free_port()
    argv = [
        "prlimit",
        "--nofile=1024:4096",
        "--",
        GIAMSAT,
        "run",
        "--config.file",
        str(tmp_path / "giamsat.yml"),
    ]
    argv += ["--web.listen-address", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, 30, what="agent ready")
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        line = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
        assert line.split()[3:5] == ["4096", "4096"], line
    finally:
        stop_process(proc)
