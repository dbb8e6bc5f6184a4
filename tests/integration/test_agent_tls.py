"""The agent's own endpoint with a web config: TLS, client certificates and basic auth, scraped by a real
Prometheus with its tls_config and basic_auth, and swapped on reload."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from tests.helpers import GIAMSAT, free_port, stop_process, wait_for
from tests.integration.test_web_tls import PKI, client_ctx, get, refused
from tests.integration.test_web_tls import pki as pki
from tests.prom import prometheus, query
from tests.unit.test_webconfig import basic

PASSWORD = "agent-scrape-pw"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()

CONFIG = """
agent:
  site: here
  interval: 1s
  timeout: 1s
  state_dir: {state}
  web_config_file: web.yml
sites:
  - id: here
    name: Here
    level: province
collectors:
  host:
    parts: [loadavg]
"""


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    port: int
    dir: Path


def web_yml(pki: PKI, users: str) -> str:
    return (
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca.pair.cert}\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        f"basic_auth_users:\n{users}"
    )


@pytest.fixture
def agent(pki: PKI, tmp_path: Path) -> Iterator[Agent]:
    (tmp_path / "giamsat.yml").write_text(CONFIG.format(state=tmp_path / "state"))
    (tmp_path / "web.yml").write_text(web_yml(pki, f"  prometheus: '{HASH}'\n"))
    port = free_port()
    argv = [
        GIAMSAT,
        "run",
        "--config.file",
        str(tmp_path / "giamsat.yml"),
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]
    with (tmp_path / "agent.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        ctx = client_ctx(pki, pki.client)
        wait_for(
            lambda: b"node_load1" in get(port, ctx, basic("prometheus", PASSWORD))[2],
            30,
            what="agent over TLS",
        )
        yield Agent(proc, port, tmp_path)
    finally:
        stop_process(proc)


def test_agent_serves_tls_with_client_certs_and_basic_auth(pki: PKI, agent: Agent) -> None:
    good = client_ctx(pki, pki.client)
    status, headers, body = get(agent.port, good, basic("prometheus", PASSWORD))
    assert status == 200 and b"node_load1" in body
    assert headers["X-Frame-Options"] == "deny"
    for auth in (None, basic("prometheus", "wrong"), basic("nobody", PASSWORD)):
        status, headers, body = get(agent.port, good, auth)
        assert (status, headers["WWW-Authenticate"], body) == (401, "Basic", b"Unauthorized\n")
    assert refused(agent.port, client_ctx(pki))  # no client certificate
    assert refused(agent.port, client_ctx(pki, pki.rogue_client))
    assert refused(agent.port, None)  # plain HTTP


def test_reload_swaps_the_web_config(pki: PKI, agent: Agent) -> None:
    new_hash = bcrypt.hashpw(b"rotated-pw", bcrypt.gensalt(4)).decode()
    (agent.dir / "web.yml").write_text(web_yml(pki, f"  prometheus: '{new_hash}'\n"))
    os.kill(agent.proc.pid, signal.SIGHUP)
    good = client_ctx(pki, pki.client)
    wait_for(
        lambda: get(agent.port, good, basic("prometheus", "rotated-pw"))[0] == 200, 20, what="new password"
    )
    assert get(agent.port, good, basic("prometheus", PASSWORD))[0] == 401
    # A broken web config is rejected with the rest of the reload; the running one stays.
    (agent.dir / "web.yml").write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
    os.kill(agent.proc.pid, signal.SIGHUP)
    wait_for(lambda: "reload rejected" in (agent.dir / "agent.log").read_text(), 20, what="reload rejected")
    assert get(agent.port, good, basic("prometheus", "rotated-pw"))[0] == 200


def test_real_prometheus_scrapes_the_agent_over_tls_with_basic_auth(
    pki: PKI, agent: Agent, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    config = (
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n"
        "  - job_name: giamsat\n    scheme: https\n    tls_config:\n"
        f"      ca_file: {pki.ca.pair.cert}\n      cert_file: {pki.client.cert}\n      key_file: {pki.client.key}\n"
        f"    basic_auth:\n      username: prometheus\n      password_file: {tmp_path / 'pw'}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{agent.port}']\n"
    )
    with prometheus(tmp_path / "prom", config) as url:
        wait_for(lambda: query(url, 'up{job="giamsat"} == 1'), 30, what="prometheus scraped the agent")
        samples = query(url, 'node_load1{job="giamsat"}')
        assert samples and samples[0]["metric"]["site"] == "here"


def test_check_config_rejects_a_bad_web_config(tmp_path: Path) -> None:
    (tmp_path / "giamsat.yml").write_text(CONFIG.format(state=tmp_path / "state"))
    (tmp_path / "web.yml").write_text("tls_server_config:\n  cert_file: missing.crt\n")
    r = subprocess.run(
        [GIAMSAT, "check-config", str(tmp_path / "giamsat.yml")], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "web.yml:2: tls_server_config.key_file: missing" in r.stderr
