"""The collector table: every collector kind the agent knows, by the name used in the config.

Explicit on purpose (no import magic): adding a collector is one line here plus its module.
"""

from __future__ import annotations

from collectors.base import Collector
from collectors.host import HostCollector
from collectors.probes.dns import DnsCollector
from collectors.probes.http import HttpCollector
from collectors.probes.icmp import IcmpCollector
from collectors.probes.tcp import TcpCollector
from collectors.snmp import SnmpCollector
from collectors.ssh import SSHCollector

COLLECTORS: dict[str, type[Collector]] = {
    "host": HostCollector,
    "snmp": SnmpCollector,
    "ssh": SSHCollector,
    "icmp": IcmpCollector,
    "tcp": TcpCollector,
    "http": HttpCollector,
    "dns": DnsCollector,
}
