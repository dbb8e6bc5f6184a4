"""``giamsat inventory export-sd``: the inventory as Prometheus file_sd target groups.

For sites where Prometheus scrapes the agent blackbox-style (``/probe?module=KIND&target=NAME``), one
target group per (collector, site) carries the site's labels, so Prometheus knows every target and its
place in the hierarchy even while the agent is unreachable. The scrape config (see
``deploy/prometheus/scrape-file-sd.yml``) moves ``__address__`` into ``__param_target`` and points
``__address__`` at the agent.
"""

from __future__ import annotations

from typing import Any

from agent.config import LoadedConfig


def export_sd(loaded: LoadedConfig) -> list[dict[str, Any]]:
    """Target groups ``[{"targets": [...], "labels": {...}}]``, sorted for stable output (diffable)."""
    cfg = loaded.config
    inv = loaded.inventory
    groups: dict[tuple[str, str], list[str]] = {}
    for kind in sorted(cfg.kinds):
        for t in cfg.targets_of(kind):
            groups.setdefault((kind, t.site), []).append(t.name)
    out: list[dict[str, Any]] = []
    for (kind, site_id), names in sorted(groups.items()):
        site = inv.sites[site_id]
        labels = {
            "__param_module": kind,
            "collector": kind,
            "site": site.id,
            "site_name": site.name,
            "level": site.level.name,
        }
        if site.parent is not None:
            labels["parent"] = site.parent
        out.append({"targets": sorted(names), "labels": labels})
    return out
