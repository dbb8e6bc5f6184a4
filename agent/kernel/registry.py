"""The agent's own metrics, from one registry: every component registers a source, a scrape reads them all.

client_python's ``CollectorRegistry`` would do, but it isolates nothing: one source that raises breaks the
whole ``/metrics`` answer. Here a failing source is logged once (until it works again) and left out.
Sources are read in the order they registered, which is the order the families are exposed in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from prometheus_client.core import Metric

log = logging.getLogger("giamsat")

#: Returns a component's own metric families; called on every scrape, from the HTTP threads.
MetricSource = Callable[[], Iterable[Metric]]


class SelfMetrics:
    """Ordered sources of the agent's own families."""

    def __init__(self) -> None:
        self._sources: tuple[MetricSource, ...] = ()
        self._failing: set[int] = set()
        self._lock = threading.Lock()

    def register(self, source: MetricSource) -> None:
        with self._lock:
            self._sources = (*self._sources, source)

    def unregister(self, source: MetricSource) -> None:
        with self._lock:
            sources = list(self._sources)
            sources.remove(source)
            self._sources = tuple(sources)

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        for i, source in enumerate(self._sources):
            try:
                out.extend(source())
            except Exception:
                if i not in self._failing:
                    self._failing.add(i)
                    log.exception("own metrics source failed", extra={"source": repr(source)[:200]})
                continue
            self._failing.discard(i)
        return out
