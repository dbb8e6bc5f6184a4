"""SSH collector package: settings (settings.py), blocking client (client.py), pure parsers (parsers.py)
and the families built from them (metrics.py), the collector (collector.py)."""

from __future__ import annotations

from collectors.ssh.collector import SSHCollector

__all__ = ["SSHCollector"]
