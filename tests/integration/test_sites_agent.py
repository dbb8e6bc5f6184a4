"""Site state in the running agent: served on /metrics, a corrupt state file is only a warning, and the
state file is written on shutdown."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from tests.helpers import GIAMSAT, free_port, http_get, http_post, parse_exposition, stop_process, wait_for

CONFIG = """
agent:
  site: hg
  interval: 1s
  timeout: 900ms
  state_dir: {state}
sites:
  - {{id: hg, name: "Tỉnh Hà Giang", level: province}}
  - {{id: vx, name: "Huyện Vị Xuyên", level: district, parent: hg}}
  - {{id: vx-daoduc, name: "Xã Đạo Đức", level: commune, parent: vx}}
"""


def test_agent_serves_site_state_and_survives_a_corrupt_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "sites.json").write_bytes(b"\x00{ not json")
    config = tmp_path / "giamsat.yml"
    config.write_text(textwrap.dedent(CONFIG.format(state=state)), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "agent.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [GIAMSAT, "run", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=f,
        )
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 20, what="agent ready")
        status, body, _ = http_get(url + "/metrics")
        assert status == 200
        m = parse_exposition(body)
        # no uplinks configured anywhere: every site is unknown, and says so
        assert m['giamsat_site_state{site="vx-daoduc",state="unknown"}'] == 1
        assert m['giamsat_site_state{site="vx-daoduc",state="down"}'] == 0
        assert m['giamsat_sites{ancestor="hg",level="commune",state="unknown"}'] == 1
        assert m['giamsat_sites{ancestor="vx",level="commune",state="unknown"}'] == 1
        assert not any(k.startswith("giamsat_site_up{") for k in m)
        lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True)
        assert not [ln for ln in (lint.stdout + lint.stderr).splitlines() if "giamsat_site" in ln]

        # a reload with a changed inventory: the new site is tracked, the removed one is gone
        config.write_text(
            textwrap.dedent(CONFIG.format(state=state))
            .replace(
                "parent: vx}",
                'parent: vx}\n  - {id: vx-linhho, name: "Xã Linh Hồ", level: commune, parent: vx}',
            )
            .replace("vx-daoduc", "vx-phulinh"),
            encoding="utf-8",
        )
        assert http_post(url + "/-/reload")[0] == 200
        m = parse_exposition(http_get(url + "/metrics")[1])
        assert m['giamsat_site_state{site="vx-linhho",state="unknown"}'] == 1
        assert not any('site="vx-daoduc"' in k for k in m if k.startswith("giamsat_site_state"))
        assert m['giamsat_sites{ancestor="vx",level="commune",state="unknown"}'] == 2
    finally:
        stop_process(proc)
    assert proc.returncode == 0
    assert "saved site state is corrupt" in log.read_text(encoding="utf-8")
    saved = json.loads((state / "sites.json").read_text(encoding="utf-8"))
    assert saved == {"version": 1, "last_up": {}, "tried_never_up": {}, "states": {}}


def test_restarted_agent_serves_the_saved_state_until_its_first_round(tmp_path: Path) -> None:
    """The agent stopped while a commune was down. Restarted, its uplink's first round takes seconds (a
    TCP probe waiting for a banner that never comes); meanwhile a scrape must see the commune down since
    the saved time, never unknown (which would resolve the firing alert)."""
    import socket
    import threading

    held: list[socket.socket] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def accept() -> None:  # accept and say nothing: the probe waits for its banner until its timeout
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    state = tmp_path / "state"
    state.mkdir()
    (state / "sites.json").write_text(
        json.dumps(
            {
                "version": 1,
                "last_up": {"c": 1000.0},
                "tried_never_up": {},
                "states": {"c": {"state": "down", "since": 1700.0, "reason": "timeout"}},
            }
        )
    )
    config = tmp_path / "giamsat.yml"
    config.write_text(
        textwrap.dedent(
            f"""\
            agent: {{interval: 30s, timeout: 6s, state_dir: {state}}}
            collectors: {{host: {{enabled: false}}}}
            sites:
              - {{id: c, name: "Xã Đạo Đức", level: commune, uplinks: [wan]}}
            targets:
              tcp:
                - {{name: wan, site: c, address: 127.0.0.1, port: {listener.getsockname()[1]}, expect: "^SSH-"}}
            """
        ),
        encoding="utf-8",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [GIAMSAT, "run", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def scrape() -> dict[str, float] | None:
            try:
                status, body, _ = http_get(url + "/metrics", timeout=2)
            except OSError:
                return None
            return parse_exposition(body) if status == 200 else None

        wait_for(lambda: scrape() is not None, 20, what="agent listening")
        first = scrape()
        assert first is not None
        assert http_get(url + "/-/ready")[0] == 503  # the first round is still going
        assert first['giamsat_site_state{site="c",state="down"}'] == 1
        assert first['giamsat_site_state{site="c",state="unknown"}'] == 0
        assert first['giamsat_site_state_change_timestamp_seconds{site="c"}'] == 1700
        # the round ends in a failure (retried, confirmed): still down, since the same time
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 30, what="first round")
        after = scrape()
        assert after is not None
        assert after['giamsat_site_state{site="c",state="down"}'] == 1, {
            k: v for k, v in after.items() if "site_state" in k
        }
        assert after['giamsat_site_state_change_timestamp_seconds{site="c"}'] == 1700
    finally:
        stop_process(proc)
        listener.close()
        for s in held:
            s.close()
