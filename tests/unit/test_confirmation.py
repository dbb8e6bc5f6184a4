"""Confirmed failures: a failed round of an uplink-like target is retried at once before it is recorded."""

from __future__ import annotations

from pathlib import Path

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
from agent.kernel.store import Store
from agent.scheduler import Runner


class Link(Collector):
    """Answers from a script: 1 (up), 0 (down) or "x" (the collector fails with a timeout)."""

    kind = "link"
    link_metric = "probe_success"

    def __init__(self, script: list[int | str]) -> None:
        super().__init__(
            CollectorSettings(), CollectorContext("link", Path("/nonexistent"), BlockingRunner("l", 1))
        )
        self.script = script
        self.calls = 0

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        step = self.script[self.calls] if self.calls < len(self.script) else self.script[-1]
        self.calls += 1
        if step == "x":
            raise CollectError("timeout", "no answer")
        return [GaugeMetricFamily("probe_success", "up?", value=float(step))]


class SelfConfirming(Link):
    confirm_failures = False


def _runner(store: Store) -> Runner:
    return Runner(build_config({}, Path("test.yml")), Pipeline(store))


def _job(c: Collector, name: str = "wan") -> Job:
    return Job(f"link/{name}", "link", c, TargetConfig(name=name, site="s"), "s", 30.0, 1.0)


async def test_one_failed_round_after_up_is_retried_and_not_recorded() -> None:
    store = Store()
    runner = _runner(store)
    c = Link([1, 0, 1])
    job = _job(c)
    runner.set_jobs([job])
    assert (await runner.run_job(job)).link.up  # type: ignore[union-attr]
    r = await runner.run_job(job)  # fails, retried at once, the retry works
    assert c.calls == 3
    assert r.link is not None and r.link.up


async def test_a_confirmed_failure_is_recorded_and_not_retried_every_round() -> None:
    store = Store()
    runner = _runner(store)
    c = Link([1, 0, "x", 0, 0, 1])
    job = _job(c)
    runner.set_jobs([job])
    await runner.run_job(job)
    r = await runner.run_job(job)  # 0 then the retry times out: confirmed
    assert c.calls == 3
    assert r.link is not None and not r.link.up and r.reason == "timeout"
    r = await runner.run_job(job)  # the outage goes on: one attempt a round
    assert c.calls == 4 and r.link is not None and not r.link.up
    r = await runner.run_job(job)
    assert c.calls == 5
    r = await runner.run_job(job)  # recovery on the first success
    assert c.calls == 6 and r.link is not None and r.link.up


async def test_first_round_failure_is_confirmed_too() -> None:
    store = Store()
    runner = _runner(store)
    c = Link([0, 1])
    job = _job(c)
    runner.set_jobs([job])
    r = await runner.run_job(job)
    assert c.calls == 2 and r.link is not None and r.link.up


async def test_kinds_that_confirm_themselves_and_host_jobs_are_not_retried() -> None:
    store = Store()
    runner = _runner(store)
    c = SelfConfirming([1, 0])
    job = _job(c)
    host = Link([1, 0])
    host_job = Job("link", "link", host, None, None, 30.0, 1.0)
    runner.set_jobs([job, host_job])
    for j in (job, host_job):
        await runner.run_job(j)
        await runner.run_job(j)
    assert c.calls == 2 and host.calls == 2
