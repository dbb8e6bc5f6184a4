"""Hostile SNMP agents polled hundreds of times: no descriptor, memory or log line may pile up.

Both engines poll fake agents on loopback that answer garbage, truncated or oversized datagrams, answers
for another request id, the request echoed back, broken inner types and tags, walks that loop, or
nothing. The garbage collector runs as rarely as in the agent (agent/lifecycle.py), so a socket held
by a reference cycle shows up as a descriptor that stays open.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections import Counter
from collections.abc import Iterator

import pytest

from collectors.snmp.client import (
    GufoClient,
    PysnmpClient,
    PysnmpEngines,
    SnmpClient,
    SnmpClientError,
    SnmpEndpoint,
)
from collectors.snmp.config import Auth
from tests.snmp_fakes import HOSTILE, FakeAgent

MODES = ("garbage", *HOSTILE, "loop", "silent")
WARMUP, ROUNDS = 10, 100  # polls per client: 2 x 100 per mode and engine are measured
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeAgent]]:
    agents = {m: FakeAgent(m).start() for m in MODES}
    try:
        yield agents
    finally:
        for a in agents.values():
            a.stop()


@pytest.fixture
def agent_gc() -> Iterator[None]:
    """The agent's garbage-collector thresholds (agent/lifecycle.py), restored after the test."""
    before = gc.get_threshold()
    gc.collect()
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def poll(client: SnmpClient, op: str) -> str:
    try:
        if op == "walk":
            await client.walk_many([IF_DESCR])
        else:
            await client.get([SYS_UPTIME])
    except SnmpClientError as exc:
        return exc.reason
    return "ok"


# gufo walks and GETs SNMPv1 its own way (GETNEXT, one OID per GET); pysnmp takes one path for both
@pytest.mark.parametrize(("engine", "version"), [("gufo", 1), ("gufo", 2), ("pysnmp", 2)])
@pytest.mark.usefixtures("agent_gc")
def test_hostile_agents_leak_nothing(
    fakes: dict[str, FakeAgent], engine: str, version: int, caplog: pytest.LogCaptureFixture
) -> None:
    auth = Auth(version=version, community="public")
    engines = PysnmpEngines()

    def client(mode: str) -> SnmpClient:
        ep = SnmpEndpoint("127.0.0.1", fakes[mode].port, auth, "hostile", timeout=0.05, retries=1)
        return GufoClient(ep) if engine == "gufo" else PysnmpClient(ep, engines.get("hostile"))

    async def run() -> tuple[Counter[tuple[str, str, str]], list[tuple[int, int]]]:
        clients = [(mode, op, client(mode)) for mode in MODES for op in ("get", "walk")]
        outcomes: Counter[tuple[str, str, str]] = Counter()
        marks: list[tuple[int, int]] = []
        for i in range(WARMUP + ROUNDS):
            if i >= WARMUP and (i - WARMUP) % 50 == 0:
                marks.append((open_fds(), rss_kib()))
            reasons = await asyncio.gather(*(poll(c, op) for _, op, c in clients))
            for (mode, op, _), reason in zip(clients, reasons, strict=True):
                outcomes[mode, op, reason] += 1
        marks.append((open_fds(), rss_kib()))
        for *_, c in clients:
            await c.close()
        engines.close()
        return outcomes, marks

    with caplog.at_level(logging.DEBUG):
        outcomes, marks = asyncio.run(run())

    assert outcomes["loop", "walk", "oid_loop"] > 0
    assert outcomes["garbage", "get", "ok"] == 0
    assert sum(outcomes.values()) == len(MODES) * 2 * (WARMUP + ROUNDS)
    fds = [f for f, _ in marks]
    rss = [r for _, r in marks]
    assert max(fds) == fds[0], f"descriptors while polling: {fds}"
    assert max(rss) - rss[0] < 4096, f"RSS (KiB) while polling: {rss}"
    # a datagram pysnmp cannot decode is dropped quietly: no asyncio traceback, no ERROR
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [r.getMessage() for r in loud[:3]]
