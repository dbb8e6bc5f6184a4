"""The collector table: every collector kind the agent knows, by the name used in the config.

Explicit on purpose (no import magic): adding a collector is one package plus one line here. Modules are
imported the first time their kind is looked up, so an agent loads only the collectors its
configuration mentions (the host-only agent stays small; pysnmp, gufo, paramiko are never imported).
A line also says what must be known before its class is imported: whether the kind runs even when the
configuration does not mention it, and which key of a site in the inventory it expands into targets.
Everything else about a kind is declared by its class (``agent.kernel.collector.Collector``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.kernel.collector import Collector


@dataclass(frozen=True)
class Kind:
    """One line of the table."""

    name: str
    #: ``package.module:Class``, imported when the kind is first used
    path: str
    #: run even when the configuration does not mention the kind (it can still be disabled)
    default_on: bool = False
    #: a key of a site in the inventory that the class's ``site_shorthand`` expands into targets
    site_key: str | None = None


_TABLE = (
    # first: /probe handlers are asked in table order, and blackbox_exporter's requests (a module of the
    # user's blackbox.yml, "http_2xx" when none is given) are its; it passes on every other request
    Kind("blackbox", "collectors.probes.blackbox:BlackboxCollector"),
    Kind("host", "collectors.host:HostCollector", default_on=True),
    Kind("textfile", "collectors.textfile:TextfileCollector", default_on=True),
    Kind("snmp", "collectors.snmp:SnmpCollector"),
    Kind("ssh", "collectors.ssh:SSHCollector"),
    Kind("icmp", "collectors.probes.icmp:IcmpCollector", site_key="links"),
    Kind("tcp", "collectors.probes.tcp:TcpCollector"),
    Kind("http", "collectors.probes.http:HttpCollector"),
    Kind("dns", "collectors.probes.dns:DnsCollector"),
    Kind("ntp", "collectors.ntp:NtpCollector"),
)


class CollectorTable(Mapping[str, "type[Collector]"]):
    """Kind -> collector class; iterating lists the kinds without importing anything."""

    def __init__(self, table: tuple[Kind, ...]) -> None:
        self._kinds = {k.name: k for k in table}
        self._paths = {k.name: k.path for k in table}
        self._loaded: dict[str, type[Collector]] = {}

    def __getitem__(self, kind: str) -> type[Collector]:
        cls = self._loaded.get(kind)
        if cls is None:
            module, _, name = self._paths[kind].partition(":")
            cls = getattr(importlib.import_module(module), name)
            self._loaded[kind] = cls
        return cls

    def line(self, kind: str) -> Kind:
        """The table line of ``kind``."""
        return self._kinds[kind]

    def default_on(self) -> tuple[str, ...]:
        """The kinds that run whether or not a configuration mentions them."""
        return tuple(k.name for k in self._kinds.values() if k.default_on)

    def site_keys(self) -> dict[str, str]:
        """Inventory key -> the kind whose class expands it."""
        return {k.site_key: k.name for k in self._kinds.values() if k.site_key}

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, kind: object) -> bool:
        return kind in self._paths


COLLECTORS = CollectorTable(_TABLE)
