"""SELinux state: node_exporter's selinux collector, read from selinuxfs and /etc/selinux/config."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options
from collectors.host.parts.common import read_number

PATHS = ("/sys/fs/selinux/enforce", "/etc/selinux/config")


def collect(fs: Files, opts: Options) -> list[Metric]:
    enforce = read_number(fs, "/sys/fs/selinux/enforce")
    enabled = GaugeMetricFamily(
        "node_selinux_enabled",
        "SELinux is enabled, 1 is true, 0 is false",
        value=0.0 if enforce is None else 1.0,
    )
    if enforce is None:
        return [enabled]
    mode = ""
    for line in (fs.read("/etc/selinux/config") or "").splitlines():
        key, _, value = line.strip().partition("=")
        if key == "SELINUX":
            mode = value.strip()
    config = {"enforcing": 1.0, "permissive": 0.0, "disabled": -1.0}.get(mode, -1.0)
    return [
        enabled,
        GaugeMetricFamily(
            "node_selinux_config_mode",
            "Configured SELinux enforcement mode",
            value=config,
        ),
        GaugeMetricFamily("node_selinux_current_mode", "Current SELinux enforcement mode", value=enforce),
    ]
