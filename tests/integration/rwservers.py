"""Real remote-write receivers for tests and benchmarks: Prometheus 2.x and VictoriaMetrics on loopback.

Each is started in its own temp directory on a free port and stopped by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def stop_pid(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class Receiver:
    """A receiver process that can be stopped (outage) and started again on the same port and data."""

    kind = "?"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.kind}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def write_url(self) -> str:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(self.argv(), stdout=logf, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if self.ready():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} not ready: {self.log.read_text()[-2000:]}")

    def ready(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        stop_pid(self.proc)
        self.proc = None


class PrometheusReceiver(Receiver):
    kind = "prometheus"

    def __init__(self, workdir: Path, port: int | None = None, ooo_window: str | None = "3d") -> None:
        super().__init__(workdir, port)
        self.ooo_window = ooo_window

    def argv(self) -> list[str]:
        cfg = self.workdir / "prometheus.yml"
        text = "global:\n  scrape_interval: 1h\n"
        if self.ooo_window:
            text += f"storage:\n  tsdb:\n    out_of_order_time_window: {self.ooo_window}\n"
        cfg.write_text(text)
        return [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            "--storage.tsdb.retention.time=30d",
        ]

    @property
    def write_url(self) -> str:
        return f"{self.base}/api/v1/write"

    def ready(self) -> bool:
        return _get(f"{self.base}/-/ready", 1).startswith(b"Prometheus")

    def series_samples(self, selector: str, window: str = "4d") -> dict[str, list[tuple[int, float]]]:
        """Raw samples per series (keyed by the ``series`` label) through a range-vector instant query."""
        q = urllib.parse.urlencode({"query": f"{selector}[{window}]", "time": f"{time.time() + 60:.3f}"})
        data = json.loads(_get(f"{self.base}/api/v1/query?{q}", 60))
        out: dict[str, list[tuple[int, float]]] = {}
        for r in data["data"]["result"]:
            key = r["metric"].get("series", json.dumps(r["metric"], sort_keys=True))
            out[key] = [(round(float(t) * 1000), float(v)) for t, v in r["values"]]
        return out


class VictoriaMetricsReceiver(Receiver):
    kind = "victoria-metrics"

    def __init__(self, workdir: Path, port: int | None = None, dedup: str | None = None) -> None:
        super().__init__(workdir, port)
        self.dedup = dedup

    def argv(self) -> list[str]:
        argv = [
            "victoria-metrics",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir / 'vmdata'}",
            "-retentionPeriod=100y",
            "-search.disableCache",
            "-search.latencyOffset=0s",
        ]
        if self.dedup:
            argv.append(f"-dedup.minScrapeInterval={self.dedup}")
        return argv

    @property
    def write_url(self) -> str:
        return f"{self.base}/api/v1/write"

    def ready(self) -> bool:
        return _get(f"{self.base}/health", 1).strip() == b"OK"

    def series_samples(self, selector: str, window: str = "") -> dict[str, list[tuple[int, float]]]:
        """Raw stored samples per series via /api/v1/export (duplicates included, unless dedup is on)."""
        _get(f"{self.base}/internal/force_flush", 30)
        q = urllib.parse.urlencode({"match[]": selector, "start": "0", "end": f"{time.time() + 3600:.0f}"})
        out: dict[str, list[tuple[int, float]]] = {}
        for line in _get(f"{self.base}/api/v1/export?{q}", 60).splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            key = r["metric"].get("series", json.dumps(r["metric"], sort_keys=True))
            pairs = sorted(zip(r["timestamps"], r["values"], strict=True))
            out.setdefault(key, []).extend((int(t), float(v)) for t, v in pairs)
        return out


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
