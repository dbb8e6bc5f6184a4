"""/proc/vmstat: node_exporter's vmstat collector (untyped, fields filtered by --collector.vmstat.fields)."""

from __future__ import annotations

from prometheus_client.core import Metric, UnknownMetricFamily

from collectors.host.files import Files
from collectors.host.options import Options, rx

PATHS = ("/proc/vmstat",)


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/vmstat")
    if text is None:
        return []
    keep = rx(opts.vmstat_fields)
    out: list[Metric] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or not keep.match(parts[0]):
            continue
        try:
            value = float(parts[1])
        except ValueError:
            continue
        out.append(
            UnknownMetricFamily(
                f"node_vmstat_{parts[0]}", f"/proc/vmstat information field {parts[0]}.", value=value
            )
        )
    return out
