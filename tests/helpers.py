"""Shared test helpers: free ports, waiting for servers, scraping, stopping processes by PID."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from prometheus_client.core import Metric

from agent.kernel.collector import Collector, Deadline, TargetConfig

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
GIAMSAT = str(VENV_BIN / "giamsat") if (VENV_BIN / "giamsat").exists() else "giamsat"


#: Debian's Chromium, headless, as the report and status-page tests run it: no sandbox (root in CI), no
#: GPU, and nothing that reaches the network on its own (QUIC, background fetches, updates, sync).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(
    url: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), dict(e.headers)


def http_post(url: str, timeout: float = 30.0) -> tuple[int, str]:
    req = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the server may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else "")
    )


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 5.0) -> None:
    """Stop by PID: SIGTERM, then SIGKILL if it does not go."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def parse_exposition(text: str) -> dict[str, float]:
    """'name{labels}' -> value for every sample line (labels kept verbatim, in exposition order)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if "}" in value or not key:
            continue
        out[key] = float(value)
    return out


LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")


@contextlib.contextmanager
def exclusive_addresses(block: str, timeout: float = 900.0) -> Iterator[None]:
    """Hold the machine-wide lock of a fixed test address block (e.g. ``198.18.30.0/23``) for as long
    as its addresses and routes exist in the host namespace.

    Another test session on the same machine (a helper's run, a fresh-clone check) that needs the
    block waits here, instead of adding the same addresses and routes and deleting the other's on
    teardown. ``flock``: the kernel releases it if the holder dies.
    """
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    path = LOCK_DIR / f"giamsat-test-{block.replace('/', '_')}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"test addresses {block} held by another test session for {timeout:.0f}s ({path})"
                    ) from None
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)


class CountingListener:
    """A TCP port on loopback that accepts and closes connections, counting them: the target of an
    agent's TCP probes when a test needs to see whether collection goes on."""

    def __init__(self, backlog: int = 512) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def count_during(self, seconds: float) -> int:
        start = self.accepted
        time.sleep(seconds)
        return self.accepted - start

    def close(self) -> None:
        self.sock.close()


async def collect_once(collector: Collector, target: TargetConfig | None) -> list[Metric]:
    """One ``collect`` with the deadline the scheduler would hand it (the target's timeout, else the
    collector's, else the agent's default of 10 s)."""
    timeout = (target.timeout if target is not None else None) or collector.settings.timeout or 10.0
    return await collector.collect(target, Deadline.after(timeout))


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 30) -> None:
    """Wait until ``url`` answers 200; fail at once, with the log's tail, if the process exits first."""

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"{cast(list[str], proc.args)[0]!r} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}"
            )
        try:
            return http_get(url, timeout=2)[0] == 200
        except OSError:  # not listening yet
            return False

    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"no answer from {url}"
        time.sleep(0.2)
