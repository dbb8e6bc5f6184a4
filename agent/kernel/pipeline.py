"""The one way a finished result goes: cap -> store (with the job's health) -> subscribers.

The scheduler only decides *when* a job runs; whatever the run produced is handed to ``Pipeline.record``
once, and flows forward from there. Subscribers (site state, remote write, the first-round readiness
check, later consumers) are called with every stored result, in the order they subscribed; a scrape
only reads the store. Subscribing and unsubscribing swap an immutable tuple, so a remote-write writer
set can be replaced on reload while results keep flowing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import Metric

from agent.kernel.collector import Collector, TargetConfig
from agent.kernel.limits import cap_series
from agent.kernel.results import JobResult, LinkStatus
from agent.kernel.store import Store

log = logging.getLogger("giamsat.scheduler")

#: Called with every stored result; must be quick and must not raise (an exception is logged).
Subscriber = Callable[[JobResult], None]


@dataclass(frozen=True)
class Job:
    """One collection job: a collector and (for target kinds) one of its targets, with its timing."""

    job_id: str
    kind: str
    collector: Collector
    target: TargetConfig | None
    site: str | None
    interval: float
    timeout: float
    #: the target's name (None for this host's kinds): read for every result, so kept, not looked up
    target_name: str | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_name", self.target.name if self.target is not None else None)


class Pipeline:
    """Caps a run's series, stores the result, updates the job's health and tells the subscribers."""

    def __init__(self, store: Store, max_series_per_target: int = 10_000) -> None:
        self.store = store
        self.max_series_per_target = max_series_per_target
        self._subscribers: tuple[Subscriber, ...] = ()
        #: whether a collector's results always fit the per-target series limit (``max_series``), by
        #: collector (kept with the collector, so an id is never reused while it is here) and limit
        self._fits: dict[int, tuple[Collector, int, bool]] = {}

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = (*self._subscribers, subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subs = list(self._subscribers)
        subs.remove(subscriber)
        self._subscribers = tuple(subs)

    def subscribed(self, subscriber: Subscriber) -> bool:
        return subscriber in self._subscribers

    def record(
        self, job: Job, families: Sequence[Metric], reason: str, message: str, duration: float
    ) -> JobResult:
        """Store one target's run (``reason`` empty when the collector succeeded) and pass it on."""
        now = time.time()
        success = not reason
        limit = self.max_series_per_target
        collector = job.collector
        fits = self._fits.get(id(collector))
        if fits is None or fits[0] is not collector or fits[1] != limit:
            if len(self._fits) > 256:  # collectors of replaced configurations
                self._fits.clear()
            bound = collector.max_series()
            fits = self._fits[id(collector)] = (collector, limit, bound is not None and bound <= limit)
        capped, dropped = (families, 0) if fits[2] else cap_series(families, limit, collector.health_families)
        if success:
            link = collector.link_status(capped)
        else:
            link = None if collector.link_metric is None else LinkStatus(False, reason)
        # Positional (job_id, kind, target, site, families, timestamp, duration, success, reason,
        # interval, timeout, link, power_failing): this runs for every target and round, and keywords cost a third more.
        result = JobResult(
            job.job_id,
            job.kind,
            job.target_name,
            job.site,
            tuple(capped),
            now,
            duration,
            success,
            reason,
            job.interval,
            job.timeout,
            link,
            success and collector.reports_power and collector.power_failing(capped),
        )
        h = self.store.put(result)
        h.runs_total += 1
        h.last_duration = duration
        if dropped:
            if not h.series_dropped_total:
                log.warning(
                    "target reports more series than allowed; the rest are dropped",
                    extra={"job": job.job_id, "limit": limit, "dropped": dropped},
                )
            h.series_dropped_total += dropped
        if success:
            if h.last_success is False:
                log.info(
                    "collection recovered", extra={"job": job.job_id, "after_failures": h.failures_total}
                )
            h.last_success_timestamp = now
        else:
            h.failures_total += 1
            if h.last_success is not False or h.last_reason != reason:
                log.warning(
                    "collection failing", extra={"job": job.job_id, "reason": reason, "detail": message}
                )
        h.last_success, h.last_reason = success, reason
        for subscriber in self._subscribers:
            try:
                subscriber(result)
            except Exception:
                log.exception("result subscriber failed", extra={"job": job.job_id})
        return result

    def skipped(self, jobs: Iterable[Job]) -> None:
        """Runs that did not start because the previous run was still going: counted per job."""
        for j in jobs:
            self.store.health(j.job_id, j.kind, j.target_name, j.site).skipped_total += 1


class FirstRound:
    """Subscriber that sets ``done`` once every job of a configuration has a result (readiness)."""

    def __init__(self, job_ids: Iterable[str]) -> None:
        self._waiting = set(job_ids)
        self.done = asyncio.Event()
        if not self._waiting:
            self.done.set()

    @property
    def complete(self) -> bool:
        """Whether every job has a result (``done`` may also be set by a readiness timeout)."""
        return not self._waiting

    def __call__(self, result: JobResult) -> None:
        waiting = self._waiting
        if waiting and result.job_id in waiting:
            waiting.discard(result.job_id)
            if not waiting:
                self.done.set()
