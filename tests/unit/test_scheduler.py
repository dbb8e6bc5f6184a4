"""Scheduling: a hung, raising or overrunning collector only affects its own result."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from agent.config import build_config
from agent.errors import CollectError
from agent.scheduler import Job, Runner
from agent.store import Store
from collectors.base import BlockingRunner, Collector, CollectorContext, CollectorSettings, TargetConfig


class Scripted(Collector):
    """A collector whose behaviour the test sets: ok, sleep, raise, or block a thread."""

    kind = "scripted"

    def __init__(self, behaviour: str, release: threading.Event | None = None) -> None:
        ctx = CollectorContext("scripted", Path("/nonexistent"), BlockingRunner("t", 2))
        super().__init__(CollectorSettings(), ctx)
        self.behaviour = behaviour
        self.release = release or threading.Event()
        self.calls = 0

    async def collect(self, target: TargetConfig | None) -> list[Metric]:
        self.calls += 1
        if self.behaviour == "sleep":
            await asyncio.sleep(60)
        elif self.behaviour == "raise":
            raise RuntimeError("device said no")
        elif self.behaviour == "collect_error":
            raise CollectError("auth_failed", "bad community")
        elif self.behaviour == "block":
            await self.ctx.blocking.run("same-key", 0.2, self.release.wait, 30)
        elif self.behaviour == "slow":
            await asyncio.sleep(0.5)
        return [GaugeMetricFamily("scripted_value", "v", value=self.calls)]


def make_runner(store: Store) -> Runner:
    loaded = build_config({}, Path("test.yml"))
    return Runner(loaded, store)


def job(name: str, collector: Collector, interval: float = 30.0, timeout: float = 0.3) -> Job:
    return Job(f"scripted/{name}", "scripted", collector, None, "s", interval, timeout)


async def test_hung_collector_times_out_without_delaying_others() -> None:
    store = Store()
    runner = make_runner(store)
    hung, fast = job("hung", Scripted("sleep")), job("fast", Scripted("ok"))
    runner.set_jobs([hung, fast])
    fast_done = asyncio.create_task(runner.run_job(fast))
    hung_done = asyncio.create_task(runner.run_job(hung))
    fast_result = await fast_done
    assert fast_result.success and not hung_done.done()  # the fast one did not wait for the hung one
    hung_result = await hung_done
    assert not hung_result.success and hung_result.reason == "timeout"
    assert hung_result.families == ()
    assert runner.first_round_done.is_set()


async def test_stuck_thread_is_not_launched_again_until_it_returns() -> None:
    store = Store()
    runner = make_runner(store)
    release = threading.Event()
    c = Scripted("block", release)
    j = job("blocky", c, timeout=5)
    runner.set_jobs([j])
    first = await runner.run_job(j)
    assert first.reason == "timeout"
    assert c.ctx.blocking.stuck == 1 and c.ctx.blocking.abandoned_total == 1
    second = await runner.run_job(j)
    assert second.reason == "stuck"  # refused at once, no second thread
    assert c.ctx.blocking.abandoned_total == 1
    release.set()
    for _ in range(50):
        if c.ctx.blocking.stuck == 0:
            break
        await asyncio.sleep(0.02)
    assert c.ctx.blocking.stuck == 0
    c.release = threading.Event()
    c.release.set()
    assert (await runner.run_job(j)).success


async def test_failures_are_logged_on_state_change_only(caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    runner = make_runner(store)
    c = Scripted("raise")
    j = job("flaky", c)
    runner.set_jobs([j])
    with caplog.at_level(logging.INFO, logger="giamsat.scheduler"):
        for _ in range(3):
            r = await runner.run_job(j)
            assert not r.success and r.reason == "error"
        c.behaviour = "collect_error"
        assert (await runner.run_job(j)).reason == "auth_failed"
        c.behaviour = "ok"
        assert (await runner.run_job(j)).success
        assert (await runner.run_job(j)).success
    msgs = [(r.getMessage(), getattr(r, "reason", None)) for r in caplog.records]
    assert msgs == [
        ("collection failing", "error"),
        ("collection failing", "auth_failed"),
        ("collection recovered", None),
    ]
    h = store.health_snapshot()["scripted/flaky"]
    assert h.failures_total == 4 and h.runs_total == 6 and h.last_success
    assert all("bad community" not in str(r.__dict__.get("reason")) for r in caplog.records)


async def test_overrunning_job_is_skipped_and_counted_not_stacked() -> None:
    store = Store()
    runner = make_runner(store)
    c = Scripted("slow")
    j = job("overrun", c, interval=0.2, timeout=5)
    runner.set_jobs([j])
    runner.start_schedule()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            h = store.health_snapshot().get("scripted/overrun")
            if h and h.skipped_total >= 2 and h.runs_total >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        await runner.close()
    h = store.health_snapshot()["scripted/overrun"]
    assert h.skipped_total >= 2
    assert c.calls <= h.runs_total + 1  # never more than one run in flight


class Flood(Collector):
    """A device reporting thousands of rows."""

    kind = "scripted"

    def __init__(self) -> None:
        super().__init__(
            CollectorSettings(), CollectorContext("scripted", Path("/nonexistent"), BlockingRunner("f", 1))
        )

    async def collect(self, target: TargetConfig | None) -> list[Metric]:
        rows = GaugeMetricFamily("ifOperStatus", "status", labels=["ifIndex"])
        for i in range(5000):
            rows.add_metric([str(i)], 1)
        return [rows, GaugeMetricFamily("snmp_up", "up", value=1)]


async def test_series_per_target_are_capped_health_kept_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    runner = Runner(build_config({"agent": {"max_series_per_target": 100}}, Path("t.yml")), store)
    j = Job("scripted/flood", "scripted", Flood(), None, "s", 30.0, 5.0)
    runner.set_jobs([j])
    with caplog.at_level(logging.WARNING, logger="giamsat.scheduler"):
        r1 = await runner.run_job(j)
        await runner.run_job(j)
    assert sum(len(f.samples) for f in r1.families) == 100
    assert any(f.name == "snmp_up" and f.samples[0].value == 1 for f in r1.families)
    assert store.health_snapshot()["scripted/flood"].series_dropped_total == 2 * 4901
    assert [r.getMessage() for r in caplog.records].count(
        "target reports more series than allowed; the rest are dropped"
    ) == 1
