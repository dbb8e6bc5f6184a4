"""/proc/loadavg: node_exporter's loadavg collector."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/loadavg",)


def parse_loadavg(text: str) -> tuple[float, float, float] | None:
    parts = text.split()
    try:
        return float(parts[0]), float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        return None


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/loadavg")
    loads = None if text is None else parse_loadavg(text)
    if loads is None:
        return []
    return [
        GaugeMetricFamily(f"node_load{n}", f"{n}m load average.", value=v)
        for n, v in zip((1, 5, 15), loads, strict=True)
    ]
