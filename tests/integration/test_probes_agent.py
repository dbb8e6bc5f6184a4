"""The probes inside the running agent: `giamsat run` scraped on /metrics (promtool-clean) and on the
blackbox-style /probe endpoint, which serves only configured targets."""

from __future__ import annotations

import http.server
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import GIAMSAT, free_port, http_get, http_post, parse_exposition, stop_process, wait_for

CONFIG = """
agent:
  site: tinh
  interval: 1s
  timeout: 2s
  state_dir: {state}
sites:
  - {{id: tinh, name: "Tỉnh", level: province}}
  - {{id: xa-1, name: "Xã 1", level: commune, parent: tinh, uplinks: [wan]}}
collectors:
  host: {{enabled: false}}
targets:
  icmp:
    - {{name: wan, site: xa-1, address: 127.0.0.1, count: 2, packet_interval: 10ms, packet_timeout: 500ms}}
    - {{name: wan6, site: xa-1, address: "::1", count: 2, packet_interval: 10ms, packet_timeout: 500ms}}
  tcp:
    - {{name: wan, site: xa-1, address: 127.0.0.1, port: {http_port}}}
  http:
    - {{name: portal, site: tinh, url: "http://127.0.0.1:{http_port}/"}}
  dns:
    - {{name: resolver, site: tinh, server: 127.0.0.1, port: {dead_port}, query_name: x.test}}
"""


class _Ok(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def agent_url(tmp_path: Path) -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    cfg = tmp_path / "giamsat.yml"
    cfg.write_text(
        textwrap.dedent(
            CONFIG.format(state=tmp_path / "state", http_port=srv.server_address[1], dead_port=free_port())
        ),
        encoding="utf-8",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "agent.log").open("wb") as log:
        proc = subprocess.Popen(
            [GIAMSAT, "run", "--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 20, what="agent ready")
        yield url
    finally:
        stop_process(proc)
        srv.shutdown()
        srv.server_close()


def test_probe_metrics_on_metrics_and_probe_endpoints(agent_url: str) -> None:
    status, body, _ = http_get(agent_url + "/metrics")
    assert status == 200
    m = parse_exposition(body)
    assert m['probe_success{probe="icmp",site="xa-1",target="wan"}'] == 1
    assert m['probe_success{probe="icmp",site="xa-1",target="wan6"}'] == 1
    assert m['probe_success{probe="tcp",site="xa-1",target="wan"}'] == 1
    assert m['probe_http_status_code{probe="http",site="tinh",target="portal"}'] == 200
    assert m['probe_success{probe="dns",site="tinh",target="resolver"}'] == 0
    assert m['probe_failure_reason{reason="timeout",probe="dns",site="tinh",target="resolver"}'] == 1
    assert m['probe_icmp_response_duration_seconds_count{probe="icmp",site="xa-1",target="wan"}'] >= 2
    # wan and wan6 run in one ICMP batch; health is still per target
    assert m['giamsat_collector_success{collector="icmp",site="xa-1",target="wan"}'] == 1
    assert m['giamsat_collector_success{collector="icmp",site="xa-1",target="wan6"}'] == 1
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    findings = [ln for ln in (lint.stdout + lint.stderr).splitlines() if ln.strip()]
    assert findings == []

    status, body, _ = http_get(agent_url + "/probe?target=wan&module=icmp")
    assert status == 200
    single = parse_exposition(body)
    assert single["probe_success"] == 1
    assert single["probe_icmp_packets_received"] == 2
    # as blackbox_exporter: neither site/target nor the probe label (the module says it)
    assert not any("site=" in k or "probe=" in k for k in single)
    status, body, _ = http_get(agent_url + "/probe?target=wan&module=tcp")
    assert status == 200 and parse_exposition(body)["probe_success"] == 1
    # only configured targets: an address of the caller's choosing is never probed
    assert http_get(agent_url + "/probe?target=127.0.0.2&module=icmp")[0] == 404
    assert http_get(agent_url + "/probe?target=portal&module=icmp")[0] == 404


RELOAD_CONFIG = """
agent:
  interval: 1s
  timeout: 2s
  state_dir: {state}
sites:
  - {{id: tinh, name: "Tỉnh", level: province}}
collectors:
  host: {{enabled: false}}
targets:
  icmp:
{targets}
"""


def _icmp_targets(names: list[str]) -> str:
    return "\n".join(
        f"    - {{name: {n}, site: tinh, address: 127.0.0.{i + 1}, count: 1, packet_timeout: 500ms}}"
        for i, n in enumerate(names)
    )


def test_batched_icmp_targets_stay_per_target_across_a_reload(tmp_path: Path) -> None:
    """The ICMP targets run as one scheduler batch, but health, /metrics and /probe stay per target, and a
    target removed by a reload disappears from all three."""
    cfg = tmp_path / "giamsat.yml"

    def write(names: list[str]) -> None:
        cfg.write_text(
            RELOAD_CONFIG.format(state=tmp_path / "state", targets=_icmp_targets(names)), encoding="utf-8"
        )

    write(["a", "b"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "agent.log").open("wb") as log:
        proc = subprocess.Popen(
            [GIAMSAT, "run", "--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 20, what="agent ready")
        m = parse_exposition(http_get(url + "/metrics")[1])
        for t in ("a", "b"):
            assert m[f'giamsat_collector_success{{collector="icmp",site="tinh",target="{t}"}}'] == 1
            assert m[f'probe_success{{probe="icmp",site="tinh",target="{t}"}}'] == 1
        status, body, _ = http_get(url + "/probe?target=b&module=icmp")
        assert status == 200 and parse_exposition(body)["probe_success"] == 1

        write(["a"])
        assert http_post(url + "/-/reload") == (200, "configuration reloaded\n")
        assert http_get(url + "/probe?target=b&module=icmp")[0] == 404
        assert http_get(url + "/probe?target=a&module=icmp")[0] == 200
        wait_for(
            lambda: 'probe_success{probe="icmp",site="tinh",target="a"}' in http_get(url + "/metrics")[1],
            10,
            what="target a probed after the reload",
        )
        body = http_get(url + "/metrics")[1]
        assert 'target="b"' not in body
    finally:
        stop_process(proc)
