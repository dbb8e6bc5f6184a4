"""What the host parts may be told: node_exporter's per-collector flags (field and device filters).

Defaults are those of Debian's node_exporter 1.5 (the package sysadmins run next to giamsat), so both
report the same series.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Debian widens upstream's mount point list with run, mnt and media.
MOUNT_POINTS_EXCLUDE = r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|"
    r"overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)
DISKSTATS_DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
NETDEV_DEVICE_EXCLUDE = r"^lo$"
NETCLASS_IGNORED_DEVICES = r"^$"
NETSTAT_FIELDS = (
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|"
    r"TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|"
    r"Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|"
    r"Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$"
)
VMSTAT_FIELDS = r"^(oom_kill|pgpg|pswp|pg.*fault).*"


@dataclass(frozen=True)
class Options:
    filesystem_mount_points_exclude: str = MOUNT_POINTS_EXCLUDE
    filesystem_fs_types_exclude: str = FS_TYPES_EXCLUDE
    diskstats_device_exclude: str = DISKSTATS_DEVICE_EXCLUDE
    netdev_device_exclude: str = NETDEV_DEVICE_EXCLUDE
    netclass_ignored_devices: str = NETCLASS_IGNORED_DEVICES
    netstat_fields: str = NETSTAT_FIELDS
    vmstat_fields: str = VMSTAT_FIELDS
    systemd_units: tuple[str, ...] = ()
    systemctl_path: str = "systemctl"
    #: seconds a part that runs a program (systemctl) may take
    timeout: float = 5.0
    #: /proc/stat's tick (100 on every Linux architecture node_exporter supports; it hardcodes it)
    user_hz: float = 100.0


@functools.lru_cache(maxsize=64)
def rx(pattern: str) -> re.Pattern[str]:
    """A compiled filter (patterns are validated when the configuration is read)."""
    return re.compile(pattern)
