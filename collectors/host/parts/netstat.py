"""/proc/net/netstat, snmp and snmp6: node_exporter's netstat collector (untyped, fields filtered)."""

from __future__ import annotations

from prometheus_client.core import Metric, UnknownMetricFamily

from collectors.host.files import Files
from collectors.host.options import Options, rx
from collectors.host.parts.common import header_value_pairs

PATHS = ("/proc/net/netstat", "/proc/net/snmp", "/proc/net/snmp6")


def parse_snmp6(text: str) -> dict[str, dict[str, str]]:
    """``Ip6InOctets 123`` lines -> {"Ip6": {"InOctets": "123"}} (the protocol ends at its "6")."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or "6" not in parts[0]:
            continue
        cut = parts[0].index("6") + 1
        out.setdefault(parts[0][:cut], {})[parts[0][cut:]] = parts[1]
    return out


def collect(fs: Files, opts: Options) -> list[Metric]:
    stats: dict[str, dict[str, str]] = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        text = fs.read(path)
        if text is not None:
            for proto, kv in header_value_pairs(text).items():
                stats.setdefault(proto, {}).update(kv)
    text6 = fs.read("/proc/net/snmp6")
    if text6 is not None:
        for proto, kv in parse_snmp6(text6).items():
            stats.setdefault(proto, {}).update(kv)
    keep = rx(opts.netstat_fields)
    out: list[Metric] = []
    for proto in sorted(stats):
        for key, raw in stats[proto].items():
            name = f"{proto}_{key}"
            if not keep.match(name):
                continue
            try:
                value = float(raw)
            except ValueError:
                continue
            out.append(UnknownMetricFamily(f"node_netstat_{name}", f"Statistic {proto}{key}.", value=value))
    return out
