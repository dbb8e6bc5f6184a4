"""/proc/net/udp and udp6: node_exporter's udp_queues collector (queued bytes, summed per direction)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/net/udp", "/proc/net/udp6")


def parse_queues(text: str) -> tuple[float, float] | None:
    """(tx, rx) bytes summed over sockets; ``tx_queue:rx_queue`` is the fifth column, in hex."""
    tx = rx = 0.0
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 5:
            continue
        t, _, r = parts[4].partition(":")
        try:
            tx += int(t, 16)
            rx += int(r, 16)
        except ValueError:
            continue
    return tx, rx


def collect(fs: Files, opts: Options) -> list[Metric]:
    fam = GaugeMetricFamily(
        "node_udp_queues",
        "Number of allocated memory in the kernel for UDP datagrams in bytes.",
        labels=["ip", "queue"],
    )
    for ip, path in (("v4", "/proc/net/udp"), ("v6", "/proc/net/udp6")):
        text = fs.read(path)
        q = None if text is None else parse_queues(text)
        if q is not None:
            fam.add_metric([ip, "tx"], q[0])
            fam.add_metric([ip, "rx"], q[1])
    return [fam] if fam.samples else []
