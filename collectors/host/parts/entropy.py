"""/proc/sys/kernel/random: node_exporter's entropy collector."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options
from collectors.host.parts.common import read_number

PATHS = ("/proc/sys/kernel/random/entropy_avail", "/proc/sys/kernel/random/poolsize")


def collect(fs: Files, opts: Options) -> list[Metric]:
    out: list[Metric] = []
    avail = read_number(fs, "/proc/sys/kernel/random/entropy_avail")
    if avail is not None:
        out.append(
            GaugeMetricFamily("node_entropy_available_bits", "Bits of available entropy.", value=avail)
        )
    pool = read_number(fs, "/proc/sys/kernel/random/poolsize")
    if pool is not None:
        out.append(GaugeMetricFamily("node_entropy_pool_size_bits", "Bits of entropy pool.", value=pool))
    return out
