"""The running agent: wires the pieces together. Loads the config, starts collection, the result
pipeline's subscribers (site state, remote write) and the HTTP endpoint; reloads, stops, sd_notify.

A reload builds the new configuration's collectors completely before the old ones are stopped; a bad
file (or a collector that fails to start) leaves the old configuration running and is reported in
``giamsat_config_last_reload_successful``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, Metric

from agent.config import LoadedConfig, load_config, parse_listen_address
from agent.kernel.collector import Reply, RouteContext, RouteHandler, RouteRequest
from agent.kernel.errors import ConfigError, StartupError
from agent.kernel.pipeline import Pipeline
from agent.kernel.registry import SelfMetrics
from agent.kernel.results import JobResult
from agent.kernel.store import Store
from agent.ledger.recorder import LedgerRecorder
from agent.scheduler import Runner
from agent.selfmetrics import ReloadStatus, ScrapeStats, self_metrics
from agent.sites import SiteDetail, SiteTracker
from agent.statusview import agent_health, site_tree
from exporters.prometheus import ExporterServer
from exporters.status import SiteTree, StatusSnapshot
from exporters.webconfig import WebConfig

if TYPE_CHECKING:
    from exporters.remote_write import RemoteWriteSet, ResultHold

log = logging.getLogger("giamsat")

#: Seconds between site-state recomputations; the state file is considered every SITE_SAVE_TICKS.
SITE_TICK = 1.0
SITE_SAVE_TICKS = 5


#: mallopt's parameter for the number of glibc malloc arenas
M_ARENA_MAX = -8


def limit_malloc_arenas(jobs: int) -> bool:
    """One glibc malloc arena for all threads instead of one per thread (up to 8 per core).

    The endpoint's threads render and write the large answer while the event loop builds results, and
    every arena keeps its own free fragments: at 5 000 ICMP targets one arena holds 15-17 MiB less
    (bench/icmp_soak.py: steady RSS 135 -> 118 MiB, peak 141 -> 129). The threads take the GIL for
    nearly every allocation anyway, so sharing the arena costs no measurable CPU. A small agent gains
    nothing from it (docs/benchmarks.md) and is left alone unless ctypes is loaded already; an
    explicit ``MALLOC_ARENA_MAX`` in the environment wins.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = _glibc("mallopt", jobs)
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, 1))


def release_free_memory(jobs: int) -> bool:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``) after a load.

    Parsing and validating a large configuration leaves megabytes free inside the heap that glibc
    keeps (5 000 ICMP targets: ~4 MiB); the agent would carry them for its whole life. ctypes costs
    ~0.8 MiB the first time, so a small configuration only trims if something already imported it
    (the host collector does). False where there is no glibc.
    """
    trim = _glibc("malloc_trim", jobs)
    if trim is None:
        return False
    trim(0)
    return True


def _glibc(name: str, jobs: int) -> Callable[..., int] | None:
    """A function of the C library, for a configuration of ``jobs`` jobs: None where there is none, and
    for a small configuration unless ctypes is loaded already (it costs ~0.8 MiB, more than a small
    agent gains)."""
    if "ctypes" not in sys.modules and jobs < 1000:
        return None
    import ctypes

    function: Callable[..., int] | None = getattr(ctypes.CDLL(None), name, None)
    return function


#: Young objects that may pile up before the cyclic collector runs, at the least and per job.
GC_YOUNG_MIN = 50_000
GC_YOUNG_PER_JOB = 40


def gc_thresholds(jobs: int) -> tuple[int, int, int]:
    """The cyclic collector's thresholds for a configuration of ``jobs`` jobs.

    A round allocates some 30 tracked objects per target (the engine's probe state, the result's
    families, their rendering) and frees about as many when the previous round's results are
    replaced: results are not cyclic, so reference counting frees them and the collector finds
    nothing. It still runs whenever allocations outnumber frees by the young threshold, and then walks
    every young object's references, which on a fragmented heap costs a cache miss each (measured with
    gc.callbacks at 5 000 ICMP targets: ~1.6 young collections per round of 60-110 ms each, a fifth of
    the round's CPU). Scaling the threshold with the jobs keeps one round's churn below it; cyclic
    garbage, which the agent rarely makes, waits a little longer to be freed.
    """
    return (GC_YOUNG_MIN + GC_YOUNG_PER_JOB * jobs, 20, 20)


def settle_gc() -> None:
    """Once a configuration's first round is in: what that round built to last (each target's histogram
    and address state, the collectors' caches) is frozen out of the cyclic collector's reach with the
    configuration, and the young count starts again from zero, so the first rounds' growth never adds
    up to a young collection over the whole heap later (frozen objects are still freed when their last
    reference goes; only a cycle among them would wait for the next reload)."""
    gc.collect()
    gc.freeze()


def sd_notify(message: str) -> bool:
    """Send one message to systemd's notify socket, if there is one (Type=notify units)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("cannot notify systemd", extra={"error": exc.strerror})
        return False


class Agent:
    """Implements ``exporters.prometheus.AgentView`` (and the collectors' ``RouteContext``) over the
    current configuration."""

    def __init__(
        self, config_path: Path, listen_address: str | None = None, web_config_file: Path | None = None
    ) -> None:
        self.config_path = config_path
        self.listen_override = listen_address
        self.web_config_override = web_config_file
        self.store = Store()
        self.pipeline = Pipeline(self.store)
        self.reload_status = ReloadStatus()
        self.scrape_stats = ScrapeStats()
        self.loaded: LoadedConfig | None = None
        self.runner: Runner | None = None
        self.max_label_length = 256
        self.server: ExporterServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self.remote_write: RemoteWriteSet | None = None
        self._remote_write_key: object = None
        self.sites: SiteTracker | None = None
        self.ledger: LedgerRecorder | None = None
        self._routes: dict[str, tuple[RouteHandler, ...]] = {}
        self._clock_steps = 0  # seen by the runners of earlier configurations
        self._ready = False
        self._status_tree: tuple[object, SiteTree] | None = None
        self._status_details: tuple[SiteTracker, float, Mapping[str, SiteDetail]] | None = None
        self._warmups: set[asyncio.Task[None]] = set()
        #: the agent's own metrics, in the order they are exposed (the HTTP server adds its own last)
        self.self_metrics = SelfMetrics()
        for source in (
            self._core_metrics,
            self._site_metrics,
            self._clock_metrics,
            self._remote_write_metrics,
            self._ledger_metrics,
        ):
            self.self_metrics.register(source)
        self.pipeline.subscribe(self._site_result)
        self.pipeline.subscribe(self._ledger_result)

    # --- own metrics --------------------------------------------------------------------------------
    def _core_metrics(self) -> list[Metric]:
        runner = self.runner
        blocking = (
            {k: (c.ctx.blocking.stuck, c.ctx.blocking.abandoned_total) for k, c in runner.collectors.items()}
            if runner
            else None
        )
        return self_metrics(
            self.store,
            self.loaded.inventory if self.loaded else None,
            self.reload_status,
            self.scrape_stats,
            blocking,
        )

    def _site_metrics(self) -> list[Metric]:
        sites = self.sites
        return sites.collect() if sites is not None else []

    def _clock_metrics(self) -> list[Metric]:
        steps = CounterMetricFamily(
            "giamsat_clock_steps",
            "Wall-clock steps the agent saw (and rescheduled every job after): check the host's time sync.",
            value=self._clock_steps + (self.runner.clock_steps_total if self.runner else 0),
        )
        return [steps]

    def _remote_write_metrics(self) -> list[Metric]:
        rws = self.remote_write
        return rws.collect() if rws is not None else []

    def _ledger_metrics(self) -> list[Metric]:
        ledger = self.ledger
        return ledger.collect() if ledger is not None else []

    # --- AgentView ----------------------------------------------------------------------------------
    def is_ready(self) -> bool:
        """Ready once a first collection round has finished; a reload does not take that back (the
        results of the old configuration are served until the new one's arrive)."""
        if not self._ready:
            runner = self.runner
            self._ready = runner is not None and runner.first_round_done.is_set()
        return self._ready

    def routes(self, path: str) -> tuple[RouteHandler, ...]:
        """The handlers the current configuration's collectors serve ``path`` with, in table order."""
        if path == "/report":
            return (self._report_page,)
        return self._routes.get(path, ())

    def _report_page(self, request: RouteRequest, ctx: RouteContext) -> Reply:
        """The current month so far, from the live ledger (``?lang=en`` for English)."""
        from agent.report.live import render_current_month

        ledger = self.ledger
        if ledger is None:
            return Reply(503, "the outage ledger is not running (see the log)")
        status, page = render_current_month(ledger, request.query.get("lang", "vi"))
        return Reply(status, page, content_type="text/html; charset=utf-8")

    def result(self, job_id: str) -> JobResult | None:
        return self.store.get(job_id)

    def has_job(self, job_id: str) -> bool:
        runner = self.runner
        return runner is not None and runner.has_job(job_id)

    def status(self) -> StatusSnapshot:
        """A snapshot for the status page: the tree (built once per inventory), every site's state and
        the collectors' health; read from the HTTP threads, so nothing here waits on the event loop."""
        loaded, runner, sites = self.loaded, self.runner, self.sites
        inventory = loaded.inventory if loaded else None
        cached = self._status_tree
        if cached is None or cached[0] is not inventory:
            cached = self._status_tree = (inventory, site_tree(inventory) if inventory else SiteTree([]))
        health = agent_health(
            runner.jobs if runner else (),
            self.store.health_snapshot(),
            self.reload_status,
            str(self.config_path),
            self.is_ready(),
        )
        language = loaded.config.agent.status_page_language if loaded else "auto"
        return StatusSnapshot(cached[1], self._site_details(sites), health, language)

    def _site_details(self, sites: SiteTracker | None) -> Mapping[str, SiteDetail]:
        """Every site's detail, copied at most once per SITE_TICK (states change only on a tick): the
        copy holds the tracker's lock, which a scrape takes too, so a crowd of browsers cannot add to it."""
        if sites is None:
            return {}
        held = self._status_details
        now = time.monotonic()
        if held is None or held[0] is not sites or now - held[1] >= SITE_TICK:
            held = self._status_details = (sites, now, sites.details())
        return held[2]

    def request_reload(self) -> tuple[bool, str]:
        """Thread-safe reload for the HTTP endpoint; waits for the outcome."""
        loop = self._loop
        if loop is None:
            return False, "agent is not running"
        fut = asyncio.run_coroutine_threadsafe(self.reload(), loop)
        try:
            return fut.result(timeout=60)
        except FutureTimeout:
            return False, "reload did not finish within 60s"
        except FutureCancelled:  # the agent is stopping and cancelled it
            return False, "reload cancelled: the agent is stopping"

    def note_scrape(self, rejected: bool, conflicts: int) -> None:
        if rejected:
            self.scrape_stats.rejected_total += 1
        self.scrape_stats.conflicts_total += conflicts

    # --- subscribers --------------------------------------------------------------------------------
    def _site_result(self, result: JobResult) -> None:
        sites = self.sites
        if sites is not None:
            sites.on_result(result)

    def _ledger_result(self, result: JobResult) -> None:
        ledger = self.ledger
        if ledger is not None:
            ledger.on_result(result)

    # --- lifecycle ----------------------------------------------------------------------------------
    async def _apply(self, loaded: LoadedConfig) -> None:
        """Start collectors for ``loaded``; on success stop the old ones and switch over."""
        cfg = loaded.config
        new = Runner(loaded, self.pipeline)
        await new.open()  # raises -> old config keeps running, untouched
        try:
            await self._apply_remote_write(loaded)
        except Exception:
            await new.close()
            raise
        old = self.runner
        if old is not None:
            await old.close()  # its runs still going record nothing from here (Runner.closed)
            self._clock_steps += old.clock_steps_total
        # Only now does the new configuration own the store: a reload that failed above changed nothing.
        self.store.stale_after_intervals = cfg.agent.stale_after_intervals
        self.pipeline.max_series_per_target = cfg.agent.max_series_per_target
        self.store.retain(new.job_ids)
        # Site state survives a reload through its file: the new inventory may differ.
        if self.sites is not None:
            await asyncio.to_thread(self.sites.save, True)
        tracker = SiteTracker(loaded.inventory, cfg.agent.state_dir, cfg.agent.stale_after_intervals)
        await self._apply_ledger(loaded)
        await asyncio.to_thread(tracker.load)
        now = time.time()
        tracker.update(self.store.snapshot(now), now)  # the results the new inventory's uplinks have
        routes: dict[str, list[RouteHandler]] = {}
        for collector in new.collectors.values():
            for route in collector.routes():
                routes.setdefault(route.path, []).append(route.handler)
        self._routes = {path: tuple(handlers) for path, handlers in routes.items()}
        self.loaded, self.runner, self.sites = loaded, new, tracker
        self.max_label_length = cfg.agent.max_label_length
        # Configuration, modules and collectors live as long as the config: move them out of the
        # collector's reach so each full collection does not walk them again (measured with
        # bench/icmp.py: 10 000 probe targets cost 4.5 s CPU per round with defaults, 2.1 s tuned).
        # Unfreeze first: what the previous configuration left behind must be collectable.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*gc_thresholds(len(new.jobs)))
        release_free_memory(len(new.jobs))
        new.start_schedule()
        self._warmups.add(asyncio.get_running_loop().create_task(self._end_site_warmup(new, tracker)))

    async def _end_site_warmup(self, runner: Runner, tracker: SiteTracker) -> None:
        """Sites keep their saved state until the first round is in (bounded by the longest timeout,
        twice: a failure is retried before it is recorded), so a restart during an outage never shows a
        down site as unknown to a scrape."""
        until = time.monotonic() + 2 * max((j.timeout for j in runner.jobs), default=0) + 2
        try:
            # ``done`` may be set early by the readiness timeout; the round itself is what counts here
            while not runner.first_round.complete and time.monotonic() < until:
                try:
                    await asyncio.wait_for(runner.first_round_done.wait(), until - time.monotonic())
                except TimeoutError:
                    break
                if not runner.first_round.complete:
                    await asyncio.sleep(0.5)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._warmups.discard(task)
        tracker.end_warmup()
        if runner is self.runner and runner.first_round.complete:
            settle_gc()

    async def _apply_ledger(self, loaded: LoadedConfig) -> None:
        """One recorder per state directory, kept across reloads; a new inventory is journaled."""
        ledger, state_dir = self.ledger, loaded.config.agent.state_dir
        if ledger is not None and ledger.directory.parent == state_dir:
            ledger.set_inventory(loaded.inventory)
            return
        if ledger is not None:
            await asyncio.to_thread(ledger.close)
        self.ledger = await asyncio.to_thread(LedgerRecorder.open, state_dir, loaded.inventory)

    async def _apply_remote_write(self, loaded: LoadedConfig) -> None:
        """(Re)start remote write only when its settings changed; the buffers carry over restarts.

        A buffer directory admits one writer at a time, so the old set closes before the new one
        starts; if the new one cannot start, the old one is started again and the error raised.
        """
        cfg = loaded.config
        key = (tuple(cfg.remote_write), cfg.agent.state_dir)
        if key == self._remote_write_key:
            return
        if not cfg.remote_write and self.remote_write is None:
            self._remote_write_key = key
            return
        # Imports the HTTP client: only when used.
        from exporters.remote_write import RemoteWriteSet, ResultHold

        old, old_key = self.remote_write, self._remote_write_key
        # Results that finish while no set is attached are held and handed to the next one, first.
        hold = ResultHold()
        self.pipeline.subscribe(hold.on_result)
        try:
            if old is not None:
                self._detach_remote_write(old)
                await old.close()
            try:
                if cfg.remote_write:
                    rws = RemoteWriteSet(cfg.remote_write, cfg.agent.state_dir)
                    await rws.start()
                    self._attach_remote_write(rws, hold)
                self._remote_write_key = key
            except Exception:
                # No settings are running now: whatever the next reload brings must (re)start a set,
                # even the settings that were running before.
                self._remote_write_key = None
                if old is not None and self.loaded is not None:
                    prev = self.loaded.config
                    try:
                        again = RemoteWriteSet(prev.remote_write, prev.agent.state_dir)
                        await again.start()
                    except Exception as exc:
                        log.error(
                            "remote write could not be restarted with the old settings either; it is off "
                            "until a reload succeeds",
                            extra={"error": repr(exc)},
                        )
                    else:
                        self._attach_remote_write(again, hold)
                        self._remote_write_key = old_key
                raise
        finally:
            if self.pipeline.subscribed(hold.on_result):  # nothing attached: remote write is off
                self.pipeline.unsubscribe(hold.on_result)
                hold.release_to(None)

    def _attach_remote_write(self, rws: RemoteWriteSet, hold: ResultHold | None = None) -> None:
        self.remote_write = rws
        if hold is not None:
            # In one event-loop step: the held results go first, then the set takes results directly.
            self.pipeline.unsubscribe(hold.on_result)
            hold.release_to(rws)
        self.pipeline.subscribe(rws.on_result)

    def _detach_remote_write(self, rws: RemoteWriteSet) -> None:
        self.pipeline.unsubscribe(rws.on_result)
        self.remote_write = None

    async def reload(self) -> tuple[bool, str]:
        async with self._reload_lock:
            self.reload_status.reloads_total += 1
            try:
                # Off the event loop: a large inventory takes seconds to parse and validate, and
                # bcrypt-checking the web config's users is slow on purpose; collection goes on meanwhile.
                loaded = await asyncio.to_thread(load_config, self.config_path)
                web = await asyncio.to_thread(self._load_web_config, loaded)  # bad web config: rejected
                await self._apply(loaded)
                if self.server is not None:
                    self.server.web_config = web
                    self.server.set_scrape_limit(loaded.config.agent.max_concurrent_scrapes)
            except ConfigError as exc:
                self.reload_status.successful = False
                self.reload_status.failures_total += 1
                for p in exc.problems:
                    log.error(
                        "reload rejected: bad configuration; the old one keeps running",
                        extra={"problem": str(p)},
                    )
                return False, f"reload rejected, old configuration kept:\n{exc}"
            except Exception as exc:
                self.reload_status.successful = False
                self.reload_status.failures_total += 1
                log.error("reload failed; the old configuration keeps running", extra={"error": repr(exc)})
                return False, f"reload failed, old configuration kept: {type(exc).__name__}"
            self.reload_status.successful = True
            self.reload_status.last_success_timestamp = time.time()
            if self.loaded and self.loaded.config.agent.listen_address != self._listen_address_in_use:
                log.warning("listen_address changes take effect on restart")
            log.info("configuration reloaded", extra={"jobs": len(self.runner.jobs) if self.runner else 0})
            return True, "configuration reloaded"

    _listen_address_in_use = ""

    def _load_web_config(self, loaded: LoadedConfig) -> WebConfig:
        path = self.web_config_override or loaded.config.agent.web_config_file
        if path is None:
            return WebConfig.disabled()
        if not path.is_absolute():
            path = loaded.path.parent / path
        return WebConfig.load(path)

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        # Many small short-lived objects per probe round: collect young objects less often.
        gc.set_threshold(*gc_thresholds(0))
        loaded = load_config(self.config_path)  # ConfigError goes to the CLI: exit 2 before anything starts
        # Before the endpoint's threads exist: they would each get a malloc arena of their own.
        limit_malloc_arenas(sum(len(loaded.config.targets_of(k)) for k in loaded.config.kinds))
        listen = self.listen_override or loaded.config.agent.listen_address
        self._listen_address_in_use = loaded.config.agent.listen_address
        host, port = parse_listen_address(listen)
        web = self._load_web_config(loaded)  # ConfigError: exit 2, like the main config
        try:
            self.server = ExporterServer((host, port), self, loaded.config.agent.max_concurrent_scrapes, web)
            self.self_metrics.register(self.server.connection_metrics)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {listen}: {exc.strerror}; choose another --web.listen-address"
            ) from None
        await self._apply(loaded)
        self.server.serve_in_thread()
        log.info(
            "giamsat started",
            extra={
                "listen": f"{host}:{self.server.server_address[1]}",
                "config": str(self.config_path),
                "sites": len(loaded.inventory),
                "jobs": len(self.runner.jobs) if self.runner else 0,
            },
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stop.set)
        self._loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        tasks = [
            asyncio.create_task(self._notify_ready()),
            asyncio.create_task(self._watchdog()),
            asyncio.create_task(self._track_sites()),
        ]
        await self._stop.wait()
        log.info("stopping")
        sd_notify("STOPPING=1")
        for t in tasks:
            t.cancel()
        self.server.shutdown()
        self.server.server_close()
        if self.runner is not None:
            try:
                await asyncio.wait_for(self.runner.close(), 4)
            except TimeoutError:
                log.warning("collectors did not stop within 4s; exiting anyway")
        if self.remote_write is not None:
            try:
                await asyncio.wait_for(self.remote_write.close(), 3)
            except TimeoutError:
                log.warning("remote write did not close within 3s; its buffer is crash-safe")
        if self.sites is not None:
            self.sites.save(force=True)
        if self.ledger is not None:
            self.ledger.close()
        return 0

    def stop(self) -> None:
        self._stop.set()

    async def _track_sites(self) -> None:
        """Keep site state current (it also changes with time alone, as results go stale) and write
        last-up times, off the scrape path."""
        ticks = 0
        while True:
            await asyncio.sleep(SITE_TICK)
            sites = self.sites
            if sites is None:
                continue
            now = time.time()
            sites.tick(now)
            ledger = self.ledger
            if ledger is not None:
                # off the loop: a state change is journaled with an fsync
                await asyncio.to_thread(ledger.observe, sites.states(), now)
            ticks += 1
            if ticks % SITE_SAVE_TICKS == 0:
                await asyncio.to_thread(sites.save)

    async def _notify_ready(self) -> None:
        runner = self.runner
        if runner is None:
            return
        # Ready after the first collection round, so the first scrape already has data; a target that
        # never answers cannot hold readiness back beyond its timeout.
        deadline = max((j.timeout for j in runner.jobs), default=0) + 2
        try:
            await asyncio.wait_for(runner.first_round_done.wait(), deadline)
        except TimeoutError:
            runner.first_round_done.set()
        sd_notify("READY=1")

    async def _watchdog(self) -> None:
        usec = os.environ.get("WATCHDOG_USEC")
        if (
            not usec
            or not usec.isdigit()
            or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid())
        ):
            return
        period = int(usec) / 1e6 / 2
        while True:
            # Sent from the event loop itself: if the loop wedges, systemd stops hearing from us and restarts.
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(period)
