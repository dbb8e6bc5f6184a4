"""Filesystem size and free space per mount, with node_exporter's names, labels and exclusions."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

# Debian's node_exporter 1.5 defaults (Debian widens upstream's mount point list with run, mnt, media).
MOUNT_POINTS_EXCLUDE = r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|"
    r"overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)
MOUNTS = Path("/proc/1/mounts")


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


def selected(
    mounts: list[Mount],
    mount_points_exclude: str = MOUNT_POINTS_EXCLUDE,
    fs_types_exclude: str = FS_TYPES_EXCLUDE,
) -> list[Mount]:
    excluded_mount_points, excluded_fs_types = re.compile(mount_points_exclude), re.compile(fs_types_exclude)
    seen: set[str] = set()
    out: list[Mount] = []
    for m in mounts:
        if excluded_mount_points.match(m.mountpoint) or excluded_fs_types.match(m.fstype):
            continue
        # node_exporter reports each mount point once (the last mount over it wins in the kernel view).
        key = m.mountpoint
        if key in seen:
            out = [x for x in out if x.mountpoint != key]
        seen.add(key)
        out.append(m)
    return out


def collect(
    mount_points_exclude: str = MOUNT_POINTS_EXCLUDE, fs_types_exclude: str = FS_TYPES_EXCLUDE
) -> list[Metric]:
    source = MOUNTS if MOUNTS.exists() else Path("/proc/self/mounts")
    mounts = selected(parse_mounts(source.read_text()), mount_points_exclude, fs_types_exclude)
    labels = ["device", "fstype", "mountpoint"]
    size = GaugeMetricFamily("node_filesystem_size_bytes", "Filesystem size in bytes.", labels=labels)
    free = GaugeMetricFamily("node_filesystem_free_bytes", "Filesystem free space in bytes.", labels=labels)
    avail = GaugeMetricFamily(
        "node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", labels=labels
    )
    files = GaugeMetricFamily("node_filesystem_files", "Filesystem total file nodes.", labels=labels)
    files_free = GaugeMetricFamily(
        "node_filesystem_files_free", "Filesystem total free file nodes.", labels=labels
    )
    readonly = GaugeMetricFamily("node_filesystem_readonly", "Filesystem read-only status.", labels=labels)
    device_error = GaugeMetricFamily(
        "node_filesystem_device_error",
        "Whether an error occurred while getting statistics for the given device.",
        labels=labels,
    )
    for m in mounts:
        lv = [m.device, m.fstype, m.mountpoint]
        try:
            st = os.statvfs(m.mountpoint)
        except OSError:
            device_error.add_metric(lv, 1)
            continue
        device_error.add_metric(lv, 0)
        size.add_metric(lv, float(st.f_blocks) * st.f_bsize)
        free.add_metric(lv, float(st.f_bfree) * st.f_bsize)
        avail.add_metric(lv, float(st.f_bavail) * st.f_bsize)
        files.add_metric(lv, float(st.f_files))
        files_free.add_metric(lv, float(st.f_ffree))
        readonly.add_metric(lv, 1.0 if "ro" in m.options else 0.0)
    return [size, free, avail, files, files_free, readonly, device_error]
