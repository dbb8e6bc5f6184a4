"""SNMP collector: routers, switches and UPSes, polled with snmp_exporter's modules and names."""

from __future__ import annotations

from collectors.snmp.collector import SnmpCollector

__all__ = ["SnmpCollector"]
