"""The report from a real Prometheus gives the figures of the report from the agent's own ledger.

The demo province in network namespaces, `giamsat run` probing it, a real Prometheus scraping the agent
every second. A district is cut with nftables, then restored; then `giamsat report` runs once with
``--state-dir`` (the ledger, exact) and once with ``--prometheus`` (the server's counters) over the same
period, and their CSV files agree: outage counts and causes exactly, seconds by state within one scrape
interval (the counters are read at the last scrape before each end of the period).
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import GIAMSAT, ROOT, free_port, http_get, parse_exposition, stop_process, wait_for

pytestmark = pytest.mark.root

# Address blocks of this module only (13 /24s each from 198.19.<base>.0: 100 - 138), claimed under a lock.
BASES = (100, 113, 126)
SCRAPE = 1.0


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


province_mod = _load(ROOT / "deploy" / "demo" / "province.py", "giamsat_demo_province_report")


def _ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(
                f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}"
            )
        try:
            return http_get(url, timeout=2)[0] == 200
        except OSError:
            return False

    wait_for(ready, 30, 0.2, what=url)


@pytest.fixture(scope="module")
def province() -> Iterator[Any]:
    prov = province_mod.Province.claim(f"gs{os.getpid()}r", BASES)
    prov.build()
    try:
        yield prov
    finally:
        prov.teardown()


def _states(agent: str) -> dict[str, float]:
    status, body, _ = http_get(f"http://{agent}/metrics")
    assert status == 200
    values = parse_exposition(body)
    return {
        k.split('site="')[1].split('"')[0]: v for k, v in values.items() if k.startswith("giamsat_site_up{")
    }


def _csv(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_prometheus_and_ledger_agree(province: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "giamsat.yml"
    config.write_text(province.config(state, interval="2s"), encoding="utf-8")
    agent_port, prom_port = free_port(), free_port()
    agent = f"127.0.0.1:{agent_port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (tmp_path / "agent.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [GIAMSAT, "run", "--config.file", str(config), "--web.listen-address", agent],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
        _ready(procs[0], f"http://{agent}/-/ready", tmp_path / "agent.log")
        (tmp_path / "prometheus.yml").write_text(
            f"global: {{scrape_interval: {SCRAPE:.0f}s, evaluation_interval: 10s}}\n"
            "scrape_configs:\n"
            f"  - job_name: giamsat\n    static_configs: [{{targets: ['{agent}']}}]\n",
            encoding="utf-8",
        )
        with (tmp_path / "prometheus.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        "prometheus",
                        f"--config.file={tmp_path / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
        prom = f"http://127.0.0.1:{prom_port}"
        _ready(procs[1], prom + "/-/ready", tmp_path / "prometheus.log")
        connected = {n.site for n in province_mod.NODES if n.connected}
        wait_for(
            lambda: {s for s, v in _states(agent).items() if v == 1} == connected, 60, 0.5, what="all up"
        )

        def scraped() -> bool:
            q = "/api/v1/query?query=giamsat_site_up_seconds_total"
            status, body, _ = http_get(prom + q)
            return status == 200 and "giamsat_site_up_seconds_total" in body

        wait_for(scraped, 30, 0.5, what="first scrapes")
        time.sleep(3 * SCRAPE)
        start = float(int(time.time()))
        time.sleep(4)
        province.cut("vx")
        try:
            wait_for(lambda: _states(agent).get("vx") == 0, 30, 0.5, what="vx down")
            time.sleep(8)
        finally:
            province.restore("vx")
        wait_for(
            lambda: {s for s, v in _states(agent).items() if v == 1} == connected, 60, 0.5, what="restored"
        )
        time.sleep(4)
        end = float(int(time.time()))
        time.sleep(3 * SCRAPE + 1)  # Prometheus has scraped past the end
        stop_process(procs[0], timeout=10)  # a clean stop: the ledger is complete up to now
    finally:
        for p in reversed(procs):
            stop_process(p)

    period = ["--from", _iso(start), "--to", _iso(end), "--tz", "UTC", "--lang", "en"]
    out_l, out_p = tmp_path / "ledger", tmp_path / "prom"
    r1 = subprocess.run(
        [GIAMSAT, "report", "--state-dir", str(state), "--out", str(out_l), *period],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r1.returncode == 0, r1.stderr
    # Prometheus was stopped with the agent: start it again on the same storage to read it.
    with (tmp_path / "prometheus2.log").open("wb") as log:
        prom_proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        _ready(prom_proc, prom + "/-/ready", tmp_path / "prometheus2.log")
        r2 = subprocess.run(
            [GIAMSAT, "report", "--prometheus", prom, "--out", str(out_p), *period],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        stop_process(prom_proc)
    assert r2.returncode == 0, r2.stderr
    ledger = {r["Site"]: r for r in _csv(next(out_l.glob("*-sites.csv")))}
    server = {r["Site"]: r for r in _csv(next(out_p.glob("*-sites.csv")))}
    assert set(ledger) == set(server) == {n.site for n in province_mod.NODES}
    seconds = [k for k in ledger["vx"] if k.endswith("(s)") and "MTTR" not in k]
    counts = [k for k in ledger["vx"] if k.startswith("Outages:")]
    assert len(seconds) == 5 and len(counts) == 4
    for sid in ledger:
        for k in counts:
            assert ledger[sid][k] == server[sid][k], (sid, k)
        for k in seconds:
            # each end of the period is read at the last scrape before it; integer seconds in the CSV
            assert abs(float(ledger[sid][k]) - float(server[sid][k])) <= SCRAPE + 1, (sid, k)
        assert (
            ledger[sid]["State at end"]
            == server[sid]["State at end"]
            == ("gap" if sid == "bm-lacnong" else "up")
        )
    # what happened, as the ledger tells it
    vx = ledger["vx"]
    assert vx["Outages: Own link"] == "1" and float(vx["down (s)"]) >= 8
    for c in ("vx-daoduc", "vx-phulinh", "vx-linhho"):
        assert ledger[c]["Outages: Upstream"] == "1", ledger[c]
    assert float(ledger["bm-lacnong"]["never connected (s)"]) == end - start
    assert ledger["hg"]["Availability (%)"] == "100.0000"
    dist_l = {r["District-era node"]: r for r in _csv(next(out_l.glob("*-districts.csv")))}
    dist_p = {r["District-era node"]: r for r in _csv(next(out_p.glob("*-districts.csv")))}
    assert {k: v["Ever connected"] for k, v in dist_l.items()} == {
        k: v["Ever connected"] for k, v in dist_p.items()
    }
    for name in dist_l:
        assert abs(float(dist_l[name]["Availability (%)"]) - float(dist_p[name]["Availability (%)"])) < 0.5
