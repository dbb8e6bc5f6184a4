"""giamsat in snmp_exporter's place: a real Prometheus with the scrape job of snmp_exporter's README,
the request parameters it sends, a user's snmp.yml (0.21 layout, auth inside the module), on-demand
polls limited to an allow-list, and the scrape timeout header bounding an on-demand poll."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import http_get, wait_for
from tests.integration.test_agent_process import AgentProc
from tests.prom import prometheus, query
from tests.snmp_fakes import FakeAgent
from tests.snmpd import COMMUNITY, Snmpd

ORACLES = Path(__file__).resolve().parents[1] / "data" / "oracles" / "snmp_exporter"


@pytest.fixture(scope="module")
def devices() -> Iterator[tuple[Snmpd, Snmpd]]:
    """Two snmpd: one in the inventory, one only reachable through the on-demand allow-list."""
    a = Snmpd(sys_name="gs-inventory").start()
    b = Snmpd(sys_name="gs-on-demand").start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def _user_snmp_yml(path: Path) -> None:
    """A user's snmp.yml from snmp_exporter 0.21: upstream's if_mib under another name, auth inside."""
    mod = yaml.safe_load((ORACLES / "snmp-v0.21.0.yml").read_text())["if_mib"]
    mod.update(version=2, auth={"community": COMMUNITY})
    path.write_text(yaml.safe_dump({"my_if_mib": mod}, sort_keys=False))


def _agent(tmp: Path, inventory: Snmpd) -> AgentProc:
    _user_snmp_yml(tmp / "snmp.yml")
    return AgentProc(
        tmp,
        f"""
        agent:
          site: tinh
          interval: 2s
          timeout: 5s
          state_dir: {tmp / "state"}
        sites:
          - {{id: tinh, name: "Tỉnh", level: province}}
        collectors:
          snmp:
            module_files: [{tmp / "snmp.yml"}]
            auths:
              public_v2: {{version: 2, community: {COMMUNITY}}}
            on_demand:
              allow: [127.0.0.0/8]
        targets:
          snmp:
            - {{name: sw1, site: tinh, address: 127.0.0.1, port: {inventory.port}, auth: public_v2,
                modules: [system, if_mib]}}
        """,
    )


def test_prometheus_with_snmp_exporters_readme_job(tmp_path: Path, devices: tuple[Snmpd, Snmpd]) -> None:
    inventory, on_demand = devices
    agent = _agent(tmp_path, inventory)
    agent.start()
    try:
        # snmp_exporter's README job, unchanged but for the addresses
        job = textwrap.dedent(
            f"""
            global:
              scrape_interval: 1s
            scrape_configs:
              - job_name: 'snmp'
                static_configs:
                  - targets:
                    - 127.0.0.1:{inventory.port}  # SNMP device.
                    - 127.0.0.1:{on_demand.port}  # SNMP device.
                    - switch.local                # SNMP device.
                metrics_path: /snmp
                params:
                  auth: [public_v2]
                  module: [if_mib]
                relabel_configs:
                  - source_labels: [__address__]
                    target_label: __param_target
                  - source_labels: [__param_target]
                    target_label: instance
                  - target_label: __address__
                    replacement: 127.0.0.1:{agent.port}  # The SNMP exporter's real hostname:port.
            """
        )
        with prometheus(tmp_path / "prom", job) as prom:
            for dev in (inventory, on_demand):
                inst = f"127.0.0.1:{dev.port}"
                wait_for(
                    lambda inst=inst: query(
                        prom, f'ifOperStatus{{job="snmp",instance="{inst}",ifName="lo"}}'
                    ),
                    30,
                    what=f"ifOperStatus of {inst} in Prometheus",
                )
                got = query(prom, f'snmp_scrape_packets_sent{{job="snmp",instance="{inst}"}}')
                assert got and float(got[0]["value"][1]) > 0
                up = query(prom, f'up{{job="snmp",instance="{inst}"}}')
                assert up and up[0]["value"][1] == "1"
                # the label set snmp_exporter gives: no site/target on this endpoint (ifAlias is
                # empty on lo, and Prometheus drops empty labels)
                (series,) = query(prom, f'ifMtu{{job="snmp",instance="{inst}",ifName="lo"}}')
                assert set(series["metric"]) == {
                    "__name__",
                    "job",
                    "instance",
                    "ifIndex",
                    "ifName",
                    "ifDescr",
                }
            # a name outside the allow-list is refused (HTTP 403): Prometheus marks the scrape down
            wait_for(
                lambda: query(prom, 'up{job="snmp",instance="switch.local"} == 0'),
                30,
                what="switch.local down",
            )
    finally:
        agent.stop()


def test_request_parameters_and_on_demand(tmp_path: Path, devices: tuple[Snmpd, Snmpd]) -> None:
    inventory, on_demand = devices
    agent = _agent(tmp_path, inventory)
    silent = FakeAgent("silent").start()
    agent.start()
    try:
        wait_for(
            lambda: agent.metrics().get('snmp_up{site="tinh",target="sw1"}') == 1.0, 20, what="snmp_up 1"
        )
        url = agent.url + "/snmp"
        # several modules, comma-separated and repeated: the meta metrics carry `module`
        status, body, _ = http_get(f"{url}?target=127.0.0.1:{inventory.port}&module=system&module=if_mib")
        assert status == 200, body
        assert 'snmp_scrape_packets_sent{module="system"}' in body
        assert 'snmp_scrape_packets_sent{module="if_mib"}' in body
        assert 'sysName{sysName="gs-inventory"} 1.0' in body
        # a user's snmp.yml module (0.21 layout): no auth parameter, the module's own credentials
        status, body, _ = http_get(f"{url}?target=127.0.0.1:{on_demand.port}&module=my_if_mib", timeout=20)
        assert status == 200 and 'ifDescr="lo"' in body and "snmp_up 1.0" in body, body
        # snmp_exporter's refusals
        assert http_get(f"{url}?module=if_mib")[0] == 400
        assert http_get(f"{url}?target=a&target=b")[0] == 400
        assert http_get(f"{url}?target=127.0.0.1&module=nope")[0] == 400
        assert http_get(f"{url}?target=127.0.0.1&auth=nope")[0] == 400
        # outside the allow-list: nothing is sent
        status, text, _ = http_get(f"{url}?target=198.18.40.7&module=if_mib&auth=public_v2")
        assert status == 403 and "on_demand" in text
        # a dead device polled on demand: answered within Prometheus' scrape timeout, as data
        hdr = {"X-Prometheus-Scrape-Timeout-Seconds": "2"}
        status, body, _ = http_get(
            f"{url}?target=127.0.0.1:{silent.port}&auth=public_v2", timeout=8, headers=hdr
        )
        assert status == 200, body
        assert "snmp_up 0.0" in body and 'snmp_failure_reason{reason="timeout"} 1.0' in body
    finally:
        agent.stop()
        silent.stop()
    assert COMMUNITY not in agent.log.read_text()


def test_an_agent_with_only_on_demand_polls_serves_snmp(tmp_path: Path, devices: tuple[Snmpd, Snmpd]) -> None:
    """No targets.snmp at all (snmp_exporter's own setup): the collector still starts, for /snmp."""
    _, on_demand = devices
    agent = AgentProc(
        tmp_path,
        f"""
        agent:
          site: tinh
          state_dir: {tmp_path / "state"}
        sites:
          - {{id: tinh, name: "Tỉnh", level: province}}
        collectors:
          snmp:
            auths:
              public_v2: {{version: 2, community: {COMMUNITY}}}
            on_demand:
              allow: [127.0.0.0/8]
        """,
    )
    agent.start()
    try:
        wait_for(lambda: http_get(agent.url + "/-/ready")[0] == 200, 20, what="agent ready")
        url = f"{agent.url}/snmp?target=127.0.0.1:{on_demand.port}&module=system&auth=public_v2"
        status, body, _ = http_get(url, timeout=20)
        assert status == 200 and 'sysName{sysName="gs-on-demand"} 1.0' in body, body
        assert http_get(f"{agent.url}/snmp?target=198.18.40.7&module=system&auth=public_v2")[0] == 403
    finally:
        agent.stop()
