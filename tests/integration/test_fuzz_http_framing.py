"""Fuzzing HTTP request framing on a running agent (methods, headers, bodies sent as raw bytes): every
request gets a well-formed answer or a closed connection, never a 500 or a traceback in the log."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import GIAMSAT, free_port, http_get, stop_process, wait_for
from tests.integration.test_fuzz_http import CONFIG

ALLOWED = {200, 400, 401, 404, 405, 408, 413, 414, 431, 501, 503, 505}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    d = tmp_path_factory.mktemp("fuzz-framing")
    (d / "giamsat.yml").write_text(CONFIG.format(state=d / "state", closed=free_port()))
    port = free_port()
    log = d / "agent.log"
    argv = [
        GIAMSAT,
        "run",
        "--config.file",
        str(d / "giamsat.yml"),
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]
    with log.open("wb") as f:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=f)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, 30, what="agent ready")
        yield port, log
    finally:
        stop_process(proc)


methods = st.one_of(
    st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT"]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8),
)
paths = st.one_of(
    st.sampled_from(["/metrics", "/-/reload", "/-/ready", "/probe?target=x&module=host", "/", "*"]),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40).map(lambda s: "/" + s),
)
header_names = st.sampled_from(
    [
        "Content-Length",
        "Transfer-Encoding",
        "Authorization",
        "Accept-Encoding",
        "Accept",
        "Host",
        "Expect",
        "X-A",
    ]
)
header_values = st.one_of(
    st.sampled_from(
        ["abc", "-5", "0", "10", "99999999999999999999", "chunked", "gzip", "Basic %%%", "100-continue"]
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    head = f"{draw(methods)} {draw(paths)} {draw(st.sampled_from(['HTTP/1.1', 'HTTP/1.0', 'HTTP/9.9', '']))}"
    lines = [head] + [
        f"{k}: {v}" for k, v in draw(st.lists(st.tuples(header_names, header_values), max_size=5))
    ]
    body = draw(st.binary(max_size=64))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=requests())
@example(raw=b"POST /-/reload HTTP/1.1\r\nContent-Length: abc\r\n\r\n")
@example(raw=b"POST /-/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n")
@example(raw=b"POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
@example(raw=b"GET /metrics HTTP/1.1\r\nExpect: 100-continue\r\n\r\n")  # found by hypothesis
def test_request_framing_never_breaks_the_endpoint(agent: tuple[int, Path], raw: bytes) -> None:
    answer = exchange(agent[0], raw)
    statuses = [int(s) for s in re.findall(rb"^HTTP/1\.[01] (\d{3}) ", answer, flags=re.MULTILINE)]
    if statuses[:1] == [100]:
        # "Expect: 100-continue" on HTTP/1.1 gets the interim 100 (RFC 9110 15.2.1), then a final answer.
        assert b"100-continue" in raw.lower() and len(statuses) > 1, (raw, answer[:300])
        statuses = statuses[1:]
    for status in statuses:
        assert status in ALLOWED, (raw, answer[:300])
    assert b"Traceback" not in answer


def test_no_traceback_in_the_log(agent: tuple[int, Path]) -> None:
    text = agent[1].read_text(errors="replace")
    assert "Traceback" not in text and "Exception occurred" not in text
