"""The agent as an operator runs it: `giamsat run` as a subprocess, scraped over HTTP, checked by promtool."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
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
    http_post,
    parse_exposition,
    stop_process,
    wait_for,
)

# Names that node_exporter (and so every dashboard) spells in camelCase; promtool's lint flags them
# on node_exporter's own output too. Anything else promtool reports is a failure.
# node_exporter's own spellings, which promtool flags identically on node_exporter's output (checked
# against a live node_exporter in test_node_exporter_parity.py)
INHERITED_CAMEL_CASE = ("node_memory_", "node_netstat_")
INHERITED_BITS = ("node_entropy_available_bits ", "node_entropy_pool_size_bits ")


class AgentProc:
    def __init__(self, tmp: Path, config: str) -> None:
        self.dir = tmp
        self.config = tmp / "giamsat.yml"
        self.config.write_text(textwrap.dedent(config), encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            GIAMSAT,
            "run",
            "--config.file",
            str(self.config),
            "--web.listen-address",
            f"127.0.0.1:{self.port}",
        ]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        wait_for(lambda: http_get(self.url + "/-/ready")[0] == 200, 20, what="agent ready")

    def metrics(self) -> dict[str, float]:
        status, body, _ = http_get(self.url + "/metrics")
        assert status == 200
        return parse_exposition(body)

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)


BASE = """
agent:
  site: tinh
  interval: 1s
  timeout: 2s
  state_dir: {state}
sites:
  - {{id: tinh, name: "Tỉnh Điện Biên", level: province}}
  - {{id: xa-1, name: "Xã Mường Phăng", level: commune, parent: tinh}}
collectors:
  host:
    systemd_units: [giamsat-test.service]
    systemctl_path: {systemctl}
"""


@pytest.fixture
def fake_systemctl(tmp_path: Path) -> Path:
    # systemd is not PID 1 on test machines, so `systemctl show` is the one thing stood in for: a script
    # printing what systemctl prints, or hanging when told to (a wedged D-Bus).
    script = tmp_path / "systemctl"
    script.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            if [ -e "$(dirname "$0")/hang" ]; then sleep 60; fi
            printf 'Id=giamsat-test.service\\nActiveState=failed\\nSubState=failed\\nLoadState=loaded\\nType=simple\\n'
            """
        )
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def agent(tmp_path: Path, fake_systemctl: Path) -> Iterator[AgentProc]:
    a = AgentProc(tmp_path, BASE.format(state=tmp_path / "state", systemctl=fake_systemctl))
    a.start()
    yield a
    a.stop()


def test_metrics_endpoint_serves_host_self_and_inventory_metrics_cleanly(agent: AgentProc) -> None:
    status, body, headers = http_get(agent.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    m = parse_exposition(body)
    assert m['giamsat_collector_success{collector="host",site="tinh",target=""}'] == 1
    assert m['giamsat_site_info{site="xa-1",name="Xã Mường Phăng",level="commune",parent="tinh"}'] == 1
    assert m["giamsat_config_last_reload_successful"] == 1
    assert m['node_memory_MemTotal_bytes{site="tinh"}'] > 0
    assert (
        m['node_systemd_unit_state{name="giamsat-test.service",state="failed",type="simple",site="tinh"}']
        == 1
    )
    assert (
        m['node_systemd_unit_state{name="giamsat-test.service",state="active",type="simple",site="tinh"}']
        == 0
    )
    assert any(k.startswith('node_cpu_seconds_total{cpu="0",mode="idle"') for k in m)
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    findings = [ln for ln in (lint.stdout + lint.stderr).splitlines() if ln.strip()]
    unexpected = [
        f
        for f in findings
        if not (f.startswith(INHERITED_CAMEL_CASE) and "camelCase" in f)
        and not (f.startswith(INHERITED_BITS) and 'base unit "bytes" instead of "bits"' in f)
    ]
    assert unexpected == [], unexpected


def test_openmetrics_when_asked(agent: AgentProc) -> None:
    status, body, headers = http_get(
        agent.url + "/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")


def test_health_landing_and_unknown_probe_target(agent: AgentProc) -> None:
    assert http_get(agent.url + "/-/healthy")[:2] == (200, "Healthy\n")
    status, page, _ = http_get(agent.url + "/")
    assert status == 200 and "Xã Mường Phăng" in page and "host" in page
    # Only configured targets are served: an address of the caller's choosing is never probed. No icmp
    # collector runs here: an unknown module, answered 400 as blackbox_exporter does.
    status, body, _ = http_get(agent.url + "/probe?target=198.18.0.1&module=icmp")
    assert (status, body.strip()) == (400, 'Unknown module "icmp"')
    assert http_get(agent.url + "/probe?target=198.18.0.1&module=host")[0] == 404  # a kind, not a target
    assert http_get(agent.url + "/probe?module=icmp")[0] == 400
    assert http_get(agent.url + "/nope")[0] == 404


def test_hung_collector_part_does_not_delay_metrics(agent: AgentProc, fake_systemctl: Path) -> None:
    (fake_systemctl.parent / "hang").touch()
    # The systemd part now hangs for 60 s; within a few intervals it times out and is reported failing.
    wait_for(
        lambda: agent.metrics().get('node_scrape_collector_success{collector="systemd",site="tinh"}') == 0,
        15,
        what="systemd part reported failing",
    )
    # Meanwhile every scrape answers at once and the other parts keep running.
    for _ in range(10):
        t0 = time.monotonic()
        m = agent.metrics()
        assert time.monotonic() - t0 < 1.0
        assert m['node_scrape_collector_success{collector="cpu",site="tinh"}'] == 1
        time.sleep(0.2)


def test_concurrent_scrapes_all_answer(agent: AgentProc) -> None:
    statuses: list[int] = []

    def scrape() -> None:
        statuses.append(http_get(agent.url + "/metrics")[0])

    threads = [threading.Thread(target=scrape) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Over the cap a scrape gets a quick 503 (counted) rather than queueing; none may fail otherwise.
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 8


def test_bad_reload_keeps_old_config_running(agent: AgentProc) -> None:
    good = agent.config.read_text()
    agent.config.write_text(good + "\nbogus_key: 1\n")
    status, text = http_post(agent.url + "/-/reload")
    assert status == 500 and "bogus_key: unknown key" in text
    m = agent.metrics()
    assert m["giamsat_config_last_reload_successful"] == 0
    assert m['giamsat_collector_success{collector="host",site="tinh",target=""}'] == 1
    # SIGHUP with a broken file: logged, still running, still serving.
    agent.config.write_text("agent: [broken\n")
    assert agent.proc is not None
    os.kill(agent.proc.pid, signal.SIGHUP)
    wait_for(lambda: "reload rejected" in agent.log.read_text(), 10, what="reload rejection logged")
    assert agent.proc.poll() is None and agent.metrics()["giamsat_config_last_reload_successful"] == 0
    # A good file again: reload succeeds and the new inventory is served.
    agent.config.write_text(good.replace("Xã Mường Phăng", "Xã Mường Phăng mới"))
    assert http_post(agent.url + "/-/reload") == (200, "configuration reloaded\n")
    assert http_get(agent.url + "/-/ready")[0] == 200  # still serving data: a reload keeps readiness
    m = agent.metrics()
    assert m["giamsat_config_last_reload_successful"] == 1
    assert 'giamsat_site_info{site="xa-1",name="Xã Mường Phăng mới",level="commune",parent="tinh"}' in m


def test_sigterm_stops_cleanly_within_5s(agent: AgentProc) -> None:
    assert agent.proc is not None
    t0 = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    rc = agent.proc.wait(timeout=10)
    assert rc == 0 and time.monotonic() - t0 < 5
    assert "stopping" in agent.log.read_text()


def test_bad_config_at_start_exits_2_naming_the_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text("agent:\n  listen_adress: ':1'\n")
    proc = subprocess.run(
        [GIAMSAT, "run", "--config.file", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert f"{cfg}:2: agent.listen_adress: unknown key" in proc.stderr


def test_port_in_use_is_a_clear_startup_error(tmp_path: Path, fake_systemctl: Path) -> None:

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "c.yml"
        cfg.write_text(f"agent:\n  listen_address: 127.0.0.1:{port}\n  state_dir: {tmp_path}\n")
        proc = subprocess.run(
            [GIAMSAT, "run", "--config.file", str(cfg)], capture_output=True, text=True, timeout=30
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr


def test_once_prints_exposition_and_exit_code_reflects_failures(tmp_path: Path, fake_systemctl: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(BASE.format(state=tmp_path, systemctl=fake_systemctl))
    ok = subprocess.run(
        [GIAMSAT, "once", "--config.file", str(cfg), "--collector", "host"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "node_load1" in ok.stdout
    bad = subprocess.run(
        [GIAMSAT, "once", "--config.file", str(cfg), "--collector", "gpu"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown collector(s): gpu" in bad.stderr


def test_inventory_export_sd_prints_file_sd_json(tmp_path: Path) -> None:
    import json

    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "sites:\n  - {id: tinh, name: Tỉnh, level: province}\n"
        "  - {id: xa-1, name: Xã Một, level: commune, parent: tinh}\n"
        "targets:\n  tcp:\n    - {name: xa-1-wan, site: xa-1, address: 127.0.0.1, port: 22}\n"
    )
    out = subprocess.run(
        [GIAMSAT, "inventory", "export-sd", "--config.file", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    groups = json.loads(out.stdout)
    assert {"targets": ["xa-1-wan"], "labels": {**groups[0]["labels"]}} == groups[0]
    assert groups[0]["labels"]["site_name"] == "Xã Một" and groups[0]["labels"]["__param_module"] == "tcp"


def test_host_only_agent_loads_no_optional_native_libraries(agent: AgentProc) -> None:
    # Remote write (httpx, cramjam) and SNMP (gufo) are loaded only when configured: memory matters on
    # commune machines. Their compiled extensions would show in the process's memory map.
    assert agent.proc is not None
    maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
    for lib in ("/cramjam/", "/gufo/", "_cffi_backend", "/bcrypt/"):
        assert lib not in maps, [ln for ln in maps.splitlines() if lib in ln][:2]


def test_doctor_command_prints_a_table_and_fails_on_an_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    (tmp_path / "state").mkdir()
    for state, rc, text in ((tmp_path / "state", 0, "checks passed"), (blocker / "state", 1, "FAIL")):
        cfg = tmp_path / "c.yml"
        cfg.write_text(f"agent:\n  state_dir: {state}\ncollectors:\n  host: {{parts: [loadavg]}}\n")
        out = subprocess.run(
            [GIAMSAT, "doctor", "--config.file", str(cfg)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == rc, out.stdout + out.stderr
        assert "state directory" in out.stdout and text in out.stdout


def test_reload_that_fails_late_leaves_the_running_state_alone(tmp_path: Path, fake_systemctl: Path) -> None:
    """A reload can fail after the new collectors have started (here: remote write cannot build its TLS
    context from a garbage CA file). The old configuration keeps running, and nothing of the rejected
    one has leaked into it: a target the rejected file drops is still served with its health (its next
    run is a minute away, so nothing would put it back meanwhile)."""
    listener = CountingListener()
    port = listener.port
    base = BASE.format(state=tmp_path / "state", systemctl=fake_systemctl)
    keep = f"    - {{name: keep, site: tinh, address: 127.0.0.1, port: {port}}}\n"
    dropped = f"    - {{name: dropped, site: tinh, address: 127.0.0.1, port: {port}, interval: 60s}}\n"
    agent = AgentProc(tmp_path, base + "targets:\n  tcp:\n" + keep + dropped)
    agent.start()
    try:
        health = (
            'giamsat_collector_last_success_timestamp_seconds{collector="tcp",site="tinh",target="dropped"}'
        )
        wait_for(lambda: health in agent.metrics(), 10, what="dropped target collected")
        (tmp_path / "garbage-ca.pem").write_text("not a certificate\n")
        agent.config.write_text(
            base
            + "targets:\n  tcp:\n"
            + keep
            + "remote_write:\n"
            + "  - {name: central, url: 'https://127.0.0.1:9/api/v1/write', "
            + f"tls: {{ca_file: {tmp_path / 'garbage-ca.pem'}}}}}\n",
            encoding="utf-8",
        )
        status, text = http_post(agent.url + "/-/reload")
        assert status == 500 and "old configuration kept" in text, text
        m = agent.metrics()
        assert m["giamsat_config_last_reload_successful"] == 0
        assert health in m, "the rejected configuration removed a target the old one still runs"
        assert 'probe_success{probe="tcp",site="tinh",target="dropped"}' in m
    finally:
        agent.stop()
        listener.close()


def test_remote_write_survives_a_rejected_reload_and_follows_the_next_good_one(
    tmp_path: Path, fake_systemctl: Path
) -> None:
    """A reload whose remote write cannot start (garbage CA file) restarts the running one; and if that
    ever fails too, the next good reload must start remote write again rather than find its settings
    unchanged. Either way, after the good reload remote write is running."""
    base = BASE.format(state=tmp_path / "state", systemctl=fake_systemctl)
    dead = free_port()  # nothing listens: samples stay pending in the buffer, which is fine here
    good = base + f"remote_write:\n  - {{name: central, url: 'http://127.0.0.1:{dead}/api/v1/write'}}\n"
    (tmp_path / "garbage-ca.pem").write_text("not a certificate\n")
    bad = base + (
        f"remote_write:\n  - {{name: central, url: 'https://127.0.0.1:{dead}/api/v1/write', "
        f"tls: {{ca_file: {tmp_path / 'garbage-ca.pem'}}}}}\n"
    )
    agent = AgentProc(tmp_path, good)
    agent.start()
    appended = 'giamsat_remote_write_samples_appended_total{remote="central"}'
    try:
        wait_for(lambda: agent.metrics().get(appended, 0) > 0, 10, what="remote write appending")
        agent.config.write_text(bad, encoding="utf-8")
        status, text = http_post(agent.url + "/-/reload")
        assert status == 500, text
        before = agent.metrics()[appended]
        wait_for(lambda: agent.metrics().get(appended, 0) > before, 10, what="old remote write restarted")
        agent.config.write_text(good, encoding="utf-8")
        assert http_post(agent.url + "/-/reload") == (200, "configuration reloaded\n")
        after = agent.metrics()[appended]
        wait_for(lambda: agent.metrics().get(appended, 0) > after, 10, what="remote write after good reload")
    finally:
        agent.stop()
