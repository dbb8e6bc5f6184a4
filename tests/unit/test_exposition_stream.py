"""The streamed answer is byte for byte the joined one, in both formats, with the length it announces."""

from __future__ import annotations

import gzip
import re
import time
import weakref

import pytest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from agent.kernel.results import JobResult
from agent.kernel.scrapetime import ScrapeTimeGauge
from exporters.exposition import (
    OwnFamilyCache,
    ResultRenderCache,
    render_exposition,
    render_openmetrics,
    render_text,
)
from exporters.prometheus import coalesced, gzipped


def result(job: str, fams: list[Metric], site: str | None, target: str | None) -> JobResult:
    return JobResult(job, job.split("/")[0], target, site, tuple(fams), time.time(), 0.01, True)


def families(i: int) -> list[Metric]:
    g = GaugeMetricFamily("probe_success", "up", value=i % 2)
    c = CounterMetricFamily("ifHCInOctets", "bare counter", labels=["ifIndex"])
    c.add_metric(["1"], 12345 + i)
    t = CounterMetricFamily("giamsat_things", "counted", labels=["kind"])
    t.add_metric(["a"], i, timestamp=1_700_000_000.5)  # timestamped: OpenMetrics lines differ
    info = InfoMetricFamily("snmp_system", "system", labels=[])
    info.add_metric([], {"sysName": f"r{i}"})
    h = HistogramMetricFamily("probe_rtt_seconds", "rtt", unit="seconds")
    h.add_metric([], buckets=[("0.001", 1), ("0.01", 2), ("+Inf", 3)], sum_value=0.02)
    empty = GaugeMetricFamily("nothing_here", "no samples")
    own_site = GaugeMetricFamily("uplink", "sample with its own site", labels=["site"])
    own_site.add_metric(["elsewhere"], 1)
    return [g, c, t, info, h, empty, own_site]


def results() -> list[JobResult]:
    out = [result(f"icmp/t{i}", families(i), "tinh", f"t{i}") for i in range(300)]
    out.append(result("icmp/dup", families(1), "tinh", "t1"))  # the same series again: conflicts
    clash = GaugeMetricFamily("probe_success", "another type")
    clash.type = "counter"
    out.append(result("other/x", [clash], "tinh", "x"))
    return out


OWN = [GaugeMetricFamily("giamsat_up", "own", value=1)]


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
@pytest.mark.parametrize("cached", [False, True], ids=["fresh", "cached"])
def test_pieces_are_the_joined_answer(openmetrics: bool, cached: bool) -> None:
    rs = results()
    joined_render = render_openmetrics if openmetrics else render_text
    caches = (OwnFamilyCache(), ResultRenderCache()) if cached else (None, None)
    joined, conflicts = joined_render(rs, OWN, 256, *caches)
    for _ in range(2 if cached else 1):  # the second time from the caches
        body, streamed_conflicts = render_exposition(rs, OWN, 256, openmetrics, *caches)
        streamed = b"".join(body.pieces())
        assert streamed == joined
        assert body.length == len(joined)
        assert streamed_conflicts == conflicts > 0


def test_scrape_time_gauge_has_the_time_of_the_scrape_in_pieces_and_length() -> None:
    own = [ScrapeTimeGauge("node_time_seconds", "clock", 1.0)]
    before = time.time()
    body, _ = render_exposition([], own, 256, openmetrics=True)
    text = b"".join(body.pieces())
    assert len(text) == body.length
    value = float(re.findall(rb"^node_time_seconds (\S+)$", text, re.MULTILINE)[0])
    assert before <= value <= time.time()


def test_coalesced_slices_keep_the_bytes_and_their_order() -> None:
    pieces = [bytes([i % 251]) * (i * 37 % 5000) for i in range(2000)] + [b"x" * 300_000, b"tail"]
    slices = [bytes(s) for s in coalesced(pieces, 64 * 1024)]
    assert b"".join(slices) == b"".join(pieces)
    assert all(len(s) < 2 * 64 * 1024 or s == b"x" * 300_000 for s in slices)


def test_gzipped_stream_decompresses_to_the_input() -> None:
    chunks = [b"probe_success 1\n" * 10_000, b"", b"more\n" * 3]
    assert gzip.decompress(b"".join(gzipped(chunks))) == b"".join(chunks)


def test_own_family_cache_keeps_what_its_source_keeps_and_nothing_else() -> None:
    cache = OwnFamilyCache()
    kept = GaugeMetricFamily("giamsat_site_up", "site", labels=["site"])
    kept.add_metric(["xa-1"], 1)
    rf = cache.render([kept], 256)[0]
    assert cache.render([kept], 256)[0] is rf  # the source still holds it: not rendered again
    rebuilt = GaugeMetricFamily("giamsat_collector_success", "per job", labels=["target"])
    rebuilt.add_metric(["t1"], 1)
    gone = weakref.ref(rebuilt)
    body, _ = render_exposition([], [kept, rebuilt], 256, False, cache)
    assert b'giamsat_collector_success{target="t1"} 1.0' in b"".join(body.pieces())
    del rebuilt, body
    assert gone() is None  # the cache did not keep the scrape's families alive
    again = GaugeMetricFamily("giamsat_collector_success", "per job", labels=["target"])
    again.add_metric(["t1"], 0)
    body, _ = render_exposition([], [kept, again], 256, False, cache)
    assert b'giamsat_collector_success{target="t1"} 0.0' in b"".join(body.pieces())
