"""The wall clock of the agent's process steps (libfaketime; its monotonic clock stays real), as chrony's
first sync, a dead RTC battery corrected at boot or an operator's ``date -s`` would do at a remote site.

APScheduler 3 schedules on the wall clock: before the fix a step back of one hour stopped every
collection for that hour while /metrics kept serving the last results as fresh, and a step forward of
a month made APScheduler walk every missed period on the event loop (minutes of CPU at 1 s intervals).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    GIAMSAT,
    CountingListener,
    free_port,
    http_get,
    parse_exposition,
    stop_process,
    wait_for,
)

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
N_TARGETS = 40


@pytest.fixture
def stepped_agent(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, CountingListener, str]]:
    if not LIBFAKETIME.exists():
        pytest.skip(f"{LIBFAKETIME} missing (Debian package faketime; scripts/test.sh installs it)")
    listener = CountingListener()
    targets = "\n".join(
        f"    - {{name: t{i}, site: tinh, address: 127.0.0.1, port: {listener.port}}}"
        for i in range(N_TARGETS)
    )
    config = tmp_path / "giamsat.yml"
    config.write_text(
        textwrap.dedent(
            f"""\
            agent: {{interval: 1s, timeout: 1s, state_dir: {tmp_path / "state"}}}
            sites:
              - {{id: tinh, name: Tỉnh, level: province}}
            collectors:
              host: {{enabled: false}}
            targets:
              tcp:
            """
        )
        + targets
        + "\n",
        encoding="utf-8",
    )
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    port = free_port()
    env = {
        **os.environ,
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    log = tmp_path / "agent.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [GIAMSAT, "run", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 20, what="agent ready")
        yield proc, offset, listener, url
    finally:
        stop_process(proc)
        listener.close()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in text, text[text.find("Traceback") - 200 :]


def test_step_back_an_hour_keeps_collecting(
    stepped_agent: tuple[subprocess.Popen[bytes], Path, CountingListener, str], tmp_path: Path
) -> None:
    _, offset, listener, url = stepped_agent
    assert listener.count_during(3) >= N_TARGETS  # every target probed about once a second
    offset.write_text("-1h\n")
    time.sleep(2.5)  # the agent notices within a second or two and reschedules
    after = listener.count_during(4)
    assert after >= 2 * N_TARGETS, f"only {after} probes in 4 s after the clock stepped back"
    log = (tmp_path / "agent.log").read_text(encoding="utf-8")
    assert "wall clock stepped" in log
    metrics = parse_exposition(http_get(url + "/metrics")[1])
    assert metrics["giamsat_clock_steps_total"] >= 1
    assert metrics['probe_success{probe="tcp",site="tinh",target="t0"}'] == 1


def test_step_forward_a_month_keeps_collecting(
    stepped_agent: tuple[subprocess.Popen[bytes], Path, CountingListener, str],
) -> None:
    _, offset, listener, url = stepped_agent
    assert listener.count_during(3) >= N_TARGETS
    offset.write_text("+30d\n")
    time.sleep(2.5)
    after = listener.count_during(4)
    assert after >= 2 * N_TARGETS, f"only {after} probes in 4 s after the clock jumped forward"
    status, body, _ = http_get(url + "/metrics")
    assert status == 200
    assert parse_exposition(body)['probe_success{probe="tcp",site="tinh",target="t0"}'] == 1
