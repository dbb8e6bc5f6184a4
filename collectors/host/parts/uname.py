"""uname(2): node_exporter's uname collector."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = (
    "/proc/sys/kernel/ostype",
    "/proc/sys/kernel/osrelease",
    "/proc/sys/kernel/version",
    "/proc/sys/kernel/arch",
    "/proc/sys/kernel/hostname",
    "/proc/sys/kernel/domainname",
)
LABELS = ("domainname", "machine", "nodename", "release", "sysname", "version")


def collect(fs: Files, opts: Options) -> list[Metric]:
    u = fs.uname()
    if u is None:
        return []
    fam = GaugeMetricFamily(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        labels=list(LABELS),
    )
    fam.add_metric([u[k] for k in LABELS], 1.0)
    return [fam]
