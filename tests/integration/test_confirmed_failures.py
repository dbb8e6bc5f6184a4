"""Confirmed failures against a real lossy link (nftables drops in a network namespace): a round that
loses every echo is followed by a burst, so random loss never reports a working link down; a dead link
is reported down after 9 lost echoes; a TCP uplink whose SYN is lost once is retried before it fails."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import load_config
from agent.kernel.pipeline import Pipeline
from agent.kernel.results import JobResult
from agent.kernel.store import Store
from agent.scheduler import Runner
from tests.helpers import exclusive_addresses, stop_process
from tests.integration.probes_support import (
    LAB_BLOCK,
    TARGET_IP,
    Lab,
    destroy_lab,
    make_lab,
    value,
    write_config,
)

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with exclusive_addresses(LAB_BLOCK):
        lab = make_lab()
        try:
            yield lab
        finally:
            destroy_lab(lab)


def _rounds(path: Path, rounds: int) -> list[JobResult]:
    """``rounds`` rounds of every job through one real runner (so each round sees the previous one)."""

    async def go() -> list[JobResult]:
        runner = Runner(load_config(path), Pipeline(Store()))
        await runner.open()
        out: list[JobResult] = []
        try:
            for _ in range(rounds):
                # targets' results only: default-on kinds (host, textfile) run beside them
                out += [r for r in await runner.run_once() if r.target is not None]
        finally:
            await runner.close()
        return out

    return asyncio.run(go())


def _syns(lab: Lab) -> int:
    """Packets the SYN counter rule in the target's namespace has seen."""
    out = subprocess.run(
        ["ip", "netns", "exec", lab.target, "nft", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"counter packets (\d+)", out)
    assert m, out
    return int(m.group(1))


def _icmp(tmp: Path, n: int, confirm: int | None = None) -> Path:
    targets = [
        {"name": f"wan{i}", "address": TARGET_IP, "count": 1, "packet_timeout": "500ms"} for i in range(n)
    ]
    tmp.mkdir(parents=True, exist_ok=True)
    collectors = {} if confirm is None else {"icmp": {"confirm_echoes": confirm}}
    return write_config(tmp, {"icmp": targets}, collectors)


def test_random_loss_never_reports_a_working_link_down(lab: Lab, tmp_path: Path) -> None:
    # 30 % of echo requests dropped at random. One echo per round: without confirmation about 30 % of
    # rounds say down; with the shipped burst (9 echoes in all) a round says down with p = 0.3**9 = 2e-5.
    lab.nft(lab.target, "input", "icmp type echo-request numgen random mod 100 < 30 drop")
    try:
        confirmed = _rounds(_icmp(tmp_path / "a", 20), 5)
        bare = _rounds(_icmp(tmp_path / "b", 20, confirm=0), 2)
    finally:
        lab.flush_nft(lab.target)
    assert len(confirmed) == 100
    assert all(value(r.families, "probe_success") == 1 for r in confirmed)
    burst = [r for r in confirmed if (value(r.families, "probe_icmp_packets_sent") or 0) > 1]
    assert burst, "no round lost its echo: the drop rule did not apply"
    assert all(value(r.families, "probe_icmp_packets_sent") == 9 for r in burst)
    down = [r for r in bare if value(r.families, "probe_success") == 0]
    assert len(down) >= 3  # ~12 expected: the same loss without confirmation does report down
    print(f"\n30% loss: {len(burst)}/100 rounds confirmed by a burst, 0 down; without: {len(down)}/40 down")


def test_a_dead_link_is_down_after_nine_lost_echoes(lab: Lab, tmp_path: Path) -> None:
    lab.nft(lab.target, "input", "icmp type echo-request drop")
    try:
        started = time.monotonic()
        (r,) = _rounds(_icmp(tmp_path, 1), 1)
        took = time.monotonic() - started
    finally:
        lab.flush_nft(lab.target)
    assert r.success and r.link is not None and not r.link.up and r.link.reason == "timeout"
    assert value(r.families, "probe_success") == 0
    assert value(r.families, "probe_icmp_packets_sent") == 9
    assert value(r.families, "probe_icmp_packet_loss_ratio") == 1
    print(f"\ndead link: reported down after {took:.1f}s (1 echo + 8-echo burst, 500ms reply window)")


def test_a_lost_syn_is_retried_before_the_tcp_uplink_fails(lab: Lab, tmp_path: Path) -> None:
    """Every other SYN to the port is dropped (a counter, not chance): each round's first connect
    times out before the kernel resends, the retry gets through. Every round is up; with the port
    closed for good, the round fails after its retry."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.target, sys.executable, "-m", "http.server", "--bind", TARGET_IP, "8080"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        cfg = write_config(
            tmp_path, {"tcp": [{"name": "wan", "address": TARGET_IP, "port": 8080, "timeout": "700ms"}]}
        )
        deadline = time.monotonic() + 10
        while value(_rounds(cfg, 1)[0].families, "probe_success") != 1:  # the server is listening
            assert time.monotonic() < deadline, "http.server did not start"
        syn = "tcp dport 8080 tcp flags & (syn | ack) == syn"
        lab.nft(lab.target, "input", f"{syn} counter", f"{syn} numgen inc mod 2 == 0 drop")
        try:
            results = _rounds(cfg, 4)
            alternating = _syns(lab)
            lab.flush_nft(lab.target)
            lab.nft(lab.target, "input", f"{syn} counter", "tcp dport 8080 drop")
            closed = _rounds(cfg, 3)
            dead = _syns(lab)
        finally:
            lab.flush_nft(lab.target)
        assert [value(r.families, "probe_success") for r in results] == [1, 1, 1, 1]
        assert alternating == 8  # every round: one lost SYN, one retry that got through
        assert [value(r.families, "probe_success") for r in closed] == [0, 0, 0]
        assert dead == 2 + 1 + 1  # retried once when it started failing, not in every round of the outage
    finally:
        stop_process(server)
