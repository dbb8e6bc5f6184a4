"""The NTP collector against a real chronyd on loopback, against hostile answers, and inside the agent.

chronyd runs as an unprivileged-port server with its own configuration in a temporary directory: ``-x``
so it never touches this machine's clock, no command sockets, serving its own clock at stratum 8. It is
started and stopped by PID.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.core import Metric

from agent.kernel.collector import BlockingRunner, CollectorContext
from collectors.ntp import NtpCollector
from collectors.ntp.settings import NtpSettings, NtpTarget
from tests.helpers import (
    GIAMSAT,
    ROOT,
    collect_once,
    free_port,
    http_get,
    parse_exposition,
    stop_process,
    wait_for,
)
from tests.ntp_packets import server_packet

CHRONY_CONF = """\
port {port}
bindaddress 127.0.0.1
bindaddress ::1
allow 127.0.0.1
allow ::1
local stratum 8
cmdport 0
bindcmdaddress /
pidfile {tmp}/chronyd.pid
driftfile {tmp}/chrony.drift
"""


@pytest.fixture(scope="module")
def chrony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A chronyd serving NTP on 127.0.0.1 and ::1 at a free UDP port (returned)."""
    tmp = tmp_path_factory.mktemp("chrony")
    port = free_port(socket.SOCK_DGRAM)
    conf = tmp / "chrony.conf"
    conf.write_text(CHRONY_CONF.format(port=port, tmp=tmp), encoding="utf-8")
    user = pwd.getpwuid(os.getuid()).pw_name  # as root it would switch to _chrony, who cannot write tmp
    with (tmp / "chronyd.log").open("wb") as log:
        proc = subprocess.Popen(["chronyd", "-x", "-d", "-u", user, "-f", str(conf)], stdout=log, stderr=log)
    try:
        wait_for(lambda: _answers(port) or proc.poll() is not None, 10, what="chronyd answering")
        assert proc.poll() is None, (tmp / "chronyd.log").read_text()
        yield port
    finally:
        stop_process(proc)


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(bytes(((4 << 3) | 3,)) + bytes(47), ("127.0.0.1", port))
        try:
            return len(s.recv(100)) >= 48
        except OSError:
            return False


def make_collector(tmp_path: Path, **settings: Any) -> NtpCollector:
    ctx = CollectorContext(
        kind="ntp",
        state_dir=tmp_path,
        blocking=BlockingRunner("gs-test-ntp", 1),
        log=logging.getLogger("giamsat.collector.ntp"),
    )
    return NtpCollector(NtpSettings.model_validate(settings), ctx)


def target(port: int, address: str = "127.0.0.1", **kw: Any) -> NtpTarget:
    return NtpTarget.model_validate({"name": "ntp-t", "site": "s1", "address": address, "port": port, **kw})


def collect(c: NtpCollector, *targets: NtpTarget) -> list[dict[str, float]]:
    async def run() -> list[list[Metric]]:
        try:
            return [await collect_once(c, t) for t in targets]
        finally:
            await c.close()

    return [_values(fams) for fams in asyncio.run(run())]


def _values(families: list[Metric]) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam in families:
        for s in fam.samples:
            out[s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items()))] = s.value
    return out


def test_offset_stratum_and_leap_from_a_real_chronyd(chrony: int, tmp_path: Path) -> None:
    before = time.time()
    v4, v6, by_name = collect(
        make_collector(tmp_path),
        target(chrony),
        target(chrony, address="::1"),
        target(chrony, address="localhost", ip_protocol="ip4"),  # through the resolver
    )
    assert v4["ntp_up"] == 1 and v6["ntp_up"] == 1 and by_name["ntp_up"] == 1
    # one clock on both sides: the offset is within the round trip (an epoch or era slip would be years)
    assert abs(v4["ntp_offset_seconds"]) < 0.1
    assert 0 <= v4["ntp_rtt_seconds"] < 1
    assert v4["ntp_stratum"] == 8  # `local stratum 8`
    assert v4["ntp_leap"] == 0
    assert v4["ntp_root_delay_seconds"] >= 0 and v4["ntp_root_dispersion_seconds"] >= 0
    assert before - 3600 < v4["ntp_reference_timestamp_seconds"] <= time.time() + 1
    assert not any(k.startswith("ntp_failure_reason") for k in v4)
    assert collect(make_collector(tmp_path, version=3), target(chrony))[0]["ntp_up"] == 1


class HostileServer:
    """A UDP port on loopback answering each request with what ``answer(cookie)`` returns (zero or more
    datagrams): what a spoofer, a confused middlebox or a rate-limiting server sends."""

    def __init__(self, answer: Callable[[bytes], list[bytes]]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            for reply in self.answer(data[40:48]):
                self.sock.sendto(reply, peer)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda c: [], "timeout"),  # nobody answers
        (lambda c: [server_packet(bytes(8))], "bad_origin"),  # only stale or spoofed answers
        (lambda c: [server_packet(c)[:40]], "short_packet"),
        (lambda c: [server_packet(c, stratum=0, refid=b"RATE")], "kod_rate"),
        (lambda c: [server_packet(c, stratum=0, refid=b"X\n\x00y")], "kod"),
        (lambda c: [server_packet(c, leap=3)], "unsynchronised"),
        (lambda c: [server_packet(c, mode=3)], "bad_mode"),
    ],
)
def test_a_hostile_or_silent_server_is_data(answer: Callable[[bytes], list[bytes]], reason: str, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    server = HostileServer(answer)
    try:
        with caplog.at_level(logging.INFO, logger="giamsat.collector.ntp"):
            got = collect(make_collector(tmp_path), *[target(server.port, timeout="1s")] * 3)
    finally:
        server.close()
    for values in got:
        assert values["ntp_up"] == 0
        assert values[f"ntp_failure_reason{{reason={reason}}}"] == 1
        assert "ntp_offset_seconds" not in values
    # one log line when the failure starts, none while it goes on; never a traceback
    [record] = [r for r in caplog.records if r.name == "giamsat.collector.ntp"]
    assert record.getMessage() == "ntp server failing" and record.exc_info is None
    assert record.__dict__["reason"] == reason


def test_the_real_answer_after_a_spoofed_one_is_taken(tmp_path: Path) -> None:
    server = HostileServer(
        lambda c: [
            server_packet(b"spoofed!"),
            server_packet(c, received=time.time(), transmitted=time.time(), stratum=3),
        ]
    )
    try:
        [values] = collect(make_collector(tmp_path), target(server.port, timeout="2s"))
    finally:
        server.close()
    assert values["ntp_up"] == 1 and values["ntp_stratum"] == 3


# -- inside the agent --------------------------------------------------------------------------------


def example_config(tmp_path: Path, chrony: int, silent: int) -> Path:
    """config/ntp.example.yml with loopback servers: the province's and the district's are the chronyd,
    the backup (a host name) is a UDP port where nobody answers."""
    doc = yaml.safe_load((ROOT / "config" / "ntp.example.yml").read_text(encoding="utf-8"))
    doc["agent"].update(state_dir=str(tmp_path / "state"), interval="1s", timeout="2s")
    tinh, huyen, backup = doc["targets"]["ntp"]
    tinh.update(address="127.0.0.1", port=chrony)
    huyen.update(address="127.0.0.1", port=chrony)
    backup.update(address="localhost", port=silent)
    path = tmp_path / "giamsat.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def test_the_agent_serves_ntp_targets_and_takes_them_as_site_uplinks(chrony: int, tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    cfg = example_config(tmp_path, chrony, silent.getsockname()[1])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [GIAMSAT, "run", "--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 20, what="agent ready")
        runs: set[float] = set()

        def three_runs_of_the_backup() -> bool:
            m = parse_exposition(http_get(url + "/metrics")[1])
            key = 'giamsat_collector_last_success_timestamp_seconds{collector="ntp",site="tinh",target="tinh-ntp-backup"}'
            if key in m:
                runs.add(m[key])
            return len(runs) >= 3

        wait_for(three_runs_of_the_backup, 30, what="three runs of the silent target")
        status, body, _ = http_get(url + "/metrics")
        assert status == 200
        m = parse_exposition(body)
        assert m['ntp_up{site="tinh",target="tinh-ntp"}'] == 1
        assert m['ntp_stratum{site="tinh",target="tinh-ntp"}'] == 8
        assert abs(m['ntp_offset_seconds{site="tinh",target="tinh-ntp"}']) < 0.1
        assert m['ntp_up{site="huyen-a",target="huyen-a-ntp"}'] == 1
        assert m['ntp_up{site="tinh",target="tinh-ntp-backup"}'] == 0
        assert m['ntp_failure_reason{reason="timeout",site="tinh",target="tinh-ntp-backup"}'] == 1
        # a down server is data, not a broken collector
        assert m['giamsat_collector_success{collector="ntp",site="tinh",target="tinh-ntp-backup"}'] == 1
        # the district's NTP server is its uplink: site state reads ntp_up through the collector contract
        wait_for(lambda: parse_exposition(http_get(url + "/metrics")[1]).get('giamsat_site_up{site="huyen-a"}') == 1,
                 10, what="site huyen-a up")  # fmt: skip
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
        )
        assert [ln for ln in (lint.stdout + lint.stderr).splitlines() if ln.strip()] == []

        status, body, _ = http_get(url + "/probe?target=tinh-ntp&module=ntp")
        assert status == 200 and parse_exposition(body)["ntp_up"] == 1
        assert http_get(url + "/probe?target=127.0.0.1&module=ntp")[0] == 404  # only configured targets
    finally:
        stop_process(proc)
        silent.close()
    log_text = log_path.read_text(encoding="utf-8")
    failing = [ln for ln in log_text.splitlines() if "ntp server failing" in ln]
    assert len(failing) == 1 and "target=tinh-ntp-backup" in failing[0] and "reason=timeout" in failing[0]
    assert "Traceback" not in log_text


def test_doctor_names_the_silent_server_and_its_fix(chrony: int, tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        cfg = example_config(tmp_path, chrony, silent.getsockname()[1])
        out = subprocess.run(
            [GIAMSAT, "doctor", "--config.file", str(cfg)], capture_output=True, text=True, timeout=60
        )
    finally:
        silent.close()
    assert out.returncode == 1, out.stdout + out.stderr
    rows = {ln.split()[0]: ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("ntp/")}
    assert rows == {"ntp/tinh-ntp": "PASS", "ntp/huyen-a-ntp": "PASS", "ntp/tinh-ntp-backup": "FAIL"}
    assert "target reports down: timeout" in out.stdout
    assert "UDP port 123" in out.stdout  # the ntp kind's own fix, not a generic one
    assert "Traceback" not in out.stderr


def test_one_line_when_a_server_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    answers = iter([b"RATE", b"RATE", None, None])

    def answer(cookie: bytes) -> list[bytes]:
        kiss = next(answers)
        if kiss is not None:
            return [server_packet(cookie, stratum=0, refid=kiss)]
        return [server_packet(cookie, received=time.time(), transmitted=time.time())]

    server = HostileServer(answer)
    try:
        with caplog.at_level(logging.INFO, logger="giamsat.collector.ntp"):
            got = collect(make_collector(tmp_path), *[target(server.port, timeout="2s")] * 4)
    finally:
        server.close()
    assert [v["ntp_up"] for v in got] == [0, 0, 1, 1]
    lines = [r.getMessage() for r in caplog.records if r.name == "giamsat.collector.ntp"]
    assert lines == ["ntp server failing", "ntp server answers again"]
