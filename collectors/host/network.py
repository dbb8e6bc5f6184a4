"""Per-interface network counters with node_exporter's netdev names."""

from __future__ import annotations

import re

import psutil
from prometheus_client.core import CounterMetricFamily, Metric

# Debian's node_exporter 1.5 default --collector.netdev.device-exclude.
DEVICE_EXCLUDE = r"^lo$"


def collect(device_exclude: str = DEVICE_EXCLUDE) -> list[Metric]:
    excluded = re.compile(device_exclude) if device_exclude else None
    lab = ["device"]
    spec = [
        ("receive_bytes", "bytes_recv"),
        ("transmit_bytes", "bytes_sent"),
        ("receive_packets", "packets_recv"),
        ("transmit_packets", "packets_sent"),
        ("receive_errs", "errin"),
        ("transmit_errs", "errout"),
        ("receive_drop", "dropin"),
        ("transmit_drop", "dropout"),
    ]
    fams = [
        (CounterMetricFamily(f"node_network_{name}", f"Network device statistic {name}.", labels=lab), attr)
        for name, attr in spec
    ]
    for dev, c in sorted((psutil.net_io_counters(pernic=True, nowrap=False) or {}).items()):
        if excluded is not None and excluded.match(dev):
            continue
        for fam, attr in fams:
            fam.add_metric([dev], getattr(c, attr))
    return [f for f, _ in fams]
