"""Clock: node_exporter's time collector. ``node_time_seconds`` is filled in when served, so clock
panels show the host's time at the scrape, not at the last collection."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.kernel.scrapetime import ScrapeTimeGauge
from collectors.host.files import Files
from collectors.host.options import Options

PATHS = (
    "/sys/devices/system/clocksource/*/available_clocksource",
    "/sys/devices/system/clocksource/*/current_clocksource",
)


def collect(fs: Files, opts: Options) -> list[Metric]:
    out: list[Metric] = []
    clock = fs.clock()
    if clock is not None:
        doc = "System time in seconds since epoch (1970)."
        out.append(
            ScrapeTimeGauge("node_time_seconds", doc, clock.now)
            if fs.live
            else GaugeMetricFamily("node_time_seconds", doc, value=clock.now)
        )
        zone = GaugeMetricFamily(
            "node_time_zone_offset_seconds", "System time zone offset in seconds.", labels=["time_zone"]
        )
        zone.add_metric([clock.zone], clock.offset)
        out.append(zone)
    base = "/sys/devices/system/clocksource"
    lab = ["clocksource", "device"]
    available = GaugeMetricFamily(
        "node_time_clocksource_available_info",
        "Available clocksources read from '/sys/devices/system/clocksource'.",
        labels=lab,
    )
    current = GaugeMetricFamily(
        "node_time_clocksource_current_info",
        "Current clocksource read from '/sys/devices/system/clocksource'.",
        labels=lab,
    )
    for d in fs.listdir(base):
        if not d.startswith("clocksource") or not d[11:].isdigit():
            continue
        for cs in (fs.read(f"{base}/{d}/available_clocksource") or "").split():
            available.add_metric([cs, d[11:]], 1.0)
        cur = (fs.read(f"{base}/{d}/current_clocksource") or "").strip()
        if cur:
            current.add_metric([cur, d[11:]], 1.0)
    out += [f for f in (available, current) if f.samples]
    return out
