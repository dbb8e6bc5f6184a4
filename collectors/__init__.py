"""The collector table: every collector kind the agent knows, by the name used in the config.

Explicit on purpose (no import magic): adding a collector is one line here plus its module. Modules are
imported the first time their kind is looked up, so an agent loads only the collectors its
configuration mentions (the host-only agent stays small; pysnmp, gufo, paramiko are never imported).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.kernel.collector import Collector

_TABLE: dict[str, str] = {
    "host": "collectors.host:HostCollector",
    "snmp": "collectors.snmp:SnmpCollector",
    "ssh": "collectors.ssh:SSHCollector",
    "icmp": "collectors.probes.icmp:IcmpCollector",
    "tcp": "collectors.probes.tcp:TcpCollector",
    "http": "collectors.probes.http:HttpCollector",
    "dns": "collectors.probes.dns:DnsCollector",
}


class CollectorTable(Mapping[str, "type[Collector]"]):
    """Kind -> collector class; iterating lists the kinds without importing anything."""

    def __init__(self, table: dict[str, str]) -> None:
        self._paths = table
        self._loaded: dict[str, type[Collector]] = {}

    def __getitem__(self, kind: str) -> type[Collector]:
        cls = self._loaded.get(kind)
        if cls is None:
            module, _, name = self._paths[kind].partition(":")
            cls = getattr(importlib.import_module(module), name)
            self._loaded[kind] = cls
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, kind: object) -> bool:
        return kind in self._paths


COLLECTORS = CollectorTable(_TABLE)
