"""/sys/class/hwmon: node_exporter's hwmon collector (temperatures, voltages, fans, power...)."""

from __future__ import annotations

import re

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/sys/class/hwmon/*/*", "/sys/class/hwmon/*/device/*")
TYPES = ("vrm", "beep_enable", "update_interval", "in", "cpu", "fan", "pwm", "temp", "curr", "power",
         "energy", "humidity", "intrusion")  # fmt: skip
_FILE = re.compile(r"^(?P<type>[^0-9]+)(?P<id>[0-9]*)?(_(?P<property>.+))?$")
_INVALID = re.compile(r"[^a-z0-9:_]")


def clean(name: str) -> str:
    return _INVALID.sub("_", name.lower()).strip("_")


def chip_name(fs: Files, d: str) -> str:
    """Stable chip label: the device's bus and name (``platform_coretemp_0``), else its ``name``."""
    dev = fs.realpath(f"{d}/device")
    if dev != f"{d}/device":
        head, _, dev_name = dev.rstrip("/").rpartition("/")
        dev_type = head.rpartition("/")[2]
        if clean(dev_type) and clean(dev_name):
            return f"{clean(dev_type)}_{clean(dev_name)}"
        if clean(dev_name):
            return clean(dev_name)
    name = clean(fs.read(f"{d}/name") or "")
    return name or clean(d.rpartition("/")[2])


def sensors(fs: Files, d: str) -> dict[str, dict[str, str]]:
    """{sensor ("temp1"): {property ("input", "" for a bare file): raw text}}."""
    data: dict[str, dict[str, str]] = {}
    for sub in (d, f"{d}/device"):
        for f in fs.listdir(sub):
            m = _FILE.match(f)
            if not m or m.group("type") not in TYPES:
                continue
            text = fs.read(f"{sub}/{f}")
            if text is None:
                continue
            num = int(m.group("id")) if m.group("id") else 0
            data.setdefault(f"{m.group('type')}{num}", {})[m.group("property") or ""] = text.strip()
    return data


def _metric(kind: str, element: str, has_bare: bool, value: float) -> tuple[str, str, float, bool]:
    """(name, help, value, counter) of one sensor element, as node_exporter names them."""
    name = f"node_hwmon_{kind}"
    if element == "input":
        if has_bare:
            name += "_input"
    elif element:
        name += "_" + clean(element)
    if element in ("fault", "alarm"):
        return name, f"Hardware sensor {element} status ({kind})", value, False
    if element == "beep":
        return name + "_enabled", "Hardware monitor sensor has beeping enabled", value, False
    if kind in ("in", "cpu"):
        return name + "_volts", f"Hardware monitor for voltage ({element})", value * 0.001, False
    if kind == "temp" and element != "type":
        return (
            name + "_celsius",
            f"Hardware monitor for temperature ({element or 'input'})",
            value * 0.001,
            False,
        )
    if kind == "curr":
        return name + "_amps", f"Hardware monitor for current ({element})", value * 0.001, False
    if kind == "energy":
        return name + "_joule", f"Hardware monitor for joules used so far ({element})", value / 1e6, True
    if kind == "power" and element == "accuracy":
        return name, "Hardware monitor power meter accuracy, as a ratio", value / 1e6, False
    if kind == "power" and element in ("average_interval", "average_interval_min", "average_interval_max"):
        return (
            name + "_seconds",
            f"Hardware monitor power usage update interval ({element})",
            value * 0.001,
            False,
        )
    if kind == "power":
        return name + "_watt", f"Hardware monitor for power usage in watts ({element})", value / 1e6, False
    if kind == "humidity":
        doc = "Hardware monitor for humidity, as a ratio (multiply with 100.0 to get the humidity as a percentage)"
        return name, f"{doc} ({element})", value / 1e6, False
    if kind == "fan" and element in ("input", "min", "max", "target"):
        return name + "_rpm", f"Hardware monitor for fan revolutions per minute ({element})", value, False
    if kind == "fan":
        return name, f"Hardware monitor fan element {element}", value, False
    return name, f"Hardware monitor {kind} element {element}", value, False


def collect(fs: Files, opts: Options) -> list[Metric]:
    fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def add(
        name: str, doc: str, labels: list[str], values: list[str], v: float, counter: bool = False
    ) -> None:
        fam = fams.get(name)
        if fam is None:
            fam = fams[name] = (
                CounterMetricFamily(name, doc, labels=labels)
                if counter
                else GaugeMetricFamily(name, doc, labels=labels)
            )
        fam.add_metric(values, v)

    seen_chips: set[str] = set()
    for entry in fs.listdir("/sys/class/hwmon"):
        d = f"/sys/class/hwmon/{entry}"
        chip = chip_name(fs, d)
        if chip in seen_chips:
            continue
        seen_chips.add(chip)
        raw_name = clean(fs.read(f"{d}/name") or "")
        if raw_name:
            add("node_hwmon_chip_names", "Annotation metric for human-readable chip names",
                ["chip", "chip_name"], [chip, raw_name], 1.0)  # fmt: skip
        for sensor, props in sorted(sensors(fs, d).items()):
            kind = _FILE.match(sensor).group("type")  # type: ignore[union-attr]
            labels = [chip, sensor]
            if "label" in props:
                add("node_hwmon_sensor_label", "Label for given chip and sensor",
                    ["chip", "sensor", "label"], [chip, sensor, props["label"]], 1.0)  # fmt: skip
            if kind in ("beep_enable", "vrm", "update_interval"):
                bare = props.get("", "")
                try:
                    num = float(bare)
                except ValueError:
                    continue
                if kind == "beep_enable":
                    add("node_hwmon_beep_enabled", "Hardware beep enabled", ["chip", "sensor"], labels,
                        1.0 if bare == "1" else 0.0)  # fmt: skip
                elif kind == "vrm":
                    add("node_hwmon_voltage_regulator_version", "Hardware voltage regulator",
                        ["chip", "sensor"], labels, num)  # fmt: skip
                else:
                    add("node_hwmon_update_interval_seconds", "Hardware monitor update interval",
                        ["chip", "sensor"], labels, num * 0.001)  # fmt: skip
                continue
            for element, raw in sorted(props.items()):
                if element == "label":
                    continue
                try:
                    value = float(raw)
                except ValueError:
                    continue
                name, doc, v, counter = _metric(kind, element, "" in props, value)
                add(name, doc, ["chip", "sensor"], labels, v, counter)
    return list(fams.values())
