"""node_time_seconds is the host's clock when served, not when collected (clock panels show no false
skew of up to one interval), while remote write keeps the collection-time value."""

from __future__ import annotations

import pytest
from prometheus_client.core import GaugeMetricFamily

from agent.kernel.results import JobResult
from agent.kernel.scrapetime import ScrapeTimeGauge
from collectors.host.files import Files
from collectors.host.options import Options
from collectors.host.parts import time as time_part
from exporters.exposition import ResultRenderCache, render_openmetrics, render_text


def result(site: str | None = "tinh") -> JobResult:
    fams = (
        ScrapeTimeGauge("node_time_seconds", "System time in seconds since epoch (1970).", 1000.0),
        GaugeMetricFamily("node_load1", "1m load average.", value=0.5),
    )
    return JobResult("host", "host", None, site, fams, 1000.0, 0.0, True)


def test_rendered_with_the_scrape_time_even_from_the_render_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    r, cache = result(), ResultRenderCache()
    for now in (2000.5, 2015.25):
        monkeypatch.setattr("exporters.exposition.time.time", lambda now=now: now)
        text = render_text([r], [], 1024, result_cache=cache)[0].decode()
        assert f'node_time_seconds{{site="tinh"}} {now}\n' in text
        assert 'node_load1{site="tinh"} 0.5\n' in text
        om = render_openmetrics([r], [], 1024, result_cache=cache)[0].decode()
        assert f'node_time_seconds{{site="tinh"}} {now}\n' in om


def test_collection_value_stays_in_the_family() -> None:
    # what remote write reads: the value at collection, sent with the collection timestamp
    [sample] = result().families[0].samples
    assert sample.value == 1000.0


def test_local_clock_is_scrape_time_a_tree_is_not(tmp_path: object) -> None:
    live = {f.name: f for f in time_part.collect(Files("/"), Options())}
    assert getattr(live["node_time_seconds"], "scrape_time", False) is True
    tree = {f.name: f for f in time_part.collect(Files(str(tmp_path)), Options())}
    assert getattr(tree["node_time_seconds"], "scrape_time", False) is False
