"""/proc/net/arp: node_exporter's arp collector (entries per device)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/net/arp",)


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/net/arp")
    if text is None:
        return []
    counts: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 6:
            counts[parts[5]] = counts.get(parts[5], 0) + 1
    fam = GaugeMetricFamily("node_arp_entries", "ARP entries by device", labels=["device"])
    for dev in sorted(counts):
        fam.add_metric([dev], counts[dev])
    return [fam]
