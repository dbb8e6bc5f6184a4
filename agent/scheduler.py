"""Decides when each collector job runs, runs it within its deadline, and hands what it produced to the
result pipeline (``agent.kernel.pipeline``): the scheduler stores, counts and notifies nothing itself.

One APScheduler job per (collector, target); ``max_instances=1`` and coalescing mean a run still going
at the next tick is skipped and counted rather than stacked. A job that raises, hangs or overruns only
affects its own result: the scrape path never waits on collection.

Collectors that can probe many targets at once (``Collector.batched``, e.g. ICMP: one burst of echoes
through one socket) get one scheduler job per group of targets sharing an interval and timeout, a
``JobBatch``. Results stay per target: each is recorded the moment the collector reports it, with its own
``JobResult``, health and ``giamsat_collector_success``; a target not reported by the batch's deadline
gets ``timeout``, exactly as its own job would have.

APScheduler 3 schedules on the wall clock, which a remote site's clock can step (a dead RTC battery
corrected at boot, chrony's first sync, ``date -s``). ``Runner`` watches the wall clock against the
monotonic one and reschedules every job when it steps: a step back would otherwise stop all collection
for as long as the step, and a step forward would make APScheduler walk every missed period.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client.core import Metric

from agent.config import LoadedConfig
from agent.kernel.collector import BlockingRunner, Collector, CollectorContext, Deadline, TargetConfig
from agent.kernel.errors import CollectError
from agent.kernel.pipeline import FirstRound, Job, Pipeline
from agent.kernel.results import JobResult
from collectors import COLLECTORS

T = TypeVar("T")

log = logging.getLogger("giamsat.scheduler")


class _CancelledJobsAreNoError(logging.Filter):
    """Closing a runner (stop, reload) cancels its running jobs; APScheduler would log each as an error
    with a CancelledError traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


logging.getLogger("apscheduler.executors.default").addFilter(_CancelledJobsAreNoError())


@dataclass(frozen=True)
class JobBatch:
    """The jobs of one batching collector that share an interval and timeout, run as one scheduler job."""

    batch_id: str
    kind: str
    collector: Collector
    jobs: tuple[Job, ...]
    targets: tuple[TargetConfig, ...]  # the jobs' targets, in the same order
    interval: float
    timeout: float


def build_batches(jobs: Sequence[Job]) -> tuple[list[JobBatch], list[Job]]:
    """Group the target jobs of batching collectors by (kind, interval, timeout); the rest run alone."""
    groups: dict[tuple[str, float, float], list[Job]] = {}
    solo: list[Job] = []
    for job in jobs:
        if job.target is not None and job.collector.batched:
            groups.setdefault((job.kind, job.interval, job.timeout), []).append(job)
        else:
            solo.append(job)
    batches = [
        JobBatch(
            f"{kind}[batch every {interval:g}s, timeout {timeout:g}s]",  # never a job id: no "/"
            kind,
            members[0].collector,
            tuple(members),
            tuple(j.target for j in members if j.target is not None),
            interval,
            timeout,
        )
        for (kind, interval, timeout), members in groups.items()
    ]
    return batches, solo


def build_jobs(loaded: LoadedConfig, collectors: dict[str, Collector]) -> list[Job]:
    cfg = loaded.config
    jobs: list[Job] = []
    for kind, collector in collectors.items():
        settings = collector.settings
        default_interval = settings.interval or cfg.agent.interval
        default_timeout = settings.timeout or cfg.agent.timeout
        if collector.target_model is None:
            timeout = min(default_timeout, default_interval)
            jobs.append(Job(kind, kind, collector, None, cfg.agent.site, default_interval, timeout))
            continue
        for t in cfg.targets_of(kind):
            interval = t.interval or default_interval
            timeout = min(t.timeout or default_timeout, interval)
            jobs.append(Job(f"{kind}/{t.name}", kind, collector, t, t.site, interval, timeout))
    return jobs


#: a wall-clock step larger than this (seconds, against the monotonic clock) reschedules every job.
CLOCK_STEP_THRESHOLD = 2.0
CLOCK_CHECK_INTERVAL = 1.0


class SkippingIntervalTrigger(IntervalTrigger):  # type: ignore[misc]
    """APScheduler's interval trigger that skips whole missed periods at once.

    APScheduler asks the trigger for every missed fire time in turn (``Job._get_run_times``): after the
    wall clock jumps forward a month, a 30 s job costs 86 400 calls on the event loop before anything
    runs. Runs are coalesced anyway, so past two missed periods the next fire time is simply soon after
    ``now``.
    """

    def get_next_fire_time(self, previous_fire_time: Any, now: Any) -> Any:
        if previous_fire_time is not None:
            behind = now.timestamp() - previous_fire_time.timestamp()
            if behind > 2 * self.interval_length:
                return _dt(now.timestamp() + random.uniform(0, min(1.0, self.interval_length / 10)))
        return super().get_next_fire_time(previous_fire_time, now)


class Runner:
    """Schedules the collectors and jobs of one loaded configuration; results go to ``pipeline``."""

    def __init__(self, loaded: LoadedConfig, pipeline: Pipeline) -> None:
        self.loaded = loaded
        self.pipeline = pipeline
        self.collectors: dict[str, Collector] = {}
        self.jobs: list[Job] = []
        self.batches: list[JobBatch] = []
        self._solo: list[Job] = []
        self._by_id: dict[str, Job] = {}
        self._batch_by_id: dict[str, JobBatch] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._clock_watch: asyncio.Task[None] | None = None
        #: readiness: set once every job of this configuration has a result (a pipeline subscriber)
        self.first_round = FirstRound(())
        #: set by close(): a run of this configuration that ends later records nothing (its targets may
        #: be gone from the new configuration, and its health would linger there).
        self.closed = False
        #: wall-clock steps seen (rescheduled after), for the self metrics.
        self.clock_steps_total = 0

    @property
    def first_round_done(self) -> asyncio.Event:
        return self.first_round.done

    async def open(self, kinds: set[str] | None = None) -> None:
        """Create and start the enabled collectors (``kinds`` limits which)."""
        cfg = self.loaded.config
        for kind in cfg.kinds:
            if kinds is not None and kind not in kinds:
                continue
            cls = COLLECTORS[kind]
            settings = cfg.collector_settings(kind)
            if not settings.enabled:
                continue
            if (
                cls.target_model is not None
                and not cfg.targets_of(kind)
                and not cls.serves_without_targets(settings)
            ):
                continue
            ctx = CollectorContext(
                kind=kind,
                state_dir=cfg.agent.state_dir,
                blocking=BlockingRunner(f"giamsat-{kind}", cls.pool_size(settings)),
                log=logging.getLogger(f"giamsat.collector.{kind}"),
            )
            collector = cls(settings, ctx)
            try:
                await collector.start()
            except Exception:
                await self.close()
                raise
            self.collectors[kind] = collector
        self.set_jobs(build_jobs(self.loaded, self.collectors))

    def set_jobs(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self._by_id = {j.job_id: j for j in jobs}
        self.batches, self._solo = build_batches(jobs)
        self._batch_by_id = {b.batch_id: b for b in self.batches}
        if self.pipeline.subscribed(self.first_round):
            self.pipeline.unsubscribe(self.first_round)
        self.first_round = FirstRound(self._by_id)
        self.pipeline.subscribe(self.first_round)

    @property
    def job_ids(self) -> set[str]:
        return set(self._by_id)

    def has_job(self, job_id: str) -> bool:
        return job_id in self._by_id

    def start_schedule(self) -> None:
        sched = AsyncIOScheduler(job_defaults={"max_instances": 1, "coalesce": True})
        now = time.time()
        scheduled: list[tuple[str, float, Callable[..., object], Job | JobBatch]] = [
            (b.batch_id, b.interval, self.run_batch, b) for b in self.batches
        ]
        scheduled += [(j.job_id, j.interval, self.run_job, j) for j in self._solo]
        for job_id, interval, fn, arg in scheduled:
            # Spread first runs a little so thousands of targets do not fire in the same millisecond,
            # but keep the first round quick: readiness waits for it.
            first = now + random.uniform(0, min(1.0, interval / 10))
            sched.add_job(
                fn,
                SkippingIntervalTrigger(seconds=interval, jitter=min(interval * 0.05, 5.0)),
                args=[arg],
                id=job_id,
                name=job_id,
                next_run_time=_dt(first),
                misfire_grace_time=max(1, int(interval)),
            )
        sched.add_listener(self._on_skip, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        sched.start()
        self._scheduler = sched
        self._clock_watch = asyncio.get_running_loop().create_task(self._watch_clock())

    async def _watch_clock(self) -> None:
        """Reschedule every job when the wall clock steps (see the module docstring)."""
        offset = time.time() - time.monotonic()
        while True:
            await asyncio.sleep(CLOCK_CHECK_INTERVAL)
            now_offset = time.time() - time.monotonic()
            step = now_offset - offset
            offset = now_offset
            sched = self._scheduler
            if abs(step) <= CLOCK_STEP_THRESHOLD or sched is None:
                continue
            self.clock_steps_total += 1
            log.warning(
                "wall clock stepped; rescheduling every job from now",
                extra={"step_seconds": round(step, 3), "jobs": len(sched.get_jobs())},
            )
            now = time.time()
            for job in sched.get_jobs():
                interval = job.trigger.interval_length
                job.modify(next_run_time=_dt(now + random.uniform(0, min(1.0, interval / 10))))
            sched.wakeup()

    def _on_skip(self, event: JobExecutionEvent) -> None:
        batch = self._batch_by_id.get(event.job_id)
        job = self._by_id.get(event.job_id)
        jobs = batch.jobs if batch is not None else (job,) if job is not None else ()
        self.pipeline.skipped(jobs)  # a skipped batch is a skipped run for each of its targets
        if jobs:
            log.debug("run skipped: previous run still going", extra={"job": event.job_id})

    async def run_job(self, job: Job) -> JobResult:
        start = time.monotonic()
        families, reason, message = await self._attempt(job)
        if self._unconfirmed_failure(job, families, reason):
            # One failed round is not an outage yet (a lost SYN, one dropped reply): try again at once,
            # and record the failure only if the retry fails too. A success needs no confirmation.
            families, reason, message = await self._attempt(job)
        return self._record(job, families or (), reason, message, time.monotonic() - start)

    async def _attempt(self, job: Job) -> tuple[list[Metric] | None, str, str]:
        deadline = Deadline(time.monotonic() + job.timeout, job.timeout)
        return await _under_deadline(job.collector.collect(job.target, deadline), deadline, job.job_id)

    def _unconfirmed_failure(self, job: Job, families: Sequence[Metric] | None, reason: str) -> bool:
        """Whether a run says the target's link is down while the job's previous result did not (an
        outage already confirmed is not retried every round)."""
        collector = job.collector
        if job.target is None or not collector.confirm_failures or collector.link_metric is None:
            return False
        if not reason:
            link = collector.link_status(families or ())
            if link is None or link.up:
                return False
        prev = self.pipeline.store.get(job.job_id)
        return prev is None or prev.link is None or prev.link.up

    async def run_batch(self, batch: JobBatch) -> list[JobResult]:
        """Run a batch under its deadline, recording each target's result as the collector reports it."""
        start = time.monotonic()
        deadline = Deadline(start + batch.timeout, batch.timeout)
        results: list[JobResult | None] = [None] * len(batch.jobs)

        def report(i: int, outcome: Sequence[Metric] | BaseException) -> None:
            if results[i] is not None:
                return  # one result per target and run
            job = batch.jobs[i]
            families: Sequence[Metric] = ()
            reason = message = ""
            if isinstance(outcome, BaseException):
                reason, message = _failure(outcome, job.job_id)
            else:
                families = outcome
            results[i] = self._record(job, families, reason, message, time.monotonic() - start)

        _, reason, message = await _under_deadline(
            batch.collector.collect_batch(batch.targets, report, deadline), deadline, batch.batch_id
        )
        if not reason:
            reason, message = "error", "the collector reported no result for this target"
        duration = time.monotonic() - start
        return [
            r if r is not None else self._record(job, (), reason, message, duration)
            for job, r in zip(batch.jobs, results, strict=True)
        ]

    def _record(
        self, job: Job, families: Sequence[Metric], reason: str, message: str, duration: float
    ) -> JobResult:
        """Hand one target's run to the pipeline, unless this configuration has been replaced."""
        if self.closed:  # a run of a replaced configuration that ended after the switch
            return JobResult(
                job.job_id, job.kind, job.target_name, job.site, (), time.time(), duration, False, "closed"
            )
        return self.pipeline.record(job, families, reason, message, duration)

    async def run_once(self) -> list[JobResult]:
        """Run every job (and batch) once, concurrently (for ``giamsat once`` and tests); results in
        the order of ``jobs``."""
        done = await asyncio.gather(
            *(self.run_batch(b) for b in self.batches), *(self._run_one(j) for j in self._solo)
        )
        by_id = {r.job_id: r for rs in done for r in rs}
        return [by_id[j.job_id] for j in self.jobs]

    async def _run_one(self, job: Job) -> list[JobResult]:
        return [await self.run_job(job)]

    async def close(self) -> None:
        self.closed = True
        if self.pipeline.subscribed(self.first_round):
            self.pipeline.unsubscribe(self.first_round)
        if self._clock_watch is not None:
            self._clock_watch.cancel()
            self._clock_watch = None
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        for collector in self.collectors.values():
            try:
                await asyncio.wait_for(collector.close(), 5)
            except Exception:
                log.warning(
                    "collector did not close cleanly", exc_info=True, extra={"collector": collector.ctx.kind}
                )
            collector.ctx.blocking.shutdown()
        self.collectors.clear()


async def _under_deadline(work: Awaitable[T], deadline: Deadline, job_id: str) -> tuple[T | None, str, str]:
    """Await a collector's work under its deadline: (result, "", "") or (None, reason, message)."""
    try:
        return await asyncio.wait_for(work, max(0.0, deadline.at - time.monotonic())), "", ""
    except TimeoutError:
        return None, "timeout", f"no result within {deadline.timeout:g}s"
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return None, *_failure(exc, job_id)


def _failure(exc: BaseException, job_id: str) -> tuple[str, str]:
    """Reason and message for a collector's exception: its own for CollectError, "error" otherwise."""
    if isinstance(exc, CollectError):
        return exc.reason, exc.message
    log.debug("collector raised", exc_info=exc, extra={"job": job_id})
    return "error", f"{type(exc).__name__}: {exc}"


def _dt(ts: float):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromtimestamp(ts, tz=UTC)
