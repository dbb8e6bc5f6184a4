"""End to end: a simulated province in network namespaces, `giamsat run` probing it, a real Prometheus
evaluating the shipped rules. Cut a district: its SiteDown fires, its communes are unreachable without
alerts of their own, the never-connected commune is a coverage gap, the coverage ratios follow; restore
it and the alerts resolve. Every panel query of every shipped dashboard returns data meanwhile.

The shipped rules are used as they are except for their ``for:`` durations and the availability group's
interval, shortened in a test copy so the scenario runs in about two minutes. Interface and UPS panels
read a real snmpd in the district router's namespace through the agent's SNMP collector.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from collectors.probes.icmp_engine import IcmpEngine
from tests.helpers import GIAMSAT, ROOT, free_port, http_get, stop_process, wait_for

pytestmark = pytest.mark.root

RULES = ROOT / "deploy" / "prometheus" / "rules" / "giamsat.rules.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
# Address blocks of this module only (each 13 /24s from 198.19.<base>.0; 153 - 204 in all). Parallel test
# sessions each claim one (Province.claim): two provinces on one block share this host's routes, so one
# session probed the other's (cut) province, or lost its routes when the other tore down.
BASES = (153, 166, 179, 192)
VX_COMMUNES = ["vx-daoduc", "vx-phulinh", "vx-linhho"]
# Vị Xuyên's router and UPS answer SNMP: a real snmpd in its namespace (UPS-MIB values set with snmpd
# `override`), polled by the agent's own SNMP collector, so the interface and UPS panels have data.


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


province_mod = _load(ROOT / "deploy" / "demo" / "province.py", "giamsat_demo_province")
grafana_mod = _load(ROOT / "deploy" / "grafana" / "generate.py", "giamsat_grafana_generate")


def fast_rules(text: str) -> str:
    """The shipped rules with short ``for:`` and group intervals, nothing else changed."""
    text = re.sub(r"^(\s+)for: \S+$", r"\1for: 10s", text, flags=re.M)
    return re.sub(r"^(\s+)interval: 5m$", r"\1interval: 10s", text, flags=re.M)


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body, _ = http_get(f"{self.url}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=10)
        assert status == 200, body
        result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
        return result

    def query_range(self, expr: str, seconds: int = 300) -> list[dict[str, Any]]:
        end = time.time()
        q = urllib.parse.urlencode({"query": expr, "start": end - seconds, "end": end, "step": 5})
        status, body, _ = http_get(f"{self.url}/api/v1/query_range?{q}", timeout=10)
        assert status == 200, body
        result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
        return result

    def by_site(self, expr: str) -> dict[str, float]:
        return {r["metric"].get("site", ""): float(r["value"][1]) for r in self.query(expr)}

    def value(self, expr: str) -> float | None:
        r = self.query(expr)
        assert len(r) <= 1, r
        return float(r[0]["value"][1]) if r else None

    def firing(self, alertname: str) -> set[str]:
        return {
            r["metric"].get("site", "")
            for r in self.query(f'ALERTS{{alertname="{alertname}", alertstate="firing"}}')
        }


@pytest.fixture(scope="module")
def province() -> Iterator[Any]:
    prov = province_mod.Province.claim(f"gs{os.getpid()}e", BASES)
    prov.build()
    try:
        yield prov
    finally:
        prov.teardown()


@pytest.fixture(scope="module")
def stack(province: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prom, str, Path]]:
    tmp = tmp_path_factory.mktemp("sites-e2e")
    config = tmp / "giamsat.yml"
    config.write_text(province.config(tmp / "state", interval="2s"), encoding="utf-8")
    agent_port, prom_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        (tmp / "snmpd.conf").write_text(province.snmpd_conf())
        with (tmp / "snmpd.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        province.ns("a"),
                        "snmpd",
                        "-f",
                        "-Lo",
                        "-C",
                        "-c",
                        str(tmp / "snmpd.conf"),
                    ],
                    stdout=log,
                    stderr=log,
                )
            )
        with (tmp / "agent.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        GIAMSAT,
                        "run",
                        "--config.file",
                        str(config),
                        "--web.listen-address",
                        f"127.0.0.1:{agent_port}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
        _wait_ready(procs[-1], f"http://127.0.0.1:{agent_port}/-/ready", tmp / "agent.log")
        (tmp / "rules.yml").write_text(fast_rules(RULES.read_text(encoding="utf-8")), encoding="utf-8")
        (tmp / "prometheus.yml").write_text(
            "global: {scrape_interval: 2s, evaluation_interval: 2s}\n"
            "rule_files: [rules.yml]\n"
            "scrape_configs:\n"
            f"  - job_name: giamsat\n    static_configs: [{{targets: ['127.0.0.1:{agent_port}']}}]\n",
            encoding="utf-8",
        )
        with (tmp / "prometheus.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        "prometheus",
                        f"--config.file={tmp / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
        prom = Prom(f"http://127.0.0.1:{prom_port}")
        _wait_ready(procs[-1], prom.url + "/-/ready", tmp / "prometheus.log")
        yield prom, f"127.0.0.1:{agent_port}", tmp / "state" / "sites.json"
    finally:
        for p in reversed(procs):
            stop_process(p)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(
                f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}"
            )
        try:
            return http_get(url, timeout=2)[0] == 200
        except OSError:  # not listening yet
            return False

    deadline = time.monotonic() + 30
    while not ready():
        assert time.monotonic() < deadline, f"no answer from {url}"
        time.sleep(0.2)


def _route_dev(address: str) -> str:
    """The interface this host would send to ``address`` through (no packet is sent)."""
    out = subprocess.run(["ip", "-4", "route", "get", address], capture_output=True, text=True, check=False)
    m = re.search(r" dev (\S+)", out.stdout)
    return m.group(1) if m else f"no route ({out.stderr.strip()})"


async def _echo(address: str) -> int:
    engine = IcmpEngine()
    await engine.start()
    try:
        return (await engine.ping(address, count=1, timeout=2.0)).received
    finally:
        await engine.close()


def test_parallel_sessions_keep_their_own_province() -> None:
    """Two sessions of this module at once (the test suite run by several people on one machine) must
    not share a province's routes: with one fixed block, the second session's province took the first
    one's traffic, and its teardown deleted the first one's routes, so the first agent saw every
    district and commune fail at once (communes-up ratio 0 in the middle of the outage scenario)."""
    ours = province_mod.Province.claim(f"gs{os.getpid()}p", BASES)
    ours.build()
    try:
        theirs = province_mod.Province.claim(f"gs{os.getpid()}q", BASES)
        try:
            theirs.build()
            own_if = f"{ours.prefix}rh"
            # ours still routes through our own veth, not into the other session's province
            assert {_route_dev(a) for a in ours.address.values()} == {own_if}
        finally:
            theirs.teardown()
        # After the other session is gone, our routes are intact (checked before sending anything, so a
        # broken route cannot send a probe out of this host) and our communes still answer.
        commune = ours.address["bm-yenphu"]
        assert _route_dev(commune) == own_if
        assert asyncio.run(_echo(commune)) == 1
        assert set(theirs.address.values()).isdisjoint(ours.address.values())  # it had a block of its own
    finally:
        ours.teardown()


def _codes(prom: Prom) -> dict[str, float]:
    return prom.by_site("site:giamsat_site_state:code")


def test_cut_district_then_restore(stack: tuple[Prom, str, Path], province: Any) -> None:
    prom, agent_addr, state_file = stack
    all_up = {n.site: 1.0 for n in province_mod.NODES} | {"bm-lacnong": 4.0}

    # Steady state: everything up but the commune that was never connected.
    wait_for(lambda: _codes(prom) == all_up, 60, 1, what=f"steady states, last {_codes(prom)}")
    wait_for(lambda: prom.firing("SiteCoverageGap") == {"bm-lacnong"}, 60, 1, what="coverage gap alert")
    assert prom.value('province:giamsat_communes_up:ratio{province="hg"}') == pytest.approx(5 / 6)
    assert prom.value('province:giamsat_districts_up:ratio{province="hg"}') == 1
    assert prom.by_site(
        'label_replace(ancestor:giamsat_communes_up:ratio, "site", "$1", "ancestor", "(.+)")'
    ) == {
        "hg": pytest.approx(5 / 6),
        "vx": 1,
        "bm": pytest.approx(2 / 3),
    }
    assert prom.firing("SiteDown") == set()
    # the district router and its UPS answer SNMP through the agent's collector
    wait_for(lambda: prom.value('max(snmp_up{target="vx-router"})') == 1, 30, 1, what="SNMP router")
    assert prom.value('max(upsEstimatedChargeRemaining{site="vx", target="vx-ups"})') == 87
    assert prom.value('max(upsOutputSource{target="vx-ups", upsOutputSource="normal"})') == 1
    # first successes and the gap are on disk already (written at once, not on the minute)
    saved = json.loads(state_file.read_text(encoding="utf-8"))
    assert set(saved["last_up"]) == set(all_up) - {"bm-lacnong"}
    assert set(saved["tried_never_up"]) == {"bm-lacnong"}

    # Cut Vị Xuyên's link at the hub.
    province.cut("vx")
    cut_at = time.monotonic()
    try:
        wait_for(lambda: prom.firing("SiteDown") == {"vx"}, 120, 1, what="SiteDown for vx")
        print(
            f"\nSiteDown(vx) firing {time.monotonic() - cut_at:.1f}s after the cut (probe 2s, scrape 2s, for: 10s)"
        )
        codes = _codes(prom)
        assert {s: codes[s] for s in VX_COMMUNES} == dict.fromkeys(VX_COMMUNES, 3.0)  # unreachable
        assert codes["vx"] == 2 and codes["bm"] == 1 and codes["bm-lacnong"] == 4
        # Let the communes' own alerts have every chance to appear (their `for:` is as short as vx's),
        # then look back over the whole outage: none of them ever pended or fired.
        time.sleep(15)
        leaked = prom.query(
            f'max_over_time(ALERTS{{alertname=~"SiteDown|SiteUnreachable", site=~"{"|".join(VX_COMMUNES)}"}}[5m])'
        )
        assert leaked == []
        assert prom.firing("SiteCoverageGap") == {"bm-lacnong"}
        assert prom.value('province:giamsat_communes_up:ratio{province="hg"}') == pytest.approx(2 / 6)
        assert prom.value('province:giamsat_districts_up:ratio{province="hg"}') == 0.5
        assert prom.value('ancestor:giamsat_communes_up:ratio{ancestor="vx"}') == 0

        # Every panel of every dashboard has data now (outages and gaps included).
        values = {"province": "hg", "site": "vx", "instance": agent_addr}
        empty = []
        checked = 0
        for path in sorted(DASHBOARDS.glob("*.json")):
            board = json.loads(path.read_text(encoding="utf-8"))
            instant = {t["expr"] for p in board["panels"] for t in p.get("targets", []) if t.get("instant")}
            raw = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
            for (title, expr), raw_expr in zip(grafana_mod.panel_queries(board, values), raw, strict=True):
                checked += 1
                result = prom.query(expr) if raw_expr in instant else prom.query_range(expr)
                if not result:
                    empty.append(f"{path.name}: {title}: {expr}")
        assert empty == []
        assert checked >= 30
    finally:
        province.restore("vx")

    # Restored: states back, alerts resolve.
    restored_at = time.monotonic()
    wait_for(lambda: prom.firing("SiteDown") == set(), 120, 1, what="SiteDown resolved")
    print(f"SiteDown(vx) resolved {time.monotonic() - restored_at:.1f}s after the restore")
    wait_for(lambda: _codes(prom) == all_up, 60, 1, what="states after restore")
    assert prom.value('province:giamsat_communes_up:ratio{province="hg"}') == pytest.approx(5 / 6)
    assert prom.firing("SiteUnreachable") == set()
    # targets behind the cut were reported as down (data), never as broken collectors
    assert prom.query('max_over_time(ALERTS{alertname="CollectorFailing", alertstate="firing"}[10m])') == []
