"""/proc/sys/net/netfilter and /proc/net/stat/nf_conntrack: node_exporter's conntrack collector."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options
from collectors.host.parts.common import read_number

PATHS = (
    "/proc/sys/net/netfilter/nf_conntrack_count",
    "/proc/sys/net/netfilter/nf_conntrack_max",
    "/proc/net/stat/nf_conntrack",
)

_STATS = (
    ("found", "Number of searched entries which were successful."),
    ("invalid", "Number of packets seen which can not be tracked."),
    ("ignore", "Number of packets seen which are already connected to a conntrack entry."),
    ("insert", "Number of entries inserted into the list."),
    ("insert_failed", "Number of entries for which list insertion was attempted but failed."),
    ("drop", "Number of packets dropped due to conntrack failure."),
    ("early_drop", "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached."),
    ("search_restart", "Number of conntrack table lookups which had to be restarted due to hashtable resizes."),
)  # fmt: skip


def parse_stat(text: str) -> dict[str, float]:
    """Per-cpu hex columns under a header line -> the columns summed over cpus."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return {}
    header, out = lines[0], dict[str, float]()
    for row in lines[1:]:
        for key, raw in zip(header, row, strict=False):
            try:
                out[key] = out.get(key, 0.0) + int(raw, 16)
            except ValueError:
                continue
    return out


def collect(fs: Files, opts: Options) -> list[Metric]:
    count = read_number(fs, "/proc/sys/net/netfilter/nf_conntrack_count")
    if count is None:
        return []  # no conntrack module loaded
    out: list[Metric] = [
        GaugeMetricFamily(
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
            value=count,
        )
    ]
    limit = read_number(fs, "/proc/sys/net/netfilter/nf_conntrack_max")
    if limit is not None:
        out.append(
            GaugeMetricFamily(
                "node_nf_conntrack_entries_limit", "Maximum size of connection tracking table.", value=limit
            )
        )
    text = fs.read("/proc/net/stat/nf_conntrack")
    stats = {} if text is None else parse_stat(text)
    if stats:
        for key, doc in _STATS:
            out.append(GaugeMetricFamily(f"node_nf_conntrack_stat_{key}", doc, value=stats.get(key, 0.0)))
    return out
