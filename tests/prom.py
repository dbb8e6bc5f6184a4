"""A real Prometheus (Debian's 2.x) on a free loopback port, stopped by PID."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import free_port, http_get, stop_process, wait_for

PROMETHEUS = "/usr/bin/prometheus"


@contextmanager
def prometheus(dir: Path, config: str) -> Iterator[str]:
    """Start Prometheus with ``config`` (YAML text); yields its base URL."""
    dir.mkdir(parents=True, exist_ok=True)
    cfg = dir / "prometheus.yml"
    cfg.write_text(config)
    port = free_port()
    log = (dir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 30, what="prometheus ready")
        yield url
    finally:
        stop_process(proc, timeout=10)
        log.close()


def query(url: str, expr: str) -> list[dict[str, Any]]:
    status, body, _ = http_get(url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result
