"""`giamsat doctor`: real sockets, a real unprivileged user, a real Prometheus for the clock check."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.doctor import FAIL, PASS, check_clock, run_doctor
from tests.prom import prometheus

CONFIG = """
agent:
  site: here
  state_dir: {state}
sites:
  - id: here
    name: Here
    level: province
collectors:
  host: {{}}
"""


def table(text: str) -> dict[str, tuple[str, str]]:
    """The doctor's table: check name -> (status, detail)."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(.+?)\s{2,}(PASS|WARN|FAIL)\s{2,}(.*)$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def write_config(dir: Path, state: Path) -> Path:
    p = dir / "giamsat.yml"
    p.write_text(CONFIG.format(state=state))
    return p


def test_all_pass_for_a_good_setup(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    out = io.StringIO()
    rc = run_doctor(load_config(write_config(tmp_path, tmp_path / "state")), out=out)
    text = out.getvalue()
    assert rc == 0, text
    rows = table(text)
    assert rows["state directory"][0] == PASS
    assert rows["host (this host)"][0] == PASS
    assert rows["icmp permission"][0] == PASS  # root: raw sockets


@pytest.mark.root
def test_unprivileged_user_gets_failures_with_fixes() -> None:
    """Without capabilities: no raw ICMP (ping_group_range excludes the group), state dir not writable.

    Runs as root with every capability dropped (setpriv clears the bounding set, so the exec'd
    interpreter has none): it can still read the checkout wherever CI cloned it, which `nobody` may not,
    yet cannot open raw sockets or write into a directory owned by someone else.
    """
    ping_range = Path("/proc/sys/net/ipv4/ping_group_range").read_text().split()
    lo, hi = int(ping_range[0]), int(ping_range[1])
    assert not lo <= os.getgid() <= hi, (
        "this test needs ping sockets closed to our group (Debian default '1 0')"
    )
    d = Path(tempfile.mkdtemp(prefix="gs-doctor-"))
    try:
        d.chmod(0o755)
        state = d / "state"
        state.mkdir(mode=0o755)
        os.chown(state, 65534, 65534)  # someone else's: not writable without CAP_DAC_OVERRIDE
        cfg = write_config(d, state)
        cfg.chmod(0o644)
        script = (
            "import sys; from agent.config import load_config; from agent.doctor import run_doctor;"
            f"sys.exit(run_doctor(load_config({str(cfg)!r})))"
        )
        r = subprocess.run(
            [
                "setpriv",
                "--inh-caps=-all",
                "--ambient-caps=-all",
                "--bounding-set=-all",
                sys.executable,
                "-c",
                script,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=d,
        )
        assert r.returncode == 1, r.stdout + r.stderr
        rows = table(r.stdout)
        assert rows["state directory"] == (FAIL, f"{state} is not writable (Permission denied)")
        assert "install -d -o giamsat -g giamsat -m 0750" in r.stdout
        # No ICMP targets configured: reported, with the fix, as a warning rather than a failure.
        assert rows["icmp permission"][0] == "WARN"
        assert "cannot open an ICMP socket" in rows["icmp permission"][1]
        assert f"net.ipv4.ping_group_range='{os.getgid()} {os.getgid()}'" in r.stdout
        assert rows["host (this host)"][0] == PASS
    finally:
        subprocess.run(["rm", "-rf", str(d)], check=True)


@contextmanager
def skewed_prometheus(offset: float) -> Iterator[str]:
    """An HTTP server answering Prometheus's query API with a clock ``offset`` seconds off."""

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {"status": "success", "data": {"resultType": "scalar", "result": [time.time() + offset, "x"]}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_clock_from_the_date_header_when_there_is_no_query_api() -> None:
    """A server that is not Prometheus (or an old one): its Date header, whole seconds, still catches skew."""

    class H(BaseHTTPRequestHandler):
        def date_time_string(self, timestamp: float | None = None) -> str:
            return super().date_time_string(time.time() + 120)

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        c = check_clock(f"http://127.0.0.1:{srv.server_address[1]}")
    finally:
        srv.shutdown()
        srv.server_close()
    assert c.status == FAIL and "behind" in c.detail


def test_clock_against_a_real_prometheus(tmp_path: Path) -> None:
    with prometheus(tmp_path / "prom", "global: {scrape_interval: 1h}\n") as url:
        c = check_clock(url)
    assert c.status == PASS, c.detail
    assert url in c.detail


@pytest.mark.parametrize("offset", [-30.0, 30.0])
def test_clock_skew_is_caught(offset: float) -> None:
    with skewed_prometheus(offset) as url:
        c = check_clock(url)
    assert c.status == FAIL
    assert ("behind" if offset > 0 else "ahead of") in c.detail
    assert "timedatectl set-ntp true" in c.fix


def test_unreachable_prometheus_fails_with_a_fix(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    out = io.StringIO()
    rc = run_doctor(load_config(write_config(tmp_path, tmp_path / "state")), "http://127.0.0.1:9", out=out)
    assert rc == 1
    assert "cannot reach http://127.0.0.1:9" in out.getvalue()


def test_bad_web_config_is_reported(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
    cfg = write_config(tmp_path, tmp_path / "state")
    cfg.write_text(cfg.read_text().replace("agent:\n", f"agent:\n  web_config_file: {web}\n"))
    out = io.StringIO()
    assert run_doctor(load_config(cfg), out=out) == 1
    assert "web config" in out.getvalue() and "not a bcrypt hash" in out.getvalue()
    assert os.path.exists(web)


def test_down_reason_follows_the_collectors_convention() -> None:
    """Each kind reads its own results (``<x>_up 0`` or ``probe_success 0`` and ``<x>_failure_reason``
    beside it); doctor reports what the pipeline stored and the kind's own fix."""
    from prometheus_client.core import GaugeMetricFamily

    from agent.doctor import down_reason, fix_for
    from agent.kernel.collector import read_link_status
    from agent.kernel.results import JobResult
    from collectors import COLLECTORS

    def result(kind: str, *fams: GaugeMetricFamily) -> JobResult:
        cls = COLLECTORS[kind]
        assert cls.link_metric is not None
        link = read_link_status(fams, cls.link_metric, cls.link_reason_metric)
        return JobResult(f"{kind}/x", kind, "x", "here", tuple(fams), 0.0, 0.1, True, link=link)

    up0 = GaugeMetricFamily("snmp_up", "", value=0)
    up1 = GaugeMetricFamily("snmp_up", "", value=1)
    why = GaugeMetricFamily("snmp_failure_reason", "", labels=["reason"])
    why.add_metric(["auth_failed"], 1)
    assert down_reason(result("snmp", up0, why)) == "auth_failed"
    assert down_reason(result("snmp", up0)) == "down"
    assert down_reason(result("snmp", up1)) is None
    assert down_reason(result("icmp", GaugeMetricFamily("probe_success", "", value=0))) == "down"
    assert "collectors.snmp.auths" in fix_for("snmp", "auth_failed")
    assert "ssh-keyscan" in fix_for("ssh", "host_key_unknown")
    assert "routing" in fix_for("icmp", "timeout")


if "snmp" in __import__("collectors").COLLECTORS:

    def test_wrong_snmp_credentials_fail_by_target_with_the_fix(tmp_path: Path) -> None:
        """A real snmpd knows user `right`; the doctor tries the configured (wrong) password once."""
        import socket

        from tests.helpers import stop_process, wait_for

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
        d = tmp_path / "snmpd"
        (d / "persist").mkdir(parents=True)
        (d / "snmpd.conf").write_text(
            f"agentaddress udp:127.0.0.1:{port}\n[snmp] persistentDir {d / 'persist'}\n"
            "rocommunity right-community 127.0.0.1\nsysName doctor-agent\n"
            "createUser right SHA-256 right-password AES right-privpass\nrouser right priv\n"
        )
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(d / "persist"), SNMPCONFPATH=str(d), MIBS="")
        proc = subprocess.Popen(
            ["snmpd", "-f", "-Lf", str(d / "log"), "-C", "-c", str(d / "snmpd.conf"), "-p", str(d / "pid")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda: "doctor-agent"
                in subprocess.run(
                    ["snmpget", "-v2c", "-c", "right-community", "-t", "0.5", "-r", "0", f"127.0.0.1:{port}",
                     "1.3.6.1.2.1.1.5.0"],
                    capture_output=True, text=True, env=env,
                ).stdout,
                15,
            )  # fmt: skip
            (tmp_path / "state").mkdir()
            cfg = write_config(tmp_path, tmp_path / "state")
            cfg.write_text(
                cfg.read_text().replace("agent:\n", "agent:\n  timeout: 4s\n")
                + "  snmp:\n    request_timeout: 1s\n    retries: 0\n    auths:\n"
                "      good: {version: 3, username: right, password: right-password, priv_password: right-privpass}\n"
                "      bad: {version: 3, username: right, password: wrong-password, priv_password: right-privpass}\n"
                "targets:\n  snmp:\n"
                f"    - {{name: sw-good, site: here, address: 127.0.0.1, port: {port}, auth: good, modules: [system]}}\n"
                f"    - {{name: sw-bad, site: here, address: 127.0.0.1, port: {port}, auth: bad, modules: [system]}}\n"
            )
            out = io.StringIO()
            rc = run_doctor(load_config(cfg), out=out)
        finally:
            stop_process(proc)
        rows = table(out.getvalue())
        assert rc == 1, out.getvalue()
        assert rows["snmp/sw-good"][0] == PASS, out.getvalue()
        assert rows["snmp/sw-bad"][0] == FAIL
        assert "auth" in rows["snmp/sw-bad"][1]
        assert "collectors.snmp.auths" in out.getvalue()


if "ssh" in __import__("collectors").COLLECTORS:

    def test_ssh_targets_fail_by_name_with_the_fix(tmp_path: Path) -> None:
        """A real sshd whose host key is not known yet, and a port where nothing listens."""
        from tests.helpers import free_port
        from tests.integration.sshd_server import keygen, start_sshd

        key = keygen(tmp_path / "id_doctor")
        server = start_sshd(tmp_path / "sshd", key.with_suffix(".pub"), key)
        try:
            (tmp_path / "state").mkdir()
            cfg = write_config(tmp_path, tmp_path / "state")
            cfg.write_text(
                cfg.read_text().replace("agent:\n", "agent:\n  timeout: 5s\n")
                + f"  ssh:\n    auths:\n      root: {{username: root, key_file: {key}}}\n"
                "targets:\n  ssh:\n"
                f"    - {{name: unknown-key, site: here, address: 127.0.0.1, port: {server.port}, auth: root}}\n"
                f"    - {{name: nobody-home, site: here, address: 127.0.0.1, port: {free_port()}, auth: root}}\n"
            )
            out = io.StringIO()
            rc = run_doctor(load_config(cfg), out=out)
        finally:
            server.stop()
        rows = table(out.getvalue())
        assert rc == 1, out.getvalue()
        assert rows["ssh/unknown-key"] == (FAIL, "target reports down: host_key_unknown")
        assert rows["ssh/nobody-home"] == (FAIL, "target reports down: connection_refused")
        assert "ssh-keyscan" in out.getvalue() and "nothing listens there" in out.getvalue()
