"""`giamsat run` through hostile and broken peers at once, and stopped or reloaded mid-job: its log must
hold no traceback, no third-party noise and a bounded number of lines (one per change of state).

Peers: an SSH target that accepts TCP and never speaks, a remote-write receiver that echoes the
Authorization header in its error bodies, and HTTP clients that trickle headers, flood them and reset.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import wait_for
from tests.integration.http_attacks import Slowloris, header_flood, reset_mid_request, running_agent
from tests.integration.test_redaction_agent import TOKEN, echo_server


class SilentListener:
    """A TCP port on loopback that accepts connections and holds them open without a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@contextmanager
def silent_listener() -> Iterator[SilentListener]:
    s = SilentListener()
    try:
        yield s
    finally:
        s.close()


def ssh_config(tmp_path: Path, port: int, interval: str = "2s", timeout: str = "1500ms") -> str:
    (tmp_path / "known_hosts").write_text("")
    return f"""
  ssh:
    known_hosts_file: {tmp_path / "known_hosts"}
    connect_timeout: {timeout}
    auths:
      mute: {{username: monitor, password: silent-target-pw}}
targets:
  ssh:
    - {{name: mute, site: here, address: 127.0.0.1, port: {port}, auth: mute, interval: {interval}, timeout: {timeout}}}
"""


def log_problems(text: str) -> list[str]:
    return [
        ln
        for ln in text.splitlines()
        if "Traceback" in ln
        or "level=error" in ln
        or "logger=paramiko" in ln
        or "logger=apscheduler" in ln
        or not ln.startswith("ts=")
    ]


def test_an_ssh_target_that_never_speaks_logs_one_line(tmp_path: Path) -> None:
    """Guards ~22 paramiko ERROR lines with a traceback per run: the failure is one warning, however
    many runs fail the same way."""
    with (
        silent_listener() as mute,
        running_agent(tmp_path, extra_config=ssh_config(tmp_path, mute.port)) as agent,
    ):
        wait_for(lambda: mute.accepted >= 6, 60, what="six SSH runs against the silent target")
        m = agent.metrics()
    assert m['ssh_up{site="here",target="mute"}'] == 0
    text = agent.log.read_text()
    assert log_problems(text) == [], text[-3000:]
    failing = [ln for ln in text.splitlines() if "ssh target failing" in ln]
    assert len(failing) == 1 and "connect_timeout" in failing[0], failing


def test_reload_and_stop_while_a_job_runs_log_no_error(tmp_path: Path) -> None:
    """Guards the CancelledError traceback APScheduler logged at ERROR for a job cancelled by a stop or
    a reload: three reloads and a stop, each while the SSH job is waiting on its silent target."""
    with (
        silent_listener() as mute,
        running_agent(
            tmp_path, extra_config=ssh_config(tmp_path, mute.port, interval="3s", timeout="2500ms")
        ) as agent,
    ):
        for _ in range(3):
            seen = mute.accepted
            wait_for(lambda seen=seen: mute.accepted > seen, 30, interval=0.02, what="an SSH run")
            reloads = agent.log.read_text().count("configuration reloaded")
            agent.proc.send_signal(signal.SIGHUP)  # mid-job: the handshake waits on the silent target
            wait_for(
                lambda n=reloads: agent.log.read_text().count("configuration reloaded") > n, 30, what="reload"
            )
            time.sleep(0.2)
        seen = mute.accepted
        wait_for(lambda: mute.accepted > seen, 30, interval=0.02, what="an SSH run")
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.proc.wait(30) == 0
    text = agent.log.read_text()
    assert text.count("configuration reloaded") == 3
    assert log_problems(text) == [], text[-3000:]


def test_the_log_stays_clean_and_short_under_every_hostile_peer_at_once(tmp_path: Path) -> None:
    with silent_listener() as mute, echo_server() as receiver:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/api/v1/write"
        extra = ssh_config(tmp_path, mute.port) + (
            f'remote_write:\n  - {{name: echo, url: "{url}", bearer_token: {TOKEN}, max_backoff: 500ms}}\n'
        )
        with running_agent(tmp_path, extra_config=extra) as agent:
            attack = Slowloris("127.0.0.1", agent.port, 300, interval=1.0).start()
            try:
                for i in range(40):
                    header_flood("127.0.0.1", agent.port, 1_000_000)
                    reset_mid_request("127.0.0.1", agent.port, stage=i % 3)
                    assert agent.scraper().scrape_once()[1] == 200
                    time.sleep(0.3)
            finally:
                attack.stop()
            wait_for(lambda: mute.accepted >= 6, 60, what="SSH runs against the silent target")
    text = agent.log.read_text()
    assert log_problems(text) == [], text[-3000:]
    assert TOKEN not in text
    # Start-up and shut-down lines, one line for the silent SSH target and a few for the receiver's
    # rejections: nothing per connection, per run or per second.
    assert len(text.splitlines()) < 40, text
