"""Scheduling: a hung, raising or overrunning collector only affects its own result."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from agent.config import build_config
from agent.kernel.collector import (
    BlockingRunner,
    Collector,
    CollectorContext,
    CollectorSettings,
    Deadline,
    TargetConfig,
)
from agent.kernel.errors import CollectError
from agent.kernel.pipeline import Job, Pipeline
from agent.kernel.results import JobResult
from agent.kernel.store import Store
from agent.scheduler import Runner, build_batches


class Scripted(Collector):
    """A collector whose behaviour the test sets: ok, sleep, raise, or block a thread."""

    kind = "scripted"

    def __init__(self, behaviour: str, release: threading.Event | None = None) -> None:
        ctx = CollectorContext("scripted", Path("/nonexistent"), BlockingRunner("t", 2))
        super().__init__(CollectorSettings(), ctx)
        self.behaviour = behaviour
        self.release = release or threading.Event()
        self.calls = 0

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
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


def make_runner(store: Store, config: dict[str, Any] | None = None) -> Runner:
    loaded = build_config(config or {}, Path("test.yml"))
    return Runner(loaded, Pipeline(store, loaded.config.agent.max_series_per_target))


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


async def test_a_call_stuck_before_a_reload_is_not_issued_again_after_it() -> None:
    """A reload builds new collectors with new blocking runners; the thread stuck in the old one (a
    stat() on a hung NFS mount) is still there, and the same call must not start a second one."""
    release = threading.Event()
    old = BlockingRunner("giamsat-reloadtest", 2)
    with pytest.raises(CollectError) as first:
        await old.run("host/filesystem", 0.1, release.wait, 30)
    assert first.value.reason == "timeout"
    old.shutdown()
    new = BlockingRunner("giamsat-reloadtest", 2)  # the next configuration's runner
    with pytest.raises(CollectError) as again:
        await new.run("host/filesystem", 0.1, release.wait, 30)
    assert again.value.reason == "stuck" and new.stuck == 1
    release.set()
    for _ in range(50):
        if new.stuck == 0:
            break
        await asyncio.sleep(0.02)
    assert await new.run("host/filesystem", 1.0, lambda: "answered") == "answered"
    new.shutdown()


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

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        rows = GaugeMetricFamily("ifOperStatus", "status", labels=["ifIndex"])
        for i in range(5000):
            rows.add_metric([str(i)], 1)
        return [rows, GaugeMetricFamily("snmp_up", "up", value=1)]


async def test_series_per_target_are_capped_health_kept_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    runner = make_runner(store, {"agent": {"max_series_per_target": 100}})
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


class BatchScripted(Collector):
    """A batching collector: each target's name says how it behaves (ok, hung, raise, slow)."""

    kind = "scripted"
    batched = True

    def __init__(self) -> None:
        super().__init__(
            CollectorSettings(), CollectorContext("scripted", Path("/nonexistent"), BlockingRunner("b", 1))
        )
        self.batches = 0

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        raise AssertionError("a batched collector is run through collect_batch")

    async def collect_batch(
        self,
        targets: Sequence[TargetConfig],
        report: Callable[[int, Sequence[Metric] | BaseException], None],
        deadline: Deadline,
    ) -> None:
        self.batches += 1

        async def one(i: int, t: TargetConfig) -> None:
            if t.name.startswith("hung"):
                await asyncio.sleep(60)
            elif t.name.startswith("raise"):
                report(i, CollectError("auth_failed", "bad community"))
                return
            elif t.name.startswith("slow"):
                await asyncio.sleep(0.5)
            report(i, [GaugeMetricFamily("scripted_value", "v", value=i)])

        await asyncio.gather(*(one(i, t) for i, t in enumerate(targets)))


def batch_jobs(
    collector: Collector, names: list[str], interval: float = 30.0, timeout: float = 1.0
) -> list[Job]:
    return [
        Job(f"scripted/{n}", "scripted", collector, TargetConfig(name=n, site="s"), "s", interval, timeout)
        for n in names
    ]


def test_batching_groups_by_interval_and_timeout_and_leaves_others_alone() -> None:
    c, solo = BatchScripted(), Scripted("ok")
    jobs = [
        *batch_jobs(c, ["a", "b"]),
        *batch_jobs(c, ["c"], interval=60.0),
        Job("scripted/d", "scripted", solo, TargetConfig(name="d", site="s"), "s", 30.0, 1.0),
    ]
    batches, rest = build_batches(jobs)
    assert [[j.target_name for j in b.jobs] for b in batches] == [["a", "b"], ["c"]]
    assert [b.targets for b in batches] == [tuple(j.target for j in b.jobs) for b in batches]
    assert [j.job_id for j in rest] == ["scripted/d"]
    assert len({b.batch_id for b in batches}) == 2 and not any("/" in b.batch_id for b in batches)


async def test_batch_records_each_target_as_reported_and_times_out_only_the_hung_one() -> None:
    store = Store()
    runner = make_runner(store)
    c = BatchScripted()
    seen: list[str] = []
    three = asyncio.Event()

    def listener(r: JobResult) -> None:
        seen.append(r.job_id)
        if len(seen) == 3:
            three.set()

    runner.pipeline.subscribe(listener)
    runner.set_jobs(batch_jobs(c, ["fast1", "hung", "raise", "fast2"], timeout=1.0))
    (batch,) = runner.batches
    task = asyncio.create_task(runner.run_batch(batch))
    await asyncio.wait_for(three.wait(), 10)
    # The others' results are stored (and served) while the hung target still runs.
    assert not task.done()
    assert sorted(seen) == ["scripted/fast1", "scripted/fast2", "scripted/raise"]
    fast = store.get("scripted/fast1")
    assert fast is not None and fast.success and fast.families[0].samples[0].value == 0
    assert store.get("scripted/hung") is None
    results = {r.target: r for r in await task}
    assert seen[-1] == "scripted/hung"
    assert results["hung"].reason == "timeout" and results["hung"].families == ()
    assert results["raise"].reason == "auth_failed" and not results["raise"].success
    assert results["fast2"].success and results["fast2"].families[0].samples[0].value == 3
    health = store.health_snapshot()
    assert {k: (h.runs_total, h.last_success) for k, h in health.items()} == {
        "scripted/fast1": (1, True),
        "scripted/hung": (1, False),
        "scripted/raise": (1, False),
        "scripted/fast2": (1, True),
    }
    assert runner.first_round_done.is_set()
    # run_once goes through the batch too, and returns results in job order
    assert [r.target for r in await runner.run_once()] == ["fast1", "hung", "raise", "fast2"]
    assert c.batches == 2


async def test_a_batch_still_running_is_skipped_and_counted_for_each_target() -> None:
    store = Store()
    runner = make_runner(store)
    c = BatchScripted()
    runner.set_jobs(batch_jobs(c, ["slow1", "slow2"], interval=0.2, timeout=5.0))
    runner.start_schedule()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            hs = [store.health_snapshot().get(f"scripted/slow{i}") for i in (1, 2)]
            if all(h and h.skipped_total >= 2 and h.runs_total >= 2 for h in hs):
                break
            await asyncio.sleep(0.1)
    finally:
        await runner.close()
    for i in (1, 2):
        h = store.health_snapshot()[f"scripted/slow{i}"]
        assert h.skipped_total >= 2
        assert c.batches <= h.runs_total + 1  # never more than one batch run in flight


async def test_reload_drops_a_removed_target_of_a_batch() -> None:
    store = Store()
    runner = make_runner(store)
    c = BatchScripted()
    runner.set_jobs(batch_jobs(c, ["a", "b"]))
    await runner.run_once()
    assert store.get("scripted/b") is not None
    runner.set_jobs(batch_jobs(c, ["a"]))
    store.retain(runner.job_ids)  # what the agent does once the new configuration has taken over
    assert store.get("scripted/b") is None and "scripted/b" not in store.health_snapshot()
    assert not runner.has_job("scripted/b") and runner.has_job("scripted/a")
    assert [r.target for r in await runner.run_once()] == ["a"]


async def test_a_run_ending_after_close_records_nothing() -> None:
    """A reload closes the old runner while its runs may still be going; what they return must not
    land in the store the new configuration owns (a removed target's health would linger there)."""
    store = Store()
    runner = make_runner(store)
    c = Scripted("slow")  # returns after 0.5 s
    runner.set_jobs([job("late", c, timeout=5.0)])
    run = asyncio.ensure_future(runner.run_job(runner.jobs[0]))
    await asyncio.sleep(0.05)
    runner.closed = True  # what close() sets first
    result = await run
    assert result.reason == "closed"
    assert store.get("scripted/late") is None and "scripted/late" not in store.health_snapshot()


def test_result_stored_long_ago_by_the_monotonic_clock_is_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the wall clock steps back, a result's wall timestamp lies in the future, so its wall age
    never grows; its age on the monotonic clock still does, and makes it stale."""
    store = Store(stale_after_intervals=3)
    stepped_back = time.time() - 3600
    r = JobResult("icmp/a", "icmp", "a", "s", (), time.time(), 0.1, True, interval=10, timeout=5)
    store.put(r)
    assert store.get("icmp/a", now=stepped_back) is r  # fresh on both clocks
    real = time.monotonic
    monkeypatch.setattr("agent.kernel.store.time.monotonic", lambda: real() + 36)  # 3 x 10 s + 5 s passed
    assert store.get("icmp/a", now=stepped_back) is None
    assert store.snapshot(now=stepped_back) == []


async def test_closing_a_runner_with_a_job_in_flight_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """Stop and reload close the runner while jobs run: their cancellation is no error and no traceback."""
    runner = make_runner(Store())
    c = Scripted("sleep")
    runner.set_jobs([job("long", c, timeout=30)])
    with caplog.at_level(logging.INFO):
        runner.start_schedule()
        for _ in range(200):
            if c.calls:
                break
            await asyncio.sleep(0.01)
        assert c.calls == 1
        await runner.close()
        await asyncio.sleep(0.05)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
