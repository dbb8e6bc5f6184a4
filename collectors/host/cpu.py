"""CPU time per cpu and mode, as node_exporter's cpu collector names it."""

from __future__ import annotations

import psutil
from prometheus_client.core import CounterMetricFamily, Metric

# node_exporter's modes; guest time is already inside user/nice in /proc/stat and is reported apart.
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def collect() -> list[Metric]:
    fam = CounterMetricFamily(
        "node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"]
    )
    guest = CounterMetricFamily(
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
        labels=["cpu", "mode"],
    )
    for i, t in enumerate(psutil.cpu_times(percpu=True)):
        values = t._asdict()
        for mode in MODES:
            if mode in values:
                fam.add_metric([str(i), mode], values[mode])
        if "guest" in values:
            guest.add_metric([str(i), "user"], values["guest"])
            guest.add_metric([str(i), "nice"], values.get("guest_nice", 0.0))
    return [fam, guest]
