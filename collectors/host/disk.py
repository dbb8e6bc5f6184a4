"""Block-device I/O counters with node_exporter's diskstats names, partitions and ram/loop excluded."""

from __future__ import annotations

import re

import psutil
from prometheus_client.core import CounterMetricFamily, Metric

# node_exporter 1.5 default --collector.diskstats.device-exclude: partitions, ram and loop devices.
DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"


def collect(device_exclude: str = DEVICE_EXCLUDE) -> list[Metric]:
    excluded = re.compile(device_exclude)
    lab = ["device"]
    fams = {
        "reads": CounterMetricFamily(
            "node_disk_reads_completed", "The total number of reads completed successfully.", labels=lab
        ),
        "writes": CounterMetricFamily(
            "node_disk_writes_completed", "The total number of writes completed successfully.", labels=lab
        ),
        "read_bytes": CounterMetricFamily(
            "node_disk_read_bytes", "The total number of bytes read successfully.", labels=lab
        ),
        "written_bytes": CounterMetricFamily(
            "node_disk_written_bytes", "The total number of bytes written successfully.", labels=lab
        ),
        "read_time": CounterMetricFamily(
            "node_disk_read_time_seconds", "The total number of seconds spent by all reads.", labels=lab
        ),
        "write_time": CounterMetricFamily(
            "node_disk_write_time_seconds",
            "This is the total number of seconds spent by all writes.",
            labels=lab,
        ),
        "io_time": CounterMetricFamily(
            "node_disk_io_time_seconds", "Total seconds spent doing I/Os.", labels=lab
        ),
    }
    counters = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
    for dev, c in sorted(counters.items()):
        if excluded.match(dev):
            continue
        fams["reads"].add_metric([dev], c.read_count)
        fams["writes"].add_metric([dev], c.write_count)
        fams["read_bytes"].add_metric([dev], c.read_bytes)
        fams["written_bytes"].add_metric([dev], c.write_bytes)
        fams["read_time"].add_metric([dev], c.read_time / 1000.0)
        fams["write_time"].add_metric([dev], c.write_time / 1000.0)
        busy = getattr(c, "busy_time", None)
        if busy is not None:
            fams["io_time"].add_metric([dev], busy / 1000.0)
    return list(fams.values())
