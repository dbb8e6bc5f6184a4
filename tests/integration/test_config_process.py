"""A running agent meets bad configuration files: a reload keeps the old configuration, a start exits 2
naming the problem, never with a traceback."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers import http_post, wait_for
from tests.integration.test_agent_process import AgentProc, agent, fake_systemctl

__all__ = ["agent", "fake_systemctl"]  # fixtures


@pytest.mark.parametrize("text", ["", "# giamsat\n", "agent:\n  site: ti", "- a\n"])
def test_reload_with_an_empty_or_truncated_file_keeps_the_old_configuration(
    agent: AgentProc, text: str
) -> None:
    good = agent.config.read_text()
    state = agent.metrics()
    agent.config.write_text(text)
    status, body = http_post(agent.url + "/-/reload")
    assert status == 500, body
    m = agent.metrics()
    assert m["giamsat_config_last_reload_successful"] == 0
    # the old inventory and jobs are still served
    assert m['giamsat_site_info{site="xa-1",name="Xã Mường Phăng",level="commune",parent="tinh"}'] == 1
    assert m['giamsat_collector_success{collector="host",site="tinh",target=""}'] == 1
    assert {k for k in m if k.startswith("giamsat_site_info")} == {
        k for k in state if k.startswith("giamsat_site_info")
    }
    assert agent.proc is not None
    os.kill(agent.proc.pid, signal.SIGHUP)
    wait_for(lambda: agent.log.read_text().count("reload rejected") >= 2, 10, what="SIGHUP rejection")
    assert agent.proc.poll() is None
    agent.config.write_text(good)
    assert http_post(agent.url + "/-/reload")[0] == 200
    assert "Traceback" not in agent.log.read_text()


def test_start_with_an_empty_file_exits_2(tmp_path: Path) -> None:
    import subprocess

    from tests.helpers import GIAMSAT

    cfg = tmp_path / "giamsat.yml"
    cfg.write_text("")
    done = subprocess.run(
        [GIAMSAT, "run", "--config.file", str(cfg), "--web.listen-address", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{cfg}: (top level): the file is empty" in done.stderr
    assert "Traceback" not in done.stderr
