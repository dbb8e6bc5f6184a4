"""The latest result of every job, swapped in atomically, plus each job's health.

Collection writes here in the background; a scrape only reads a snapshot, so a slow or hung target can
never slow ``/metrics`` down. Results older than ``stale_after_intervals`` intervals (plus the timeout)
are left out of snapshots rather than served as if fresh. Age is measured on the wall clock and on the
monotonic clock since the result was stored, and either being past the limit makes a result stale: a
wall clock stepped back (an hour, a year) must not make old results look fresh.
"""

from __future__ import annotations

import threading
import time

from agent.kernel.results import JobHealth, JobResult


class Store:
    def __init__(self, stale_after_intervals: int = 3) -> None:
        self.stale_after_intervals = stale_after_intervals
        self._results: dict[str, JobResult] = {}
        #: time.monotonic() when each job's current result was stored.
        self._stored_at: dict[str, float] = {}
        self._health: dict[str, JobHealth] = {}
        self._lock = threading.Lock()

    def put(self, result: JobResult) -> JobHealth:
        """Swap in a job's latest result; returns the job's health record (one lock round for both)."""
        with self._lock:
            self._results[result.job_id] = result
            self._stored_at[result.job_id] = time.monotonic()
            h = self._health.get(result.job_id)
            if h is None:
                h = self._health[result.job_id] = JobHealth(result.kind, result.target, result.site)
            return h

    def get(self, job_id: str, now: float | None = None) -> JobResult | None:
        with self._lock:
            r = self._results.get(job_id)
            stored_at = self._stored_at.get(job_id)
        if r is None or self._is_stale(
            r, stored_at, now if now is not None else time.time(), time.monotonic()
        ):
            return None
        return r

    def _is_stale(self, r: JobResult, stored_at: float | None, now: float, mono_now: float) -> bool:
        limit = self.stale_after_intervals * r.interval + r.timeout
        return now - r.timestamp > limit or (stored_at is not None and mono_now - stored_at > limit)

    def snapshot(self, now: float | None = None) -> list[JobResult]:
        now = now if now is not None else time.time()
        with self._lock:
            pairs = [(r, self._stored_at.get(jid)) for jid, r in self._results.items()]
        mono_now = time.monotonic()
        return [r for r, at in pairs if not self._is_stale(r, at, now, mono_now)]

    def health(self, job_id: str, kind: str, target: str | None, site: str | None) -> JobHealth:
        with self._lock:
            h = self._health.get(job_id)
            if h is None:
                h = self._health[job_id] = JobHealth(kind, target, site)
            return h

    def health_snapshot(self) -> dict[str, JobHealth]:
        with self._lock:
            return dict(self._health)

    def retain(self, job_ids: set[str]) -> None:
        """Forget jobs that a reload removed."""
        with self._lock:
            for jid in [j for j in self._results if j not in job_ids]:
                del self._results[jid]
                self._stored_at.pop(jid, None)
            for jid in [j for j in self._health if j not in job_ids]:
                del self._health[jid]
