"""A fixed agent view for the HTTP endpoint: a real Store with given results, the endpoint's real server.

Tests of the endpoint's connection handling use it in-process (no collectors to wait for); it records
``note_scrape`` calls and can hold a scrape in its own-metrics source until released, to keep slots busy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client.core import Metric

from agent.kernel.collector import Reply, RouteContext, RouteHandler, RouteRequest, cached_target_reply
from agent.kernel.registry import SelfMetrics
from agent.kernel.results import JobResult
from agent.kernel.store import Store
from exporters.prometheus import ExporterServer
from exporters.status import AgentHealth, SiteTree, StatusSnapshot


class StaticAgent:
    def __init__(self, results: Sequence[JobResult] = (), own: Sequence[Metric] = ()) -> None:
        self.store = Store()
        for r in results:
            self.store.put(r)
        self.max_label_length = 256
        self._own = list(own)
        self.self_metrics = SelfMetrics()
        self.self_metrics.register(self.own_metrics)
        self.scrapes: list[tuple[bool, int]] = []
        #: while set, a scrape waits in own_metrics() until ``release`` is set
        self.hold = threading.Event()
        self.release = threading.Event()
        self.held = threading.Semaphore(0)  # one release per scrape that started waiting

    def own_metrics(self) -> list[Metric]:
        if self.hold.is_set():
            self.held.release()
            self.release.wait(30)
        return list(self._own)

    def is_ready(self) -> bool:
        return True

    def has_job(self, job_id: str) -> bool:
        return self.store.get(job_id) is not None

    def result(self, job_id: str) -> JobResult | None:
        return self.store.get(job_id)

    def routes(self, path: str) -> tuple[RouteHandler, ...]:
        """``/probe?module=KIND`` for the kinds of the results it holds, as their collectors serve it."""
        if path != "/probe":
            return ()
        return (_probe,)

    def status(self) -> StatusSnapshot:
        return StatusSnapshot(SiteTree([]), {}, AgentHealth("test", "-", True, 0.0, True, ()))

    def request_reload(self) -> tuple[bool, str]:
        return True, "configuration reloaded"

    def note_scrape(self, rejected: bool, conflicts: int) -> None:
        self.scrapes.append((rejected, conflicts))


def _probe(request: RouteRequest, ctx: RouteContext) -> Reply | None:
    target, module = request.query.get("target", ""), request.query.get("module", "")
    if not target or not module:
        return Reply(400, "target and module parameters are needed")
    return cached_target_reply(module, target, ctx)


@contextmanager
def serve(agent: StaticAgent, max_concurrent: int = 8, **kw: Any) -> Iterator[ExporterServer]:
    """The endpoint on a free loopback port, in a thread; shut down and closed on exit."""
    server = ExporterServer(("127.0.0.1", 0), agent, max_concurrent, **kw)
    agent.self_metrics.register(server.connection_metrics)  # as the agent wires its server
    thread = server.serve_in_thread()
    try:
        yield server
    finally:
        agent.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
