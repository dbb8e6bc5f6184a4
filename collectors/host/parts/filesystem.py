"""Mounted filesystems: node_exporter's filesystem collector, with its mount point and type excludes.

Mounts come from /proc/1/mounts (the host's view even inside a mount namespace), sizes from statvfs,
which ``Files`` does locally or from figures gathered on a remote host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options, rx

PATHS = ("/proc/1/mounts", "/proc/self/mounts")


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]


def _unescape(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[Mount]:
    out: list[Mount] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        device, mountpoint, fstype, opts = parts[:4]
        out.append(Mount(_unescape(device), _unescape(mountpoint), fstype, tuple(opts.split(","))))
    return out


def mounts(fs: Files) -> list[Mount]:
    text = fs.read("/proc/1/mounts")
    if text is None:
        text = fs.read("/proc/self/mounts")
    return [] if text is None else parse_mounts(text)


def selected(all_mounts: list[Mount], opts: Options) -> list[Mount]:
    """Mounts not excluded; each mount point once (the last mount over it is what statvfs sees)."""
    skip_mp, skip_fs = rx(opts.filesystem_mount_points_exclude), rx(opts.filesystem_fs_types_exclude)
    out: dict[str, Mount] = {}
    for m in all_mounts:
        if skip_mp.match(m.mountpoint) or skip_fs.match(m.fstype):
            continue
        out.pop(m.mountpoint, None)
        out[m.mountpoint] = m
    return list(out.values())


def collect(fs: Files, opts: Options) -> list[Metric]:
    chosen = selected(mounts(fs), opts)
    if not chosen:
        return []
    labels = ["device", "fstype", "mountpoint"]

    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    size = gauge("node_filesystem_size_bytes", "Filesystem size in bytes.")
    free = gauge("node_filesystem_free_bytes", "Filesystem free space in bytes.")
    avail = gauge("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.")
    files = gauge("node_filesystem_files", "Filesystem total file nodes.")
    files_free = gauge("node_filesystem_files_free", "Filesystem total free file nodes.")
    readonly = gauge("node_filesystem_readonly", "Filesystem read-only status.")
    device_error = gauge(
        "node_filesystem_device_error",
        "Whether an error occurred while getting statistics for the given device.",
    )
    for m in chosen:
        lv = [m.device, m.fstype, m.mountpoint]
        st = fs.statvfs(m.mountpoint)
        if st is None:
            device_error.add_metric(lv, 1)
            continue
        device_error.add_metric(lv, 0)
        size.add_metric(lv, st.blocks * st.bsize)
        free.add_metric(lv, st.bfree * st.bsize)
        avail.add_metric(lv, st.bavail * st.bsize)
        files.add_metric(lv, st.files)
        files_free.add_metric(lv, st.ffree)
        readonly.add_metric(lv, 1.0 if "ro" in m.options else 0.0)
    return [size, free, avail, files, files_free, readonly, device_error]
