"""The agent's own per-job health series."""

from __future__ import annotations

import re

import pytest

from agent.kernel import redact as redact_module
from agent.kernel.redact import MASK, register_secret
from agent.kernel.store import Store
from agent.selfmetrics import ReloadStatus, ScrapeStats, self_metrics
from exporters.exposition import OwnFamilyCache


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


def _job(store: Store, i: int, site: str = "xa-1") -> None:
    h = store.health(f"icmp/t{i}", "icmp", f"t{i}", site)
    h.last_success, h.last_success_timestamp, h.last_duration, h.runs_total = i % 3 != 0, 1e9 + i, 0.01 * i, 1
    h.failures_total, h.skipped_total = i % 3, i % 2


def test_health_series_render_as_their_samples_read() -> None:
    """The per-job health families are rendered from kept label dicts; the text is what rendering their
    samples one by one gives, scrape after scrape, and as jobs come and go."""
    from prometheus_client.core import Metric
    from prometheus_client.samples import Sample

    from exporters.exposition import render_families

    def plain(fam: Metric) -> Metric:
        out = Metric(fam.name, fam.documentation, fam.type)
        out.samples = [Sample(s.name, dict(s.labels), s.value) for s in fam.samples]
        return out

    store = Store()
    for i in range(50):
        _job(store, i, site='x"\\\nquote')
    cache = OwnFamilyCache()
    for round_ in range(3):
        if round_ == 2:
            store.retain({f"icmp/t{i}" for i in range(10, 50)})
            _job(store, 99, site="new")
        fams = self_metrics(store, None, ReloadStatus(), ScrapeStats())
        fast = b"\n".join(rf.text for rf in cache.render(fams, 30))
        slow = b"\n".join(rf.text for f in fams for rf in render_families([plain(f)], (), 30))
        assert fast == slow
        assert (
            b'giamsat_collector_failures_total{collector="icmp",site="x\\"\\\\\\nquote",target="t11"} 2.0'
            in fast
        )
    assert b'target="t99"' in fast and b'target="t1"}' not in fast


def test_a_secret_registered_later_is_masked_in_kept_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Label dicts are spelled once while they live, but a secret registered since (a reload) is
    masked in them at the next scrape."""
    monkeypatch.setattr(redact_module, "_forms", set())
    monkeypatch.setattr(redact_module, "_secret_pattern", None)
    monkeypatch.setattr(redact_module, "_pattern", re.compile(redact_module._SCHEME))
    store = Store()
    _job(store, 1, site="hunter2-secret-site")
    cache = OwnFamilyCache()

    def scrape() -> bytes:
        return b"".join(
            rf.text for rf in cache.render(self_metrics(store, None, ReloadStatus(), ScrapeStats()), 200)
        )

    assert b"hunter2-secret-site" in scrape()
    register_secret("hunter2-secret-site")
    again = scrape()
    assert b"hunter2-secret-site" not in again and MASK.encode() in again
