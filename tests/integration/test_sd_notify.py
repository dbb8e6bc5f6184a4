"""sd_notify end to end: `giamsat run` as systemd starts it (NOTIFY_SOCKET, WATCHDOG_USEC), heard on a real
unix datagram socket bound by the test, the way systemd's notify socket receives it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import GIAMSAT, free_port, stop_process

CONFIG = """
agent:
  site: here
  interval: 1s
  timeout: 1s
  state_dir: {state}
sites:
  - id: here
    name: Here
    level: province
collectors:
  host: {{}}
"""


def receive_until(sock: socket.socket, wanted: str, deadline: float, seen: list[str]) -> None:
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.extend(data.splitlines())
        if wanted in data.splitlines():
            return
    raise AssertionError(f"never received {wanted}; got {seen}")


def test_ready_then_watchdog_then_stopping(tmp_path: Path) -> None:
    cfg = tmp_path / "giamsat.yml"
    cfg.write_text(CONFIG.format(state=tmp_path / "state"))
    addr = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(addr))
    env = dict(os.environ, NOTIFY_SOCKET=str(addr), WATCHDOG_USEC="400000")
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [GIAMSAT, "run", "--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{free_port()}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seen: list[str] = []
    try:
        receive_until(sock, "READY=1", time.monotonic() + 30, seen)
        after_ready = len(seen)
        receive_until(sock, "WATCHDOG=1", time.monotonic() + 10, seen)
        assert "WATCHDOG=1" in seen[after_ready:]
        os.kill(proc.pid, signal.SIGTERM)
        receive_until(sock, "STOPPING=1", time.monotonic() + 10, seen)
        assert proc.wait(15) == 0
    finally:
        stop_process(proc)
        if proc.stderr:
            proc.stderr.close()
        sock.close()


def test_no_watchdog_for_another_pid(tmp_path: Path) -> None:
    """WATCHDOG_PID naming another process means the watchdog is not ours: READY only, no WATCHDOG."""
    cfg = tmp_path / "giamsat.yml"
    cfg.write_text(CONFIG.format(state=tmp_path / "state"))
    addr = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(addr))
    env = dict(os.environ, NOTIFY_SOCKET=str(addr), WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    proc = subprocess.Popen(
        [GIAMSAT, "run", "--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{free_port()}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: list[str] = []
    try:
        receive_until(sock, "READY=1", time.monotonic() + 30, seen)
        os.kill(proc.pid, signal.SIGTERM)
        receive_until(sock, "STOPPING=1", time.monotonic() + 10, seen)
        assert "WATCHDOG=1" not in seen
    finally:
        stop_process(proc)
        sock.close()
