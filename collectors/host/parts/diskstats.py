"""/proc/diskstats: node_exporter's diskstats collector, with the discard and flush fields of newer
kernels and ``node_disk_info`` (udev's model, serial... where /run/udev/data has them)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options, rx

PATHS = ("/proc/diskstats", "/run/udev/data/b*")
SECTOR = 512.0

# (metric, help, counter, scale), in /proc/diskstats column order after major, minor, name
_COLUMNS = (
    ("node_disk_reads_completed_total", "The total number of reads completed successfully.", True, 1.0),
    ("node_disk_reads_merged_total", "The total number of reads merged.", True, 1.0),
    ("node_disk_read_bytes_total", "The total number of bytes read successfully.", True, SECTOR),
    ("node_disk_read_time_seconds_total", "The total number of seconds spent by all reads.", True, 0.001),
    ("node_disk_writes_completed_total", "The total number of writes completed successfully.", True, 1.0),
    ("node_disk_writes_merged_total", "The number of writes merged.", True, 1.0),
    ("node_disk_written_bytes_total", "The total number of bytes written successfully.", True, SECTOR),
    ("node_disk_write_time_seconds_total", "This is the total number of seconds spent by all writes.", True, 0.001),
    ("node_disk_io_now", "The number of I/Os currently in progress.", False, 1.0),
    ("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", True, 0.001),
    ("node_disk_io_time_weighted_seconds_total", "The weighted # of seconds spent doing I/Os.", True, 0.001),
    ("node_disk_discards_completed_total", "The total number of discards completed successfully.", True, 1.0),
    ("node_disk_discards_merged_total", "The total number of discards merged.", True, 1.0),
    ("node_disk_discarded_sectors_total", "The total number of sectors discarded successfully.", True, 1.0),
    ("node_disk_discard_time_seconds_total", "This is the total number of seconds spent by all discards.", True, 0.001),
    ("node_disk_flush_requests_total", "The total number of flush requests completed successfully", True, 1.0),
    ("node_disk_flush_requests_time_seconds_total", "This is the total number of seconds spent by all flush requests.", True, 0.001),
)  # fmt: skip
_UDEV = (("model", "ID_MODEL"), ("path", "ID_PATH"), ("revision", "ID_REVISION"),
         ("serial", "ID_SERIAL_SHORT"), ("wwn", "ID_WWN"))  # fmt: skip


def parse_diskstats(text: str) -> list[tuple[str, str, str, list[float]]]:
    """(major, minor, device, numbers); lines with fewer than 11 numbers are skipped."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 14:
            continue
        try:
            values = [float(v) for v in parts[3:]]
        except ValueError:
            continue
        out.append((parts[0], parts[1], parts[2], values))
    return out


def udev_properties(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        if line.startswith("E:"):
            key, _, value = line[2:].partition("=")
            out[key] = value
    return out


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/diskstats")
    if text is None:
        return []
    skip = rx(opts.diskstats_device_exclude) if opts.diskstats_device_exclude else None
    lab = ["device"]
    fams: list[CounterMetricFamily | GaugeMetricFamily] = [
        CounterMetricFamily(name[: -len("_total")], doc, labels=lab)
        if counter
        else GaugeMetricFamily(name, doc, labels=lab)
        for name, doc, counter, _ in _COLUMNS
    ]
    info = GaugeMetricFamily(
        "node_disk_info",
        "Info of /sys/block/<block_device>.",
        labels=["device", "major", "minor", "model", "path", "revision", "serial", "wwn"],
    )
    for major, minor, dev, values in sorted(parse_diskstats(text), key=lambda r: r[2]):
        if skip is not None and skip.match(dev):
            continue
        props = udev_properties(fs.read(f"/run/udev/data/b{major}:{minor}"))
        info.add_metric([dev, major, minor, *(props.get(k, "") for _, k in _UDEV)], 1.0)
        for fam, (_n, _d, _c, scale), value in zip(fams, _COLUMNS, values, strict=False):
            fam.add_metric([dev], value * scale)
    return [info, *(f for f in fams if f.samples)] if info.samples else []
