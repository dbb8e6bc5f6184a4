"""Fuzzing /probe and /snmp query strings on a running agent: 200/400/404/414/503, never 500 or a traceback."""

from __future__ import annotations

import http.client
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import GIAMSAT, free_port, http_get, stop_process, wait_for

CONFIG = """
agent:
  site: here
  interval: 30s
  state_dir: {state}
sites:
  - id: here
    name: Here
    level: province
collectors:
  host: {{}}
targets:
  tcp:
    - {{name: t1, site: here, address: 127.0.0.1, port: {closed}}}
  icmp:
    - {{name: lo, site: here, address: 127.0.0.1, count: 1, packet_timeout: 1s}}
"""

ALLOWED = {200, 400, 404, 414, 503}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    d = tmp_path_factory.mktemp("fuzz-http")
    (d / "giamsat.yml").write_text(CONFIG.format(state=d / "state", closed=free_port()))
    port = free_port()
    log = d / "agent.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [
                GIAMSAT,
                "run",
                "--config.file",
                str(d / "giamsat.yml"),
                "--web.listen-address",
                f"127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=f,
        )
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, 30, what="agent ready")
        yield port, log
    finally:
        stop_process(proc)


def encode(part: str | bytes) -> str:
    if isinstance(part, bytes):  # arbitrary bytes, most of them not UTF-8
        return "".join(f"%{b:02x}" for b in part)
    return quote(part, safe="")


keys = st.one_of(st.sampled_from(["target", "module", "auth", "target[]", ""]), st.text(max_size=8))
values = st.one_of(
    st.text(max_size=40), st.binary(max_size=12), st.sampled_from(["host", "snmp", "x" * 3000])
)
raw_noise = st.sampled_from(["", "&", "&&", "=", "%", "%zz", "%f", "target", "target=%", ";", "+", "#x", "?"])


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(keys, values), max_size=4))
    parts = [f"{encode(k)}={encode(v)}" for k, v in pairs]
    parts.insert(draw(st.integers(0, len(parts))), draw(raw_noise))
    return "&".join(parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/probe", "/snmp"]), query=query_strings())
@example(path="/probe", query="target=%ff%fe&module=host")
@example(path="/snmp", query="target=" + "a" * 5000)
@example(path="/probe", query="target=here&module=host")
@example(path="/probe", query="target=t1&module=tcp")  # a configured target: 200 with its result
@example(path="/probe", query="module=icmp&target=lo&target=t1&module=tcp")
def test_query_strings_never_break_the_endpoint(agent: tuple[int, Path], path: str, query: str) -> None:
    port, _ = agent
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"{path}?{query}")
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status in ALLOWED, (r.status, body[:300])
    assert b"Traceback" not in body


def test_the_fuzzed_agent_does_serve_configured_targets(agent: tuple[int, Path]) -> None:
    """The 200 path is reachable, so the fuzzing above covers rendering a real result too."""
    wait_for(lambda: http_get(f"http://127.0.0.1:{agent[0]}/probe?target=t1&module=tcp")[0] == 200, 20)
    status, body, _ = http_get(f"http://127.0.0.1:{agent[0]}/probe?target=t1&module=tcp")
    assert status == 200 and 'reason="connection_refused"' in body  # nothing listens on that port


def test_no_traceback_in_the_log(agent: tuple[int, Path]) -> None:
    # Runs after the fuzzing above (same module, file order).
    text = agent[1].read_text(errors="replace")
    assert "Traceback" not in text
    assert "error serving request" not in text
