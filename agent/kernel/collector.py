"""The collector contract: everything the agent needs to know about a collector kind, in one class.

A collector kind is one package under ``collectors/`` plus one line in the table
(``collectors/__init__.py``). Its class declares, besides how to collect:

- its settings and target models (strict pydantic models: unknown keys are errors);
- ``link_status``: how one of its results says whether the target answered, which is what site state
  reads when the target is a site's uplink and what ``doctor`` reports;
- ``doctor_checks`` and ``doctor_fixes``: its preflight checks and the fix for each failure reason;
- ``routes``: the HTTP routes it serves (``/probe`` for every target kind, ``/snmp`` for SNMP);
- ``site_shorthand``: a key of the site inventory that expands into its targets (``links:``);
- on by default or not: a column of its table line, so it is known before the class is imported.

The deadline of each run is handed to ``collect`` (``Deadline``), never worked out by the collector.

A collector returns metric families *without* ``site``/``target`` labels; the exporter adds them, so the
same result can be served both on ``/metrics`` and blackbox-style on ``/probe``.

Two kinds of failure, never mixed: a target that is down is *data* (``probe_success 0``, ``snmp_up 0``),
returned normally; a collector that cannot do its job raises ``CollectError`` (or anything else), which
the pipeline turns into ``giamsat_collector_success 0`` and one log line per state change.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from prometheus_client.core import Metric

from agent.kernel.errors import CollectError
from agent.kernel.model import Duration, Model
from agent.kernel.results import LINK_UP, JobResult, LinkStatus

T = TypeVar("T")


class Deadline:
    """When the current run must be finished (monotonic clock), and the timeout it came from.

    The scheduler makes one per run and hands it to ``collect``; a collector finishes a little before it
    so that a dead target is reported as data rather than as a run killed at its deadline.
    """

    __slots__ = ("at", "timeout")

    def __init__(self, at: float, timeout: float) -> None:
        self.at = at
        self.timeout = timeout

    @classmethod
    def after(cls, timeout: float) -> Deadline:
        """A deadline ``timeout`` seconds from now (for tools and tests that call ``collect`` directly)."""
        return cls(time.monotonic() + timeout, timeout)

    def left(self, margin: float = 0.0) -> float:
        """Seconds left before the deadline, less ``margin`` (at least a millisecond)."""
        return max(0.001, self.at - time.monotonic() - margin)

    def __repr__(self) -> str:
        return f"Deadline(in {self.at - time.monotonic():.3f}s of {self.timeout:g}s)"


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


# -- doctor ------------------------------------------------------------------------------------------

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass(frozen=True)
class DoctorCheck:
    """One row of ``giamsat doctor``: what was checked, the outcome, and how to fix a failure."""

    name: str
    status: str
    detail: str
    fix: str = ""


#: Fixes for the failure reasons many kinds share; a kind's own ``doctor_fixes`` are tried first. The
#: first whose key is a substring of the reason wins; ``<kind>`` becomes the collector kind.
COMMON_FIXES: tuple[tuple[str, str], ...] = (
    ("auth", "check the credentials under collectors.<kind>.auths (and that their _file is readable by "
     "user giamsat); for SNMPv3 also the auth/priv protocols the device expects"),
    ("refused", "nothing listens there: check the port and that the service runs on the target"),
    ("timeout", "check that the target answers from this machine (routing, firewall, VPN to the site) and "
     "that its timeout is long enough"),
    ("stuck", "a previous call has not returned; check the target and its timeout"),
    ("connect", "check the address, name resolution and routing to the target"),
)  # fmt: skip


# -- HTTP routes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteRequest:
    """A GET request on a collector's route: its path, query parameters (last value of each) and headers
    (names in lower case); ``query_all`` has every value of each parameter, in order (snmp_exporter
    takes ``module`` repeated and refuses a repeated ``target``)."""

    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str] = field(default_factory=dict)
    query_all: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """A route's answer: metric families (rendered by the exporter, in the format the client asked for,
    without ``site``/``target`` labels) or a plain-text message with its status."""

    status: int
    text: str = ""
    families: Sequence[Metric] | None = None
    #: of ``text`` (a page the agent itself serves, such as ``/report``, is HTML)
    content_type: str = "text/plain; charset=utf-8"


class RouteContext(Protocol):
    """What a route handler may read of the running agent."""

    def result(self, job_id: str) -> JobResult | None:
        """The job's latest result, or None when there is none or it is stale."""
        ...

    def has_job(self, job_id: str) -> bool:
        """Whether the current configuration has this job."""
        ...


#: Answers a request, or returns None when it is not for this collector (the next one is asked).
RouteHandler = Callable[[RouteRequest, RouteContext], "Reply | None"]


@dataclass(frozen=True)
class Route:
    """An HTTP path a collector serves. Several collectors may serve one path (``/probe``): each handler
    is asked in table order until one answers."""

    path: str
    handler: RouteHandler


def cached_target_reply(kind: str, target: str, ctx: RouteContext) -> Reply:
    """A configured target's latest result, as ``/probe`` and ``/snmp`` serve it; 404 for a target the
    configuration does not have: a caller can never make the agent probe an address."""
    job_id = f"{kind}/{target}"
    if not ctx.has_job(job_id):
        return Reply(404, f"unknown target {target[:100]!r} for module {kind[:50]!r}")
    result = ctx.result(job_id)
    if result is None:
        return Reply(503, "no fresh result for this target yet")
    return Reply(200, families=result.families)


# -- site inventory shorthand ------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteShorthand:
    """A key of a site in the inventory that expands into targets (``links:`` into probe targets).

    ``model`` validates one list item; ``expand(site_id, items)`` returns target entries (as config
    mappings, by kind) bound to that site; ``kinds`` are the kinds it may generate targets for.
    """

    key: str
    model: type[Model]
    expand: Callable[[str, list[Any]], dict[str, list[dict[str, Any]]]]
    kinds: tuple[str, ...]


# -- the collector -----------------------------------------------------------------------------------


def read_link_status(families: Sequence[Metric], up_metric: str, reason_metric: str | None) -> LinkStatus:
    """Up when a sample of ``up_metric`` is 1; else down, with the ``reason`` label of the sample of
    ``reason_metric`` that is 1 (``down`` when there is none)."""
    up = False
    reason = ""
    for fam in families:
        if fam.name == up_metric:
            up = any(s.value == 1 for s in fam.samples if s.name == up_metric)
        elif reason_metric is not None and fam.name == reason_metric:
            reason = next((str(s.labels.get("reason", "")) for s in fam.samples if s.value == 1), "")
    if up:
        return LINK_UP
    return LinkStatus(False, reason or "down")


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
    #: The gauge saying whether a target answered (``probe_success``, ``snmp_up``) and the family giving
    #: the reason when it did not (``{reason="..."} 1``): read by the default ``link_status``.
    link_metric: ClassVar[str | None] = None
    link_reason_metric: ClassVar[str | None] = None
    #: A run that finds the link down right after it was up is retried at once, and only a failed
    #: retry is recorded: one lost round never turns a site down. A kind that confirms failures itself
    #: (ICMP: a burst of further echoes within the same run) sets this to False.
    confirm_failures: ClassVar[bool] = True
    #: (reason substring, fix) for this kind's own failure reasons, tried before ``COMMON_FIXES``.
    doctor_fixes: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: The inventory key this kind expands into targets, if any (its table line names the key too).
    site_shorthand: ClassVar[SiteShorthand | None] = None

    def __init__(self, settings: CollectorSettings, ctx: CollectorContext) -> None:
        self.settings = settings
        self.ctx = ctx

    # -- configuration --------------------------------------------------------------------------------

    @classmethod
    def pool_size(cls, settings: CollectorSettings) -> int:
        """Threads of this collector's blocking-call pool (e.g. from a max_concurrency setting)."""
        return cls.blocking_threads

    @classmethod
    def serves_without_targets(cls, settings: CollectorSettings) -> bool:
        """Whether the agent starts this kind even when no target of it is configured: it has requests
        to serve (on-demand ``/probe``). A kind with targets is otherwise left out when it has none."""
        return False

    @classmethod
    def check_targets(
        cls, settings: CollectorSettings, targets: Sequence[TargetConfig]
    ) -> list[tuple[int, str, str]]:
        """Problems between targets and settings (unknown auth or module names) as (target index, key,
        message), so ``check-config`` reports them with the file, line and key path."""
        return []

    # -- what a result means --------------------------------------------------------------------------

    @property
    def health_families(self) -> frozenset[str]:
        """Families a series cap never drops besides the ``*_up``-style ones: the declared link metrics."""
        return frozenset(n for n in (self.link_metric, self.link_reason_metric) if n is not None)

    def link_status(self, families: Sequence[Metric]) -> LinkStatus | None:
        """Whether the target of a successful run answered, read from the run's families; None for a
        kind whose results say nothing about a link (this host's metrics).

        The default reads ``link_metric`` (any sample equal to 1 means up) and the ``reason`` label of
        ``link_reason_metric``'s sample set to 1. A failed run is never up: the pipeline reports it as
        down with the run's reason without asking.
        """
        if self.link_metric is None:
            return None
        return read_link_status(families, self.link_metric, self.link_reason_metric)

    # -- doctor ---------------------------------------------------------------------------------------

    @classmethod
    def doctor_checks(cls, settings: CollectorSettings, targets: Sequence[TargetConfig]) -> list[DoctorCheck]:
        """Preflight checks of this kind beyond collecting each target once (which doctor always does):
        permissions, files. Called for every kind in the table, configured or not."""
        return []

    @classmethod
    def fix_for(cls, reason: str) -> str:
        """How to fix a target that failed with ``reason``."""
        for key, fix in (*cls.doctor_fixes, *COMMON_FIXES):
            if key in reason:
                return fix.replace("<kind>", cls.kind)
        return f"run `giamsat once --config.file CONFIG --collector {cls.kind} --log.level debug` and read the log"

    # -- HTTP -----------------------------------------------------------------------------------------

    def routes(self) -> Sequence[Route]:
        """The HTTP routes this collector serves. Every kind serves its configured targets' latest
        results on ``/probe?target=NAME&module=KIND``, blackbox_exporter style (a kind without targets
        answers every target with 404, so a caller can never make the agent probe an address)."""
        return (Route("/probe", self._probe_route),)

    def _probe_route(self, request: RouteRequest, ctx: RouteContext) -> Reply | None:
        target, module = request.query.get("target", ""), request.query.get("module", "")
        if not target:
            return Reply(400, "target parameter is missing")
        if not module:
            return Reply(400, "module parameter is missing")
        if module != self.kind:
            return None
        return cached_target_reply(self.kind, target, ctx)

    # -- running --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open shared resources (sockets, engines) once, before the first ``collect``."""

    @abc.abstractmethod
    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        """Collect once, finishing before ``deadline``. Raise on collector failure; report a down target
        as data."""

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
        deadline: Deadline,
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
