"""/sys/class/power_supply: node_exporter's powersupplyclass collector (UPS, batteries, mains)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options
from collectors.host.parts.common import number

PATHS = ("/sys/class/power_supply/*/*",)

# sysfs attribute -> (metric suffix, scale): micro-units become base units, as node_exporter does
_NUMERIC = {
    "authentic": ("authentic", 1.0), "calibrate": ("calibrate", 1.0), "capacity": ("capacity", 1.0),
    "capacity_alert_max": ("capacity_alert_max", 1.0), "capacity_alert_min": ("capacity_alert_min", 1.0),
    "cyclecount": ("cyclecount", 1.0), "cycle_count": ("cyclecount", 1.0), "online": ("online", 1.0),
    "present": ("present", 1.0), "time_to_empty_now": ("time_to_empty_seconds", 1.0),
    "time_to_full_now": ("time_to_full_seconds", 1.0), "current_boot": ("current_boot", 1e-6),
    "current_max": ("current_max", 1e-6), "current_now": ("current_ampere", 1e-6),
    "energy_empty": ("energy_empty", 1e-6), "energy_empty_design": ("energy_empty_design", 1e-6),
    "energy_full": ("energy_full", 1e-6), "energy_full_design": ("energy_full_design", 1e-6),
    "energy_now": ("energy_watthour", 1e-6), "power_now": ("power_watt", 1e-6),
    "precharge_current": ("precharge_current", 1e-6), "charge_full": ("charge_full", 1e-6),
    "charge_now": ("charge_ampere", 1e-6), "temp": ("temp_celsius", 0.1),
    "voltage_boot": ("voltage_boot", 1e-6), "voltage_max": ("voltage_max", 1e-6),
    "voltage_max_design": ("voltage_max_design", 1e-6), "voltage_min": ("voltage_min", 1e-6),
    "voltage_min_design": ("voltage_min_design", 1e-6), "voltage_now": ("voltage_volt", 1e-6),
    "voltage_ocv": ("voltage_ocv", 1e-6),
}  # fmt: skip
_INFO = ("capacity_level", "charge_type", "health", "manufacturer", "model_name", "scope", "serial_number",
         "status", "technology", "type", "usb_type")  # fmt: skip


def collect(fs: Files, opts: Options) -> list[Metric]:
    base = "/sys/class/power_supply"
    fams: dict[str, GaugeMetricFamily] = {}
    info = GaugeMetricFamily(
        "node_power_supply_info",
        "info of /sys/class/power_supply/<power_supply>.",
        labels=["power_supply", *_INFO],
    )
    for ps in fs.listdir(base):
        attrs = fs.listdir(f"{base}/{ps}")
        if not attrs:
            continue
        for attr in attrs:
            if attr not in _NUMERIC:
                continue
            v = number(fs.read(f"{base}/{ps}/{attr}"))
            if v is None:
                continue
            suffix, scale = _NUMERIC[attr]
            name = f"node_power_supply_{suffix}"
            fam = fams.get(name)
            if fam is None:
                fam = fams[name] = GaugeMetricFamily(
                    name,
                    f"{suffix} value of /sys/class/power_supply/<power_supply>.",
                    labels=["power_supply"],
                )
            fam.add_metric([ps], v * scale)
        info.add_metric([ps, *((fs.read(f"{base}/{ps}/{k}") or "").strip() for k in _INFO)], 1.0)
    return [*fams.values(), info] if info.samples else []
