"""Memory figures with node_exporter's names (``node_memory_<Field>_bytes``).

On Linux /proc/meminfo is read directly: psutil's ``cached`` adds SReclaimable to Cached, which would
disagree with node_exporter's ``node_memory_Cached_bytes``. Elsewhere psutil's figures are used.
"""

from __future__ import annotations

import re
from pathlib import Path

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric

MEMINFO = Path("/proc/meminfo")
_LINE = re.compile(r"^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+kB)?\s*$")


def parse_meminfo(text: str) -> dict[str, float]:
    """/proc/meminfo -> {metric field name: bytes}. ``Active(anon)`` becomes ``Active_anon``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        key, value = m.group(1), float(m.group(2))
        if line.rstrip().endswith("kB"):
            value *= 1024
        key = key.replace("(", "_").replace(")", "")
        out[key] = value
    return out


def collect() -> list[Metric]:
    if MEMINFO.exists():
        fields = parse_meminfo(MEMINFO.read_text())
    else:
        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        fields = {
            "MemTotal": vm.total,
            "MemAvailable": vm.available,
            "MemFree": vm.free,
            "Buffers": getattr(vm, "buffers", 0),
            "Cached": getattr(vm, "cached", 0),
            "SwapTotal": sw.total,
            "SwapFree": sw.free,
        }
    return [
        GaugeMetricFamily(f"node_memory_{k}_bytes", f"Memory information field {k}_bytes.", value=v)
        for k, v in fields.items()
    ]
