"""The agent's own per-job health series."""

from __future__ import annotations

from agent.kernel.store import Store
from agent.selfmetrics import ReloadStatus, ScrapeStats, self_metrics


def _series(store: Store) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for fam in self_metrics(store, None, ReloadStatus(), ScrapeStats()):
        for s in fam.samples:
            if "target" in s.labels:
                out.setdefault(s.name, {})[s.labels["target"]] = s.value
    return out


def test_a_job_skipped_before_its_first_run_finished_is_not_reported_failing() -> None:
    """A slow first round (an unreachable target's confirmation burst, say) makes the scheduler skip the
    next fire; that job has not failed, and ``giamsat_collector_success 0`` would start CollectorFailing."""
    store = Store()
    slow = store.health("icmp/xa-1-wan", "icmp", "xa-1-wan", "xa-1")
    slow.skipped_total = 1
    done = store.health("icmp/xa-2-wan", "icmp", "xa-2-wan", "xa-2")
    done.last_success, done.last_success_timestamp, done.runs_total = False, 0.0, 1
    got = _series(store)
    assert got["giamsat_collector_skipped_total"] == {"xa-1-wan": 1.0, "xa-2-wan": 0.0}
    assert got["giamsat_collector_success"] == {"xa-2-wan": 0.0}
