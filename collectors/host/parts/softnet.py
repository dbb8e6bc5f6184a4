"""/proc/net/softnet_stat: node_exporter's softnet collector (hex columns, one line per cpu)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/net/softnet_stat",)


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/net/softnet_stat")
    if text is None:
        return []
    lab = ["cpu"]
    processed = CounterMetricFamily("node_softnet_processed", "Number of processed packets", labels=lab)
    dropped = CounterMetricFamily("node_softnet_dropped", "Number of dropped packets", labels=lab)
    squeezed = CounterMetricFamily(
        "node_softnet_times_squeezed", "Number of times processing packets ran out of quota", labels=lab
    )
    for cpu, line in enumerate(ln for ln in text.splitlines() if ln.strip()):
        cols = line.split()
        try:
            p, d, s = (float(int(c, 16)) for c in cols[:3])
        except (ValueError, IndexError):
            continue
        processed.add_metric([str(cpu)], p)
        dropped.add_metric([str(cpu)], d)
        squeezed.add_metric([str(cpu)], s)
    return [processed, dropped, squeezed] if processed.samples else []
