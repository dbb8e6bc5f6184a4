"""/proc/pressure (PSI): node_exporter's pressure collector; a kernel without PSI has no such files."""

from __future__ import annotations

import contextlib

from prometheus_client.core import CounterMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/pressure/cpu", "/proc/pressure/io", "/proc/pressure/memory")

# (resource, line, name, help) as node_exporter 1.5 exposes them
_SPEC = (
    ("cpu", "some", "node_pressure_cpu_waiting_seconds", "Total time in seconds that processes have waited for CPU time"),
    ("io", "some", "node_pressure_io_waiting_seconds", "Total time in seconds that processes have waited due to IO congestion"),
    ("io", "full", "node_pressure_io_stalled_seconds", "Total time in seconds no process could make progress due to IO congestion"),
    ("memory", "some", "node_pressure_memory_waiting_seconds", "Total time in seconds that processes have waited for memory"),
    ("memory", "full", "node_pressure_memory_stalled_seconds", "Total time in seconds no process could make progress due to memory congestion"),
)  # fmt: skip


def parse_psi(text: str) -> dict[str, float]:
    """``some avg10=0.00 avg60=0.00 avg300=0.00 total=123`` lines -> {some|full: total microseconds}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        for f in fields:
            key, _, value = f.partition("=")
            if key == "total":
                with contextlib.suppress(ValueError):
                    out[kind] = float(value)
    return out


def collect(fs: Files, opts: Options) -> list[Metric]:
    out: list[Metric] = []
    parsed: dict[str, dict[str, float]] = {}
    for resource, kind, name, doc in _SPEC:
        if resource not in parsed:
            text = fs.read(f"/proc/pressure/{resource}")
            parsed[resource] = {} if text is None else parse_psi(text)
        total = parsed[resource].get(kind)
        if total is not None:
            out.append(
                CounterMetricFamily(name, doc, value=total / 1000.0 / 1000.0)
            )  # as node_exporter rounds
    return out
