"""/proc/schedstat: node_exporter's schedstat collector (absent on kernels built without it)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/schedstat",)


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/schedstat")
    if text is None:
        return []
    lab = ["cpu"]
    running = CounterMetricFamily(
        "node_schedstat_running_seconds", "Number of seconds CPU spent running a process.", labels=lab
    )
    waiting = CounterMetricFamily(
        "node_schedstat_waiting_seconds",
        "Number of seconds spent by processing waiting for this CPU.",
        labels=lab,
    )
    slices = CounterMetricFamily(
        "node_schedstat_timeslices", "Number of timeslices executed by CPU.", labels=lab
    )
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 10 or not parts[0].startswith("cpu") or not parts[0][3:].isdigit():
            continue
        try:
            run_ns, wait_ns, n = float(parts[7]), float(parts[8]), float(parts[9])
        except ValueError:
            continue
        cpu = parts[0][3:]
        running.add_metric([cpu], run_ns / 1e9)
        waiting.add_metric([cpu], wait_ns / 1e9)
        slices.add_metric([cpu], n)
    return [running, waiting, slices] if running.samples else []
