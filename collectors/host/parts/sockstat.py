"""/proc/net/sockstat and sockstat6: node_exporter's sockstat collector."""

from __future__ import annotations

import resource

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/net/sockstat", "/proc/net/sockstat6")


def parse_sockstat(text: str) -> list[tuple[str, str, float]]:
    """``TCP: inuse 5 orphan 0`` lines -> (protocol, state, value)."""
    out: list[tuple[str, str, float]] = []
    for line in text.splitlines():
        proto, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) % 2:
            continue
        for state, raw in zip(fields[::2], fields[1::2], strict=True):
            try:
                out.append((proto.strip(), state, float(raw)))
            except ValueError:
                continue
    return out


def collect(fs: Files, opts: Options) -> list[Metric]:
    page = float(resource.getpagesize())
    out: list[Metric] = []
    for path in PATHS:
        text = fs.read(path)
        if text is None:
            continue
        for proto, state, value in parse_sockstat(text):
            if proto == "sockets":
                out.append(
                    GaugeMetricFamily(
                        "node_sockstat_sockets_used", "Number of IPv4 sockets in use.", value=value
                    )
                )
                continue
            out.append(
                GaugeMetricFamily(
                    f"node_sockstat_{proto}_{state}",
                    f"Number of {proto} sockets in state {state}.",
                    value=value,
                )
            )
            if state == "mem":  # pages; node_exporter adds the same figure in bytes
                out.append(
                    GaugeMetricFamily(
                        f"node_sockstat_{proto}_mem_bytes",
                        f"Number of {proto} sockets in state mem_bytes.",
                        value=value * page,
                    )
                )
    return out
