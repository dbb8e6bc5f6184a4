"""What the status page may read of the running agent, as plain snapshots (``exporters.status``):
the site tree of the current inventory and the collectors' health. Nothing here holds a reference to a
live object the page could change."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from agent.inventory import Inventory
from agent.kernel.pipeline import Job
from agent.kernel.results import JobHealth
from agent.kernel.version import __version__
from agent.selfmetrics import ReloadStatus
from exporters.status import AgentHealth, CollectorHealth, SiteRow, SiteTree


def site_tree(inventory: Inventory) -> SiteTree:
    """The inventory as the page walks it (built once per configuration)."""
    return SiteTree([SiteRow(s.id, s.name, int(s.level), s.parent) for s in inventory])


def agent_health(
    jobs: Iterable[Job],
    health: dict[str, JobHealth],
    reload: ReloadStatus,
    config: str,
    first_round_done: bool,
) -> AgentHealth:
    """How each collector kind's jobs last ran: working, failing (with the most frequent reasons), or
    not run yet."""
    by_kind: dict[str, list[JobHealth | None]] = {}
    for job in jobs:
        by_kind.setdefault(job.kind, []).append(health.get(job.job_id))
    collectors = []
    for kind in sorted(by_kind):
        records = by_kind[kind]
        ok = sum(1 for h in records if h is not None and h.last_success is True)
        failing = Counter(
            h.last_reason or "error" for h in records if h is not None and h.last_success is False
        )
        newest = max((h.last_success_timestamp for h in records if h is not None), default=0.0)
        collectors.append(
            CollectorHealth(
                kind=kind,
                jobs=len(records),
                ok=ok,
                failing=sum(failing.values()),
                pending=len(records) - ok - sum(failing.values()),
                newest_success=newest,
                errors=tuple(failing.most_common()),
            )
        )
    return AgentHealth(
        version=__version__,
        config=config,
        reload_ok=reload.successful,
        reload_success_timestamp=reload.last_success_timestamp,
        first_round_done=first_round_done,
        collectors=tuple(collectors),
    )
