"""The collector contract: one config model per collector, one ``collect`` coroutine, failures raised.

A collector returns metric families *without* ``site``/``target`` labels; the exporter adds them, so
the same result can be served both on ``/metrics`` and blackbox-style on ``/probe``.

Two kinds of failure, never mixed: a target that is down is *data* (``probe_success 0``, ``snmp_up 0``),
returned normally; a collector that cannot do its job raises ``CollectError`` (or anything else), which
the scheduler turns into ``giamsat_collector_success 0`` and one log line per state change.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from prometheus_client.core import Metric

from agent.kernel.errors import CollectError
from agent.kernel.model import Duration, Model

T = TypeVar("T")


#: Monotonic deadline of the job being run, set by the scheduler around ``collect``.
job_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("job_deadline", default=None)


def time_left(default: float, margin: float = 0.05) -> float:
    """Seconds left before the current job's deadline (minus a margin for reporting), or ``default``.

    Collectors that split their work into parts give each part this budget, so one hung part fails
    alone instead of taking the whole job past its deadline.
    """
    deadline = job_deadline.get()
    if deadline is None:
        return default
    return max(0.001, deadline - time.monotonic() - margin)


class CollectorSettings(Model):
    """Settings every collector accepts under ``collectors.<kind>``."""

    enabled: bool = True
    interval: Duration | None = None
    timeout: Duration | None = None


class TargetConfig(Model):
    """Fields every target accepts under ``targets.<kind>[]``: a unique name and the site it belongs to."""

    name: str
    site: str
    interval: Duration | None = None
    timeout: Duration | None = None


class BlockingRunner:
    """Runs blocking library calls in a bounded thread pool with a deadline.

    A thread cannot be cancelled: when a call overruns its deadline the caller gets ``CollectError
    ("timeout")`` at once, the thread is abandoned (counted) and the same ``key`` is refused with
    ``CollectError("stuck")`` until that thread returns, so a hung host never ties up more than one thread.
    """

    #: stuck keys by runner name, shared by the runners of successive configurations: a reload makes a
    #: new runner, and a call stuck in the old one (a hung NFS mount) must not be issued again.
    _STUCK: ClassVar[dict[str, set[str]]] = {}
    _STUCK_LOCK: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str, max_workers: int) -> None:
        self.name = name
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        with self._STUCK_LOCK:
            self._stuck: set[str] = self._STUCK.setdefault(name, set())
        self._lock = self._STUCK_LOCK
        self.abandoned_total = 0

    @property
    def stuck(self) -> int:
        with self._lock:
            return len(self._stuck)

    async def run(self, key: str, timeout: float, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if key in self._stuck:
                raise CollectError("stuck", f"previous call for {key} has not returned yet")
        fut = self._pool.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        except TimeoutError:
            self._abandon(key, fut)
            raise CollectError("timeout", f"{key}: no answer within {timeout:g}s") from None
        except asyncio.CancelledError:
            # The job's own deadline ran out first: the thread is just as abandoned.
            self._abandon(key, fut)
            raise

    def _abandon(self, key: str, fut: concurrent.futures.Future[Any]) -> None:
        if fut.cancel() or fut.done():
            return
        with self._lock:
            self._stuck.add(key)
            self.abandoned_total += 1
        fut.add_done_callback(lambda _f: self._release(key))

    def _release(self, key: str) -> None:
        with self._lock:
            self._stuck.discard(key)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class CollectorContext:
    """What the agent hands a collector: where to keep state, a logger, and the blocking-call runner."""

    kind: str
    state_dir: Path
    blocking: BlockingRunner
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("giamsat.collector"))


class Collector(abc.ABC):
    """Base class of every collector. Subclasses set ``kind``, their models, and implement ``collect``.

    ``target_model`` is ``None`` for collectors that watch the agent's own host (one job, no targets);
    otherwise the agent runs one job per configured target.
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[CollectorSettings]] = CollectorSettings
    target_model: ClassVar[type[TargetConfig] | None] = None
    #: threads for blocking calls; collectors that only await sockets leave it small.
    blocking_threads: ClassVar[int] = 2
    #: True when the collector implements ``collect_batch``: the agent then runs its targets that share
    #: an interval and timeout as one scheduler job instead of one job per target.
    batched: ClassVar[bool] = False

    def __init__(self, settings: CollectorSettings, ctx: CollectorContext) -> None:
        self.settings = settings
        self.ctx = ctx

    @classmethod
    def pool_size(cls, settings: CollectorSettings) -> int:
        """Threads of this collector's blocking-call pool (e.g. from a max_concurrency setting)."""
        return cls.blocking_threads

    @classmethod
    def check_targets(
        cls, settings: CollectorSettings, targets: Sequence[TargetConfig]
    ) -> list[tuple[int, str, str]]:
        """Problems between targets and settings (unknown auth or module names) as (target index, key,
        message), so ``check-config`` reports them with the file, line and key path."""
        return []

    async def start(self) -> None:
        """Open shared resources (sockets, engines) once, before the first ``collect``."""

    @abc.abstractmethod
    async def collect(self, target: TargetConfig | None) -> list[Metric]:
        """Collect once. Raise on collector failure; report a down target as data."""

    def max_series(self) -> int | None:
        """An upper bound on the series one target's result can have, or None if there is none.

        Within ``agent.max_series_per_target`` the agent then skips counting every result's samples
        (which, for families that build their samples when read, would build them for nothing).
        """
        return None

    async def collect_batch(
        self,
        targets: Sequence[TargetConfig],
        report: Callable[[int, Sequence[Metric] | BaseException], None],
    ) -> None:
        """Collect many targets in one go (only when ``batched``): call ``report(i, families)`` for
        ``targets[i]`` as soon as its result is ready (or ``report(i, exc)`` if that target's collection
        broke), so one slow target never holds back the others. Raise only if the whole batch broke.

        Worth it when per-target work shares a lot (one burst of ICMP echoes through one socket): the
        scheduler then keeps one task and one deadline per batch rather than per target.
        """
        raise NotImplementedError(f"{type(self).__name__} does not collect in batches")

    async def close(self) -> None:
        """Release what ``start`` opened. Called on shutdown and on reload."""
