"""The shipped alertmanager.yml in a real Alertmanager: which alerts its inhibition rules hide."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port, http_get, stop_process, wait_for

CONFIG = ROOT / "deploy" / "prometheus" / "alertmanager.yml"


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with (tmp_path / "am.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={CONFIG}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip port: a single instance on loopback
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 20, what="alertmanager ready")
        yield url
    finally:
        stop_process(proc)


def _post(url: str, alerts: list[dict[str, str]]) -> None:
    now = datetime.now(UTC)
    body = [
        {"labels": labels, "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}
        for labels in alerts
    ]
    req = urllib.request.Request(
        url + "/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def _inhibited(url: str) -> dict[tuple[str, str], bool]:
    status, body, _ = http_get(url + "/api/v2/alerts", timeout=5)
    assert status == 200
    return {
        (a["labels"]["alertname"], a["labels"].get("site", a["labels"].get("instance", ""))): bool(
            a["status"]["inhibitedBy"]
        )
        for a in json.loads(body)
    }


def test_inhibition_rules(alertmanager: str) -> None:
    _post(
        alertmanager,
        [
            # a district down, with a link alert of its own and a host alert in one of its communes
            {
                "alertname": "SiteDown",
                "site": "vx",
                "level": "district",
                "district": "vx",
                "severity": "critical",
            },
            {"alertname": "LinkDegraded", "site": "vx", "district": "vx", "target": "vx-wan"},
            {"alertname": "HostDown", "site": "vx-daoduc", "district": "vx", "target": "srv"},
            # elsewhere: a commune with loss, a UPS on battery and low, a gap, a missing agent, a collector
            {"alertname": "LinkDegraded", "site": "bm-yenphu", "district": "bm", "target": "bm-yenphu-wan"},
            {"alertname": "UPSOnBattery", "site": "bm", "target": "ups1", "district": "bm"},
            {"alertname": "UPSBatteryLow", "site": "bm", "target": "ups1", "district": "bm"},
            {"alertname": "SiteCoverageGap", "site": "bm-lacnong", "district": "bm", "severity": "info"},
            {"alertname": "CollectorFailing", "site": "bm-lacnong", "district": "bm", "target": "x"},
            {"alertname": "AgentMissing", "instance": "10.0.0.10:9469", "job": "giamsat"},
            {"alertname": "CollectorFailing", "collector": "snmp", "site": "hg", "target": "y"},
        ],
    )
    # Inhibition is computed when the alerts are listed; give the API a moment to hold all ten.
    wait_for(lambda: len(_inhibited(alertmanager)) == 10, 10, what="alerts received")
    got = _inhibited(alertmanager)
    assert got == {
        ("SiteDown", "vx"): False,
        ("LinkDegraded", "vx"): True,  # same site as a SiteDown
        ("HostDown", "vx-daoduc"): True,  # same district as a district-level SiteDown
        ("LinkDegraded", "bm-yenphu"): False,
        ("UPSOnBattery", "bm"): True,  # a low battery says more
        ("UPSBatteryLow", "bm"): False,
        ("SiteCoverageGap", "bm-lacnong"): False,
        ("CollectorFailing", "bm-lacnong"): True,  # the site never worked
        ("AgentMissing", "10.0.0.10:9469"): False,
        ("CollectorFailing", "hg"): False,
    }


def _receivers(url: str) -> dict[tuple[str, str], str]:
    status, body, _ = http_get(url + "/api/v2/alerts/groups", timeout=5)
    assert status == 200
    return {
        (a["labels"]["alertname"], a["labels"].get("site", "")): g["receiver"]["name"]
        for g in json.loads(body)
        for a in g["alerts"]
    }


def test_pages_warnings_and_coverage_gaps_reach_separate_receivers(alertmanager: str) -> None:
    """Critical alerts page the on-call receiver; warnings go to the NOC chat; coverage gaps (info) to
    the inventory team, never to a phone."""
    _post(
        alertmanager,
        [
            {
                "alertname": "SiteDown",
                "site": "vx",
                "district": "vx",
                "level": "district",
                "severity": "critical",
            },
            {
                "alertname": "UPSBatteryLow",
                "site": "bm",
                "district": "bm",
                "target": "ups1",
                "severity": "critical",
            },
            {"alertname": "SiteUnreachable", "site": "hg-x", "district": "", "severity": "warning"},
            {"alertname": "LinkDegraded", "site": "bm-yenphu", "district": "bm", "severity": "warning"},
            {"alertname": "SiteCoverageGap", "site": "bm-lacnong", "district": "bm", "severity": "info"},
        ],
    )
    wait_for(lambda: len(_receivers(alertmanager)) == 5, 10, what="alerts grouped")
    assert _receivers(alertmanager) == {
        ("SiteDown", "vx"): "noc-oncall",
        ("UPSBatteryLow", "bm"): "noc-oncall",
        ("SiteUnreachable", "hg-x"): "noc-chat",
        ("LinkDegraded", "bm-yenphu"): "noc-chat",
        ("SiteCoverageGap", "bm-lacnong"): "inventory-team",
    }
