"""The NTP collector's pure parts: packets (hostile ones included), the clock arithmetic, its config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import load_config
from agent.kernel.errors import ConfigError
from collectors.ntp.packet import (
    NTP_UNIX_OFFSET,
    REASONS,
    Answer,
    PacketError,
    ntp_to_unix,
    offset_and_rtt,
    parse,
    request,
)
from collectors.ntp.settings import NtpSettings
from tests import ntp_packets
from tests.ntp_packets import ntp

ROOT = Path(__file__).resolve().parents[2]
COOKIE = bytes.fromhex("0123456789abcdef")


def server_packet(origin: bytes = COOKIE, **fields: Any) -> bytes:
    return ntp_packets.server_packet(origin, **fields)


def reason_of(data: bytes) -> str:
    with pytest.raises(PacketError) as info:
        parse(data, COOKIE)
    return info.value.reason


def test_request_is_a_client_packet_with_a_fresh_random_cookie() -> None:
    packet, cookie = request(4)
    assert len(packet) == 48
    assert packet[0] == (4 << 3) | 3  # no leap warning, version 4, mode 3 (client)
    assert packet[40:48] == cookie  # the transmit timestamp is the cookie, not our clock
    assert packet[:40] == bytes((packet[0],)) + bytes(39)
    assert request(3)[0][0] == (3 << 3) | 3
    assert len({request()[1] for _ in range(50)}) == 50


def test_a_server_answer_is_decoded() -> None:
    a = parse(server_packet(), COOKIE)
    assert (a.leap, a.version, a.stratum, a.poll, a.precision) == (0, 4, 2, 6, -20)
    assert a.root_delay == 0.25 and a.root_dispersion == 0.5
    assert a.reference_id == b"GPS\0"
    assert a.received == pytest.approx(1_800_000_000.5, abs=1e-6)
    assert a.transmitted == pytest.approx(1_800_000_000.75, abs=1e-6)
    assert a.reference == pytest.approx(1_800_000_000.75 - 64, abs=1e-6)
    # extension fields or a MAC after the header are allowed
    assert parse(server_packet() + bytes(20), COOKIE) == a
    # version 3 servers are answered too
    assert parse(server_packet(version=3), COOKIE).version == 3


def test_timestamps_after_2036_are_in_the_next_era() -> None:
    assert ntp_to_unix(ntp(time.time())) == pytest.approx(time.time(), abs=5)
    # 2036-02-07T06:28:16Z is second 0 of era 1; one second after it has the top bit clear
    assert ntp_to_unix(1 << 32) == pytest.approx(2**32 - NTP_UNIX_OFFSET + 1)


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (server_packet()[:47], "short_packet"),
        (b"", "short_packet"),
        (server_packet(origin=bytes(8)), "bad_origin"),  # a stale or spoofed answer
        (server_packet(origin=COOKIE[::-1]), "bad_origin"),
        (server_packet(mode=3), "bad_mode"),  # our own request reflected back
        (server_packet(mode=5), "bad_mode"),  # broadcast
        (server_packet(version=0), "bad_version"),
        (server_packet(version=7), "bad_version"),
        (server_packet(stratum=0, refid=b"RATE"), "kod_rate"),
        (server_packet(stratum=0, refid=b"DENY"), "kod_deny"),
        (server_packet(stratum=0, refid=b"\xff<a>"), "kod"),  # unknown codes never reach a label
        (server_packet(leap=3), "unsynchronised"),
        (server_packet(stratum=16), "unsynchronised"),
        (server_packet(transmitted=0), "bad_timestamps"),
        (server_packet(received=0), "bad_timestamps"),
        (server_packet(received=1_800_000_001.0), "bad_timestamps"),  # sent before it was received
        (server_packet(root_dispersion=17.0), "bad_root_distance"),
    ],
)
def test_unusable_answers_are_rejected_with_a_bounded_reason(packet: bytes, reason: str) -> None:
    assert reason_of(packet) == reason
    assert reason in REASONS or reason.startswith("kod_")


def test_nothing_is_believed_from_an_answer_that_is_not_ours() -> None:
    # a forged kiss-o'-death must not make us report that the server refuses us
    assert reason_of(server_packet(origin=bytes(8), stratum=0, refid=b"DENY")) == "bad_origin"


@given(st.binary(max_size=120))
def test_any_bytes_give_an_answer_or_a_packet_error(data: bytes) -> None:
    try:
        answer = parse(data, COOKIE)
    except PacketError as exc:
        assert exc.reason in REASONS or exc.reason.removeprefix("kod_").upper() in {
            "ACST", "AUTH", "AUTO", "BCST", "CRYP", "DENY", "DROP", "RSTR", "INIT", "MCST", "NKEY", "RATE",
            "RMOT", "STEP",
        }  # fmt: skip
    else:
        assert isinstance(answer, Answer)


def test_offset_and_round_trip() -> None:
    a = parse(server_packet(received=1_800_000_000.6, transmitted=1_800_000_000.7), COOKIE)
    # we sent at .0 and heard back at .3 by our clock: the server is half a second ahead, 0.2 s on the wire
    offset, rtt = offset_and_rtt(a, 1_800_000_000.0, 1_800_000_000.3)
    assert offset == pytest.approx(0.5, abs=1e-6)
    assert rtt == pytest.approx(0.2, abs=1e-6)


def test_the_example_config_is_valid() -> None:
    loaded = load_config(ROOT / "config" / "ntp.example.yml")
    targets = loaded.config.targets_of("ntp")
    assert [t.name for t in targets] == ["tinh-ntp", "huyen-a-ntp", "tinh-ntp-backup"]
    settings = loaded.config.collector_settings("ntp")
    assert isinstance(settings, NtpSettings) and settings.version == 4


def test_a_misspelt_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    text = (ROOT / "config" / "ntp.example.yml").read_text(encoding="utf-8")
    cfg = tmp_path / "giamsat.yml"
    cfg.write_text(text.replace("      port: 123", "      prot: 123"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    [problem] = info.value.problems
    assert problem.key == "targets.ntp[0].prot" and problem.line is not None
    cfg.write_text(text.replace("version: 4 ", "version: 2 "), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert [p.key for p in info.value.problems] == ["collectors.ntp.version"]
