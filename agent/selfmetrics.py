"""The agent's own metrics: build info, per-job collector health, config reloads and the site inventory."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.inventory import Inventory
from agent.kernel.families import LabelRows
from agent.kernel.results import JobHealth
from agent.kernel.store import Store
from agent.kernel.version import __version__

Rows = list[tuple[dict[str, str], float]]

#: each job's label dict for its health series, made once while the job's health record lives (the
#: exporter renders a dict's labels once while it lives)
_job_labels: dict[str, tuple[JobHealth, dict[str, str]]] = {}


@dataclass
class ReloadStatus:
    successful: bool = True
    last_success_timestamp: float = field(default_factory=time.time)
    reloads_total: int = 0
    failures_total: int = 0


@dataclass
class ScrapeStats:
    rejected_total: int = 0
    conflicts_total: int = 0


def self_metrics(
    store: Store,
    inventory: Inventory | None,
    reload: ReloadStatus,
    scrape: ScrapeStats,
    blocking: dict[str, tuple[int, int]] | None = None,
) -> list[Metric]:
    build = GaugeMetricFamily(
        "giamsat_build_info",
        "A metric with a constant '1' value labeled by version and Python version.",
        labels=["version", "pythonversion"],
    )
    build.add_metric([__version__, platform.python_version()], 1)
    duration: Rows = []
    success: Rows = []
    last_ok: Rows = []
    skipped: Rows = []
    failures: Rows = []
    series_dropped: Rows = []
    health = store.health_snapshot()
    if len(_job_labels) > 2 * len(health) + 64:  # jobs a reload removed
        _job_labels.clear()
    for job_id, h in health.items():
        if h.last_success is None and h.skipped_total == 0:
            continue
        lv = _job_labels.get(job_id)
        if lv is None or lv[0] is not h:
            lv = _job_labels[job_id] = (
                h,
                {"collector": h.kind, "site": h.site or "", "target": h.target or ""},
            )
        labels = lv[1]
        skipped.append((labels, h.skipped_total))
        if h.last_success is None:
            # skipped before its first run finished (a slow first round): not failing, only not done yet
            continue
        duration.append((labels, h.last_duration))
        success.append((labels, 1.0 if h.last_success else 0.0))
        last_ok.append((labels, h.last_success_timestamp))
        failures.append((labels, h.failures_total))
        series_dropped.append((labels, h.series_dropped_total))
    reload_ok = GaugeMetricFamily(
        "giamsat_config_last_reload_successful",
        "Whether the last configuration reload attempt was successful.",
        value=1.0 if reload.successful else 0.0,
    )
    reload_ts = GaugeMetricFamily(
        "giamsat_config_last_reload_success_timestamp_seconds",
        "Timestamp of the last successful configuration reload.",
        value=reload.last_success_timestamp,
    )
    rejected = CounterMetricFamily(
        "giamsat_scrapes_rejected",
        "Scrapes refused because too many were in flight.",
        value=scrape.rejected_total,
    )
    conflicts = CounterMetricFamily(
        "giamsat_exposition_conflicts",
        "Series left out of /metrics because another job already exposed the same series or name with another type.",
        value=scrape.conflicts_total,
    )
    out: list[Metric] = [
        build,
        LabelRows(
            "giamsat_target_series_dropped",
            "Samples left out of a job's results beyond agent.max_series_per_target.",
            "counter",
            series_dropped,
        ),
        LabelRows(
            "giamsat_collector_duration_seconds",
            "How long the last run of a collection job took.",
            "gauge",
            duration,
        ),
        LabelRows(
            "giamsat_collector_success",
            "Whether the last run of a collection job succeeded.",
            "gauge",
            success,
        ),
        LabelRows(
            "giamsat_collector_last_success_timestamp_seconds",
            "When a collection job last succeeded.",
            "gauge",
            last_ok,
        ),
        LabelRows(
            "giamsat_collector_skipped",
            "Runs skipped because the previous run of the job was still going.",
            "counter",
            skipped,
        ),
        LabelRows("giamsat_collector_failures", "Failed runs of a collection job.", "counter", failures),
        reload_ok,
        reload_ts,
        rejected,
        conflicts,
    ]
    if blocking:
        stuck = GaugeMetricFamily(
            "giamsat_blocking_calls_stuck",
            "Blocking calls past their deadline whose thread has not returned.",
            labels=["collector"],
        )
        abandoned = CounterMetricFamily(
            "giamsat_blocking_calls_abandoned",
            "Blocking calls abandoned at their deadline.",
            labels=["collector"],
        )
        for kind, (n_stuck, n_abandoned) in sorted(blocking.items()):
            stuck.add_metric([kind], n_stuck)
            abandoned.add_metric([kind], n_abandoned)
        out += [stuck, abandoned]
    if inventory is not None:
        info = GaugeMetricFamily(
            "giamsat_site_info",
            "The site inventory: one series per site, for joins.",
            labels=["site", "name", "level", "parent"],
        )
        for s in inventory:
            info.add_metric([s.id, s.name, s.level.name, s.parent or ""], 1)
        out.append(info)
    return out
