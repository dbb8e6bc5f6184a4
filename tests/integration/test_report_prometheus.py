"""The report from a real Prometheus (and a real VictoriaMetrics) gives the figures of the report from the
agent's own ledger.

The demo province in network namespaces, `giamsat run` probing it, a real Prometheus scraping the agent
every second, and VictoriaMetrics scraping it too. A district is cut with nftables, then restored; then `giamsat report` runs once with
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
from typing import Any, cast

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
                f"{cast(list[str], proc.args)[0]} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}"
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


def _report(out: Path, *args: str) -> dict[str, dict[str, str]]:
    r = subprocess.run(
        [GIAMSAT, "report", "--out", str(out), *args], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    return {r["Site"]: r for r in _csv(next(out.glob("*-sites.csv")))}


def test_prometheus_and_ledger_agree(province: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "giamsat.yml"
    # one echo per probe every 2 s instead of the demo's three (1 s apart, 2 s timeout), so a cut shows
    # within seconds; nothing else of the demo's configuration changes
    text = province.config(state, interval="2s", snmp=False)
    probe = "count: 3, packet_interval: 1s, packet_timeout: 2s"
    assert probe in text
    config.write_text(text.replace(probe, "count: 1, packet_timeout: 1s"), encoding="utf-8")
    agent_port, prom_port, vm_port = free_port(), free_port(), free_port()
    agent = f"127.0.0.1:{agent_port}"
    prom, vm = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{vm_port}"
    scrape = f"scrape_configs:\n  - job_name: giamsat\n    static_configs: [{{targets: ['{agent}']}}]\n"
    (tmp_path / "prometheus.yml").write_text(
        f"global: {{scrape_interval: {SCRAPE:.0f}s}}\n{scrape}", encoding="utf-8"
    )
    servers = {
        "prometheus": [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        "victoria-metrics": [
            "victoria-metrics",
            f"-httpListenAddr=127.0.0.1:{vm_port}",
            f"-storageDataPath={tmp_path / 'vmdata'}",
            f"-promscrape.config={tmp_path / 'prometheus.yml'}",
            "-search.disableCache",
            "-search.latencyOffset=0s",
        ],
    }
    ready = {"prometheus": prom + "/-/ready", "victoria-metrics": vm + "/health"}
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
        for name, argv in servers.items():
            with (tmp_path / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log))
            _ready(procs[-1], ready[name], tmp_path / f"{name}.log")
        connected = {n.site for n in province_mod.NODES if n.connected}
        wait_for(
            lambda: {s for s, v in _states(agent).items() if v == 1} == connected, 60, 0.5, what="all up"
        )

        def scraped(url: str) -> bool:
            q = "/api/v1/query?query=giamsat_site_up_seconds_total"
            status, body, _ = http_get(url + q)
            return status == 200 and "giamsat_site_up_seconds_total" in body

        for url in (prom, vm):
            wait_for(lambda url=url: scraped(url), 30, 0.5, what=f"first scrapes by {url}")
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
        time.sleep(3 * SCRAPE + 1)  # both servers have scraped past the end
        stop_process(procs[0], timeout=10)  # a clean stop: the ledger is complete up to now
        assert procs[0].returncode == 0

        period = ["--from", _iso(start), "--to", _iso(end), "--tz", "UTC", "--lang", "en"]
        ledger = _report(tmp_path / "ledger", "--state-dir", str(state), *period)
        from_servers = {
            "prometheus": _report(tmp_path / "prom", "--prometheus", prom, *period),
            "victoria-metrics": _report(tmp_path / "vm", "--prometheus", vm, *period),
        }
    finally:
        for p in reversed(procs):
            stop_process(p)

    seconds = [k for k in ledger["vx"] if k.endswith("(s)") and "MTTR" not in k]
    counts = [k for k in ledger["vx"] if k.startswith("Outages:")]
    assert len(seconds) == 5 and len(counts) == 4
    for name, server in from_servers.items():
        assert set(ledger) == set(server) == {n.site for n in province_mod.NODES}, name
        for sid in ledger:
            for k in counts:
                assert ledger[sid][k] == server[sid][k], (name, sid, k)
            for k in seconds:
                # each end of the period is read at the last scrape before it; integer seconds in the CSV
                assert abs(float(ledger[sid][k]) - float(server[sid][k])) <= SCRAPE + 1, (name, sid, k)
            assert ledger[sid]["State at end"] == server[sid]["State at end"], (name, sid)
    # the outage list: the same outages, their times as precise as the query step (15 s)
    rows = {
        name: _csv(next((tmp_path / d).glob("*-outages.csv")))
        for name, d in (
            ("ledger", "ledger"),
            *[(n, "prom" if n == "prometheus" else "vm") for n in from_servers],
        )
    }

    def key(r: dict[str, str]) -> tuple[str, str]:
        return r["Site"], r["Cause"]

    def ts(text: str) -> float:
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC).timestamp()

    assert sorted(map(key, rows["ledger"])) == [
        ("vx", "Own link"),
        ("vx-daoduc", "Upstream"),
        ("vx-linhho", "Upstream"),
        ("vx-phulinh", "Upstream"),
    ]
    for name in from_servers:
        assert sorted(map(key, rows[name])) == sorted(map(key, rows["ledger"])), name
        exact = {key(r): r for r in rows["ledger"]}
        for r in rows[name]:
            for col in ("Start", "End"):
                assert 0 <= ts(r[col]) - ts(exact[key(r)][col]) <= 15 + SCRAPE + 1, (name, r, col)
            assert r["down (s)"] == ""  # not known from counters
    # what happened, as the ledger tells it
    assert {s: r["State at end"] for s, r in ledger.items()} == {
        n.site: "up" if n.connected else "never connected" for n in province_mod.NODES
    }
    vx = ledger["vx"]
    assert vx["Outages: Own link"] == "1" and float(vx["down (s)"]) >= 8
    for c in ("vx-daoduc", "vx-phulinh", "vx-linhho"):
        assert ledger[c]["Outages: Upstream"] == "1", ledger[c]
    assert float(ledger["bm-lacnong"]["never connected (s)"]) == end - start
    assert ledger["hg"]["Availability (%)"] == "100.0000"
