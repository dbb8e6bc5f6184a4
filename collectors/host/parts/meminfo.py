"""/proc/meminfo: node_exporter's meminfo collector; the one parser of this file (local and SSH)."""

from __future__ import annotations

import re

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/meminfo",)
_LINE = re.compile(r"^([A-Za-z0-9_()]+):\s+(\d+)(\s+kB)?\s*$")


def parse_meminfo(text: str) -> dict[str, float]:
    """{metric suffix: value}: fields in kB become ``<Field>_bytes`` in bytes, bare counts
    (``HugePages_Total``) keep their name, ``Active(anon)`` becomes ``Active_anon``. Lines that do not
    parse are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        key, value = m.group(1).replace("(", "_").replace(")", ""), float(m.group(2))
        if m.group(3):
            value *= 1024
            key += "_bytes"
        out[key] = value
    return out


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/meminfo")
    if text is None:
        return []
    return [
        GaugeMetricFamily(f"node_memory_{k}", f"Memory information field {k}.", value=v)
        for k, v in parse_meminfo(text).items()
    ]
