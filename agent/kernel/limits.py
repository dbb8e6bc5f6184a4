"""A cap on series per target, so one device reporting thousands of rows cannot flood Prometheus.

Meant to be applied once per collection, where a result is stored (``Runner.run_job``), so ``/metrics``
and ``/probe`` serve the same bounded result and a scrape pays nothing. Health families (``*_up``,
``probe_success``, ``*_failure_reason``, ...) are always kept, so a capped target never looks down.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from prometheus_client.core import Metric

#: Families kept whatever the cap: they say whether the target is up and why not.
HEALTH_SUFFIXES = ("_up", "_success", "_failure_reason", "_duration_seconds")


def is_health_family(name: str, keep: Collection[str] = ()) -> bool:
    return name.endswith(HEALTH_SUFFIXES) or name in keep


def count_series(families: Sequence[Metric]) -> int:
    return sum(len(f.samples) for f in families)


def cap_series(
    families: Sequence[Metric], max_series: int, keep: Collection[str] = ()
) -> tuple[list[Metric], int]:
    """At most ``max_series`` samples, health families first; returns (families, samples dropped).

    ``keep`` names more health families: a collector's declared link metrics, whatever their names.

    Deterministic: the other families keep their order and the first samples of each, so the same
    device gives the same series on every collection (no flapping series in Prometheus). Families left
    empty are dropped. Health samples count toward the cap but are never dropped.
    """
    total = count_series(families)
    if total <= max_series:
        return list(families), 0
    budget = max_series - sum(len(f.samples) for f in families if is_health_family(f.name, keep))
    out: list[Metric] = []
    for fam in families:
        if is_health_family(fam.name, keep):
            out.append(fam)
            continue
        if budget <= 0:
            continue
        take = fam.samples[:budget]
        budget -= len(take)
        if len(take) == len(fam.samples):
            out.append(fam)
            continue
        cut = Metric(fam.name, fam.documentation, fam.type, fam.unit)
        cut.samples = list(take)
        out.append(cut)
    return out, total - count_series(out)
