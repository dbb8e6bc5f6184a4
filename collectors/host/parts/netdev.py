"""/proc/net/dev: node_exporter's netdev collector (its 16 fields, and receive_nohandler from sysfs).

node_exporter 1.5 reads the kernel's link statistics and folds them into /proc/net/dev's figures (drop
includes missed, frame includes length/over/crc, carrier includes aborted/heartbeat/window): reading
/proc/net/dev gives those very sums.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options, rx
from collectors.host.parts.common import read_number

PATHS = ("/proc/net/dev", "/sys/class/net/*/statistics/rx_nohandler")

FIELDS = (
    "receive_bytes", "receive_packets", "receive_errs", "receive_drop", "receive_fifo", "receive_frame",
    "receive_compressed", "receive_multicast", "transmit_bytes", "transmit_packets", "transmit_errs",
    "transmit_drop", "transmit_fifo", "transmit_colls", "transmit_carrier", "transmit_compressed",
)  # fmt: skip


def parse_net_dev(text: str) -> dict[str, dict[str, float]]:
    """{device: {field: value}}; a line without 16 numbers is skipped."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        values = rest.split()
        if len(values) != len(FIELDS):
            continue
        try:
            out[name.strip()] = {f: float(v) for f, v in zip(FIELDS, values, strict=True)}
        except ValueError:
            continue
    return out


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/net/dev")
    if text is None:
        return []
    skip = rx(opts.netdev_device_exclude) if opts.netdev_device_exclude else None
    devices = {d: v for d, v in parse_net_dev(text).items() if skip is None or not skip.match(d)}
    for dev, values in devices.items():
        nohandler = read_number(fs, f"/sys/class/net/{dev}/statistics/rx_nohandler")
        if nohandler is not None:
            values["receive_nohandler"] = nohandler
    out: list[Metric] = []
    for field in (*FIELDS, "receive_nohandler"):
        fam = CounterMetricFamily(
            f"node_network_{field}", f"Network device statistic {field}.", labels=["device"]
        )
        for dev in sorted(devices):
            if field in devices[dev]:
                fam.add_metric([dev], devices[dev][field])
        if fam.samples:
            out.append(fam)
    return out
