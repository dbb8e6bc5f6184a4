"""SSH collector package: blocking client (client.py), pure parsers (parsers.py), the collector."""

from __future__ import annotations

from collectors.ssh.collector import SSHCollector

__all__ = ["SSHCollector"]
