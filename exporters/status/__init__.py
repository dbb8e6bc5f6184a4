"""The status page at ``/``: the province at a glance (site tree, outages first, coverage gaps, the
agent's own health), in Vietnamese or English."""

from exporters.status.model import AgentHealth, CollectorHealth, SiteRow, SiteTree, StatusSnapshot
from exporters.status.page import StatusPage

__all__ = ["AgentHealth", "CollectorHealth", "SiteRow", "SiteTree", "StatusPage", "StatusSnapshot"]
