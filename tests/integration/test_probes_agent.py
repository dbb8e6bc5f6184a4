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

from tests.helpers import GIAMSAT, free_port, http_get, parse_exposition, stop_process, wait_for

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
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    findings = [ln for ln in (lint.stdout + lint.stderr).splitlines() if ln.strip()]
    assert findings == []

    status, body, _ = http_get(agent_url + "/probe?target=wan&module=icmp")
    assert status == 200
    single = parse_exposition(body)
    assert single['probe_success{probe="icmp"}'] == 1
    assert single['probe_icmp_packets_received{probe="icmp"}'] == 2
    assert not any("site=" in k for k in single)
    status, body, _ = http_get(agent_url + "/probe?target=wan&module=tcp")
    assert status == 200 and parse_exposition(body)['probe_success{probe="tcp"}'] == 1
    # only configured targets: an address of the caller's choosing is never probed
    assert http_get(agent_url + "/probe?target=127.0.0.2&module=icmp")[0] == 404
    assert http_get(agent_url + "/probe?target=portal&module=icmp")[0] == 404
