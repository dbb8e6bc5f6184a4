"""`giamsat run` pushing its results to a real VictoriaMetrics through remote write, across reloads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import http_post, wait_for
from tests.integration.rwservers import VictoriaMetricsReceiver
from tests.integration.test_agent_process import AgentProc


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetricsReceiver]:
    r = VictoriaMetricsReceiver(tmp_path / "vm-work")
    r.workdir.mkdir()
    r.start()
    yield r
    r.stop()


CONFIG = """
agent:
  site: tinh
  interval: 1s
  state_dir: {state}
sites:
  - {{id: tinh, name: "Tỉnh Lai Châu", level: province}}
collectors:
  host:
    parts: [loadavg, meminfo]
remote_write:
  - name: central
    url: {url}
    external_labels: {{agent: lai-chau-1}}
    batch_send_deadline: 1s
"""


def test_agent_pushes_results_and_a_bad_reload_keeps_pushing(
    tmp_path: Path, vm: VictoriaMetricsReceiver
) -> None:
    agent = AgentProc(tmp_path, CONFIG.format(state=tmp_path / "state", url=vm.write_url))
    agent.start()
    try:
        selector = 'node_memory_MemTotal_bytes{site="tinh",agent="lai-chau-1"}'
        wait_for(lambda: vm.series_samples(selector), 30, what="host samples at the receiver")
        m = wait_for(
            lambda: (
                (x := agent.metrics()).get('giamsat_remote_write_samples_sent_total{remote="central"}', 0) > 0
                and x
            ),
            30,
            what="sent counter",
        )
        appended = m['giamsat_remote_write_samples_appended_total{remote="central"}']
        sent = m['giamsat_remote_write_samples_sent_total{remote="central"}']
        pending = m['giamsat_remote_write_samples_pending{remote="central"}']
        dropped = sum(v for k, v in m.items() if k.startswith("giamsat_remote_write_samples_dropped_total"))
        assert appended == sent + dropped + pending
        # A reload with a bad remote_write setting is rejected; the old sender keeps going.
        good = agent.config.read_text()
        bad = good.replace(
            "batch_send_deadline: 1s\n", "batch_send_deadline: 1s\n    max_samples_per_send: 0\n"
        )
        assert bad != good
        agent.config.write_text(bad)
        status, text = http_post(agent.url + "/-/reload")
        assert status == 500 and "remote_write[0].max_samples_per_send" in text, text
        before = len(vm.series_samples(selector)[next(iter(vm.series_samples(selector)))])
        wait_for(
            lambda: len(next(iter(vm.series_samples(selector).values()))) > before + 1,
            30,
            what="samples still arriving after the rejected reload",
        )
        assert agent.metrics()["giamsat_config_last_reload_successful"] == 0
    finally:
        agent.stop()
    # The buffer lives in the state directory and is released on a clean stop.
    assert (tmp_path / "state" / "remote_write" / "central").is_dir()
