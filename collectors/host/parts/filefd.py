"""/proc/sys/fs/file-nr: node_exporter's filefd collector."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/sys/fs/file-nr",)


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/sys/fs/file-nr")
    parts = (text or "").split()
    try:
        allocated, maximum = float(parts[0]), float(parts[2])
    except (IndexError, ValueError):
        return []
    return [
        GaugeMetricFamily("node_filefd_allocated", "File descriptor statistics: allocated.", value=allocated),
        GaugeMetricFamily("node_filefd_maximum", "File descriptor statistics: maximum.", value=maximum),
    ]
