"""A power cut seen through the real SNMP path: Vị Xuyên's UPS (a real snmpd in its router's namespace,
UPS-MIB ``upsOutputSource`` = battery) is polled by the agent's SNMP collector; then the district's link
goes (nftables): its outage is counted as ``power``, its communes' as ``upstream``."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import GIAMSAT, free_port, http_get, parse_exposition, stop_process, wait_for
from tests.integration.test_report_prometheus import BASES, _ready, province_mod

pytestmark = pytest.mark.root


def _metrics(agent: str) -> dict[str, float]:
    status, body, _ = http_get(f"http://{agent}/metrics")
    assert status == 200
    return parse_exposition(body)


def test_outage_after_ups_on_battery_is_power(tmp_path: Path) -> None:
    province: Any = province_mod.Province.claim(f"gs{os.getpid()}w", BASES)
    province.build()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # the UPS at Vị Xuyên runs on battery (upsOutputSource 5); its battery is fine
        conf = province.snmpd_conf().replace(
            ".1.3.6.1.2.1.33.1.4.1.0 integer 3", ".1.3.6.1.2.1.33.1.4.1.0 integer 5"
        )
        (tmp_path / "snmpd.conf").write_text(conf, encoding="utf-8")
        with (tmp_path / "snmpd.log").open("wb") as log:
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
                        str(tmp_path / "snmpd.conf"),
                    ],
                    stdout=log,
                    stderr=log,
                )
            )
        text = province.config(tmp_path / "state", interval="2s")
        probe = "count: 3, packet_interval: 1s, packet_timeout: 2s"
        assert probe in text
        (tmp_path / "giamsat.yml").write_text(
            text.replace(probe, "count: 1, packet_timeout: 1s"), encoding="utf-8"
        )
        agent = f"127.0.0.1:{free_port()}"
        with (tmp_path / "agent.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        GIAMSAT,
                        "run",
                        "--config.file",
                        str(tmp_path / "giamsat.yml"),
                        "--web.listen-address",
                        agent,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
        _ready(procs[-1], f"http://{agent}/-/ready", tmp_path / "agent.log")

        def on_battery() -> bool:
            return any(
                k.startswith("upsOutputSource{")
                and 'upsOutputSource="battery"' in k
                and 'site="vx"' in k
                and v == 1
                for k, v in _metrics(agent).items()
            )

        wait_for(on_battery, 60, 0.5, what="the UPS on battery, over SNMP")
        wait_for(lambda: _metrics(agent).get('giamsat_site_up{site="vx"}') == 1, 60, 0.5, what="vx up")
        province.cut("vx")
        try:
            wait_for(
                lambda: _metrics(agent).get('giamsat_site_outages_total{site="vx",cause="power"}') == 1,
                60,
                0.5,
                what="a power outage at vx",
            )
            time.sleep(4)
        finally:
            province.restore("vx")
        m = _metrics(agent)
        assert not [k for k in m if k.startswith('giamsat_site_outages_total{site="vx"') and "power" not in k]
        for c in ("vx-daoduc", "vx-phulinh", "vx-linhho"):
            assert m.get(f'giamsat_site_outages_total{{site="{c}",cause="upstream"}}') == 1, c
    finally:
        for p in reversed(procs):
            stop_process(p)
        province.teardown()
