"""A gauge whose value is the wall clock when it is served, not when it was collected.

``node_time_seconds`` compared with Prometheus's own clock shows clock skew; a value taken at
collection time would add up to one interval of false skew. The family carries the collection-time
value (what remote write sends, with the collection timestamp); the exposition replaces it with the
time of the scrape.
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily


class ScrapeTimeGauge(GaugeMetricFamily):
    """A one-sample gauge rendered with ``time.time()`` at the moment of each scrape."""

    scrape_time = True

    def __init__(self, name: str, documentation: str, value: float) -> None:
        super().__init__(name, documentation, value=value)
