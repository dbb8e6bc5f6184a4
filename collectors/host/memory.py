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
    """/proc/meminfo -> {metric name suffix: value}, as node_exporter names them.

    Fields in kB become ``<Field>_bytes`` in bytes; bare counts (``HugePages_Total``) keep their name.
    ``Active(anon)`` becomes ``Active_anon``.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        key, value = m.group(1).replace("(", "_").replace(")", ""), float(m.group(2))
        if line.rstrip().endswith("kB"):
            value *= 1024
            key += "_bytes"
        out[key] = value
    return out


def collect() -> list[Metric]:
    if MEMINFO.exists():
        fields = parse_meminfo(MEMINFO.read_text())
    else:
        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        fields = {
            "MemTotal_bytes": vm.total,
            "MemAvailable_bytes": vm.available,
            "MemFree_bytes": vm.free,
            "Buffers_bytes": getattr(vm, "buffers", 0),
            "Cached_bytes": getattr(vm, "cached", 0),
            "SwapTotal_bytes": sw.total,
            "SwapFree_bytes": sw.free,
        }
    return [
        GaugeMetricFamily(f"node_memory_{k}", f"Memory information field {k}.", value=v)
        for k, v in fields.items()
    ]
