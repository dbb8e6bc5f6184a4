"""/sys/class/net/<iface>: node_exporter's netclass collector (up, carrier, speed, mtu, info...)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options, rx
from collectors.host.parts.common import number

ATTRS = (
    "addr_assign_type", "address", "broadcast", "carrier", "carrier_changes", "carrier_up_count",
    "carrier_down_count", "dev_id", "dormant", "duplex", "flags", "ifalias", "ifindex", "iflink",
    "link_mode", "mtu", "name_assign_type", "netdev_group", "operstate", "speed", "tx_queue_len", "type",
)  # fmt: skip
PATHS = tuple(f"/sys/class/net/*/{a}" for a in ATTRS)

# (attribute, metric suffix, counter, scale)
_NUMERIC = (
    ("addr_assign_type", "address_assign_type", False, 1.0),
    ("carrier", "carrier", False, 1.0),
    ("carrier_changes", "carrier_changes_total", True, 1.0),
    ("carrier_up_count", "carrier_up_changes_total", True, 1.0),
    ("carrier_down_count", "carrier_down_changes_total", True, 1.0),
    ("dev_id", "device_id", False, 1.0),
    ("dormant", "dormant", False, 1.0),
    ("flags", "flags", False, 1.0),
    ("ifindex", "iface_id", False, 1.0),
    ("iflink", "iface_link", False, 1.0),
    ("link_mode", "iface_link_mode", False, 1.0),
    ("mtu", "mtu_bytes", False, 1.0),
    ("name_assign_type", "name_assign_type", False, 1.0),
    ("netdev_group", "net_dev_group", False, 1.0),
    ("speed", "speed_bytes", False, 1000.0 * 1000.0 / 8.0),
    ("tx_queue_len", "transmit_queue_length", False, 1.0),
    ("type", "protocol_type", False, 1.0),
)


def _int(text: str | None) -> float | None:
    """sysfs integers, hex (dev_id, flags) included."""
    if text is None:
        return None
    s = text.strip()
    try:
        return float(int(s, 16)) if s.startswith("0x") else float(int(s))
    except ValueError:
        return number(s)


def collect(fs: Files, opts: Options) -> list[Metric]:
    ignored = rx(opts.netclass_ignored_devices)
    devices = [d for d in fs.listdir("/sys/class/net") if not ignored.match(d)]
    devices = [d for d in devices if fs.read(f"/sys/class/net/{d}/ifindex") is not None]
    if not devices:
        return []
    lab = ["device"]
    up = GaugeMetricFamily("node_network_up", "Value is 1 if operstate is 'up', 0 otherwise.", labels=lab)
    info = GaugeMetricFamily(
        "node_network_info",
        "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
        labels=["address", "broadcast", "device", "duplex", "ifalias", "operstate"],
    )
    fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for attr, suffix, counter, _scale in _NUMERIC:
        name, doc = f"node_network_{suffix}", f"Network device property: {suffix}"
        fams[attr] = (
            CounterMetricFamily(name, doc, labels=lab)
            if counter
            else GaugeMetricFamily(name, doc, labels=lab)
        )
    for dev in sorted(devices):
        base = f"/sys/class/net/{dev}"

        def text(attr: str, base: str = base) -> str | None:
            t = fs.read(f"{base}/{attr}")
            return None if t is None else t.strip()

        operstate = text("operstate") or ""
        up.add_metric([dev], 1.0 if operstate == "up" else 0.0)
        info.add_metric(
            [text("address") or "", text("broadcast") or "", dev, text("duplex") or "", text("ifalias") or "",
             operstate],
            1.0,
        )  # fmt: skip
        for attr, _suffix, _counter, scale in _NUMERIC:
            v = _int(text(attr))
            if v is not None:
                fams[attr].add_metric([dev], v * scale)
    return [up, info, *(f for f in fams.values() if f.samples)]
