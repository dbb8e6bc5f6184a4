"""/sys/class/thermal: node_exporter's thermal_zone collector (zones and cooling devices)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options
from collectors.host.parts.common import read_number, read_str

PATHS = (
    "/sys/class/thermal/thermal_zone*/type",
    "/sys/class/thermal/thermal_zone*/temp",
    "/sys/class/thermal/cooling_device*/type",
    "/sys/class/thermal/cooling_device*/cur_state",
    "/sys/class/thermal/cooling_device*/max_state",
)


def collect(fs: Files, opts: Options) -> list[Metric]:
    base = "/sys/class/thermal"
    temp = GaugeMetricFamily("node_thermal_zone_temp", "Zone temperature in Celsius", labels=["zone", "type"])
    cur = GaugeMetricFamily(
        "node_cooling_device_cur_state",
        "Current throttle state of the cooling device",
        labels=["name", "type"],
    )
    mx = GaugeMetricFamily(
        "node_cooling_device_max_state",
        "Maximum throttle state of the cooling device",
        labels=["name", "type"],
    )
    for d in fs.listdir(base):
        if d.startswith("thermal_zone") and d[12:].isdigit():
            t, kind = read_number(fs, f"{base}/{d}/temp"), read_str(fs, f"{base}/{d}/type")
            if t is not None and kind is not None:
                temp.add_metric([d[12:], kind], t / 1000.0)
        elif d.startswith("cooling_device") and d[14:].isdigit():
            kind = read_str(fs, f"{base}/{d}/type") or ""
            c, m = read_number(fs, f"{base}/{d}/cur_state"), read_number(fs, f"{base}/{d}/max_state")
            if c is not None:
                cur.add_metric([d[14:], kind], c)
            if m is not None:
                mx.add_metric([d[14:], kind], m)
    return [f for f in (temp, cur, mx) if f.samples]
