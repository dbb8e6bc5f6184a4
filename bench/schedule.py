"""Schedule drift: the mean period of a job over 100 runs, against its interval.

The agent's scheduler (agent.scheduler.Runner, its trigger with a fixed phase per job) runs one job per
interval side by side with APScheduler's own interval trigger with the jitter the agent used to give it
(5 % of the interval, added to every fire time, so the delays add up). Each job records when its runs
start, on the monotonic clock; the figure is (last - first) / (runs - 1) against the interval.

    .venv/bin/python bench/schedule.py [--runs 100] [--intervals 0.1,0.25,0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
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
from agent.kernel.pipeline import Job, Pipeline
from agent.kernel.store import Store
from agent.scheduler import Runner


class Recorder(Collector):
    """Notes the monotonic time each run starts."""

    kind = "bench"

    def __init__(self, runs: int) -> None:
        super().__init__(
            CollectorSettings(), CollectorContext("bench", Path("/nonexistent"), BlockingRunner("b", 1))
        )
        self.starts: list[float] = []
        self.runs = runs
        self.done = asyncio.Event()

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        self.starts.append(time.monotonic())
        if len(self.starts) > self.runs + 1:
            self.done.set()
        return [GaugeMetricFamily("bench_value", "v", value=1)]


def mean_period(starts: list[float], runs: int) -> float:
    s = starts[1 : runs + 1]  # from the second run: the first one is the quick start-up run
    return (s[-1] - s[0]) / (len(s) - 1)


async def main(runs: int, intervals: list[float]) -> None:
    loaded = build_config({}, Path("bench.yml"))
    runner = Runner(loaded, Pipeline(Store()))
    ours = {iv: Recorder(runs) for iv in intervals}
    runner.set_jobs([Job(f"bench/{iv}", "bench", c, None, "s", iv, iv / 2) for iv, c in ours.items()])
    runner.start_schedule()

    old = {iv: Recorder(runs) for iv in intervals}
    sched = AsyncIOScheduler(job_defaults={"max_instances": 1, "coalesce": True})
    for iv, c in old.items():
        sched.add_job(
            c.collect, IntervalTrigger(seconds=iv, jitter=min(iv * 0.05, 5.0)), args=[None, None], id=str(iv)
        )
    sched.start()
    try:
        await asyncio.gather(*(c.done.wait() for c in (*ours.values(), *old.values())))
    finally:
        sched.shutdown(wait=False)
        await runner.close()

    print(f"{runs} runs per job; load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'interval':>9}  {'giamsat mean period':>20}  {'drift':>8}  {'APScheduler jitter':>19}  {'drift':>8}"
    )
    for iv in intervals:
        a, b = mean_period(ours[iv].starts, runs), mean_period(old[iv].starts, runs)
        print(
            f"{iv:>8.3f}s  {a:>19.5f}s  {100 * (a / iv - 1):>+7.3f}%  {b:>18.5f}s  {100 * (b / iv - 1):>+7.3f}%"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--intervals", default="0.1,0.25,0.5")
    args = ap.parse_args()
    asyncio.run(main(args.runs, [float(x) for x in args.intervals.split(",")]))
