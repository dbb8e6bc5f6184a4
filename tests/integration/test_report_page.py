"""The agent's ``/report`` page (the month so far) and its ledger counters across a restart: an outage
that is still going when the agent restarts stays one outage, and the counters go on from where they were."""

from __future__ import annotations

import socket
import subprocess
import textwrap
from pathlib import Path

from tests.helpers import GIAMSAT, free_port, http_get, parse_exposition, stop_process, wait_for

CONFIG = """
agent:
  site: hg
  interval: 1s
  timeout: 900ms
  state_dir: {state}
sites:
  - {{id: hg, name: "Tỉnh Hà Giang", level: province, uplinks: [hg-wan]}}
  - {{id: vx, name: "Huyện Vị Xuyên", level: district, parent: hg, uplinks: [vx-wan]}}
collectors:
  host: {{enabled: false}}
targets:
  icmp:
    - {{name: hg-wan, site: hg, address: 127.0.0.1, count: 1, packet_timeout: 500ms}}
  tcp:
    - {{name: vx-wan, site: vx, address: 127.0.0.1, port: {closed}}}
"""


def _start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen(
            [GIAMSAT, "run", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=f,
        )


def _metrics(url: str) -> dict[str, float]:
    return parse_exposition(http_get(url + "/metrics")[1])


def test_report_page_and_counters_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "giamsat.yml"
    listener = socket.create_server(("127.0.0.1", 0))  # vx's link, until the test closes it
    config.write_text(
        textwrap.dedent(CONFIG.format(state=state, closed=listener.getsockname()[1])), encoding="utf-8"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "agent.log"
    proc = _start(config, port, log)
    try:
        wait_for(lambda: _metrics(url).get('giamsat_site_up{site="vx"}') == 1, 30, 0.3, what="vx up")
        listener.close()  # its link is cut
        wait_for(
            lambda: _metrics(url).get('giamsat_site_down_seconds_total{site="vx"}', 0) >= 2,
            30,
            0.3,
            what="vx down",
        )
        m = _metrics(url)
        assert m['giamsat_site_outages_total{site="vx",cause="own_link"}'] == 1
        assert m['giamsat_site_up_seconds_total{site="hg"}'] > 0
        assert m["giamsat_ledger_write_errors_total"] == 0
        status, page, headers = http_get(url + "/report")
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert "Báo cáo tính sẵn sàng và độ phủ mạng: Tỉnh Hà Giang" in page and "Huyện Vị Xuyên" in page
        status, page, _ = http_get(url + "/report?lang=en")
        assert status == 200 and "Network availability and coverage report" in page
        lint = subprocess.run(
            ["promtool", "check", "metrics"],
            input=http_get(url + "/metrics")[1],
            capture_output=True,
            text=True,
        )
        assert not [
            ln for ln in (lint.stdout + lint.stderr).splitlines() if "giamsat_site_" in ln or "ledger" in ln
        ]
    finally:
        stop_process(proc)
    assert proc.returncode == 0
    proc = _start(config, port, log)
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 30, 0.3, what="ready again")
        m = _metrics(url)
        before = m['giamsat_site_down_seconds_total{site="vx"}']
        wait_for(
            lambda: _metrics(url)['giamsat_site_down_seconds_total{site="vx"}'] > before + 1,
            30,
            0.3,
            what="counting on",
        )
        m = _metrics(url)
        # still down after the restart: the same outage, not a second one
        assert m['giamsat_site_outages_total{site="vx",cause="own_link"}'] == 1
        assert [k for k in m if k.startswith("giamsat_site_outages_total")] == [
            'giamsat_site_outages_total{site="vx",cause="own_link"}'
        ]
    finally:
        stop_process(proc)
    assert "Traceback" not in log.read_text(encoding="utf-8")
