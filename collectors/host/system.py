"""Boot time, wall clock and uname, as node_exporter's stat, time and uname collectors name them."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric


def collect() -> list[Metric]:
    u = os.uname()
    try:
        domain = Path("/proc/sys/kernel/domainname").read_text().strip()
    except OSError:
        domain = "(none)"
    uname = GaugeMetricFamily(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        labels=["sysname", "release", "version", "machine", "nodename", "domainname"],
    )
    uname.add_metric(
        [u.sysname, u.release, u.version, u.machine, u.nodename or socket.gethostname(), domain], 1
    )
    return [
        GaugeMetricFamily(
            "node_boot_time_seconds", "Node boot time, in unixtime.", value=float(int(psutil.boot_time()))
        ),
        GaugeMetricFamily(
            "node_time_seconds", "System time in seconds since epoch (1970).", value=time.time()
        ),
        uname,
    ]
