"""/sys/class/net/bonding_masters: node_exporter's bonding collector (configured and active slaves)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = (
    "/sys/class/net/bonding_masters",
    "/sys/class/net/*/bonding/slaves",
    "/sys/class/net/*/bonding_slave/mii_status",
)


def collect(fs: Files, opts: Options) -> list[Metric]:
    masters = (fs.read("/sys/class/net/bonding_masters") or "").split()
    if not masters:
        return []
    slaves = GaugeMetricFamily(
        "node_bonding_slaves", "Number of configured slaves per bonding interface.", labels=["master"]
    )
    active = GaugeMetricFamily(
        "node_bonding_active", "Number of active slaves per bonding interface.", labels=["master"]
    )
    for master in masters:
        members = (fs.read(f"/sys/class/net/{master}/bonding/slaves") or "").split()
        up = sum(
            1
            for m in members
            if (fs.read(f"/sys/class/net/{m}/bonding_slave/mii_status") or "").strip() == "up"
        )
        slaves.add_metric([master], float(len(members)))
        active.add_metric([master], float(up))
    return [slaves, active]
