"""Cost of site state at scrape time: SiteTracker.update + collect + text rendering for a large province.

There is no peer tool that derives site state, so this prints absolute figures: the time the scrape path
spends on site state for 1 province, N districts and M communes, each with one ICMP uplink, against the
time prometheus_client needs to render the same number of plain probe results (the rest of a scrape).

    .venv/bin/python bench/sites.py [--communes 3000] [--districts 30] [--rounds 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from agent.inventory import Inventory, Level, Site
from agent.kernel.results import JobResult, LinkStatus
from agent.sites import SiteTracker
from bench.common import median, percentile


def build(districts: int, communes: int) -> tuple[Inventory, list[JobResult]]:
    sites = [Site("p", "Tỉnh", Level.province, None, ())]
    for d in range(districts):
        sites.append(Site(f"d{d}", f"Huyện {d}", Level.district, "p", (f"d{d}-wan",)))
    for c in range(communes):
        sites.append(Site(f"c{c}", f"Xã {c}", Level.commune, f"d{c % districts}", (f"c{c}-wan",)))
    now = time.time()
    results = []
    for s in sites[1:]:
        fam = GaugeMetricFamily("probe_success", "x")
        up = not s.id.endswith("7")
        fam.add_metric([], 1.0 if up else 0.0)
        name = s.uplinks[0]
        link = LinkStatus(up, "" if up else "timeout")
        results.append(JobResult(f"icmp/{name}", "icmp", name, s.id, (fam,), now, 0.01, True, link=link))
    return Inventory(sites), results


class _Fams(Collector):
    def __init__(self, fams: list[Metric]) -> None:
        self.fams = fams

    def collect(self) -> list[Metric]:
        return self.fams


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--districts", type=int, default=30)
    ap.add_argument("--communes", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()
    inv, results = build(args.districts, args.communes)
    with tempfile.TemporaryDirectory() as tmp:
        tracker = SiteTracker(inv, Path(tmp))
        upd, col, ren = [], [], []
        for _ in range(args.rounds):
            now = time.time()
            t0 = time.perf_counter()
            tracker.update(results, now)
            t1 = time.perf_counter()
            fams = tracker.collect()
            t2 = time.perf_counter()
            reg = CollectorRegistry()
            reg.register(_Fams(fams))
            body = generate_latest(reg)
            t3 = time.perf_counter()
            upd.append(t1 - t0)
            col.append(t2 - t1)
            ren.append(t3 - t2)
        # the rest of a scrape for comparison: rendering one probe_success per uplink result
        probe = GaugeMetricFamily("probe_success", "x", labels=["site", "target"])
        for r in results:
            probe.add_metric([r.site or "", r.target or ""], 1.0)
        reg = CollectorRegistry()
        reg.register(_Fams([probe]))
        base = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            generate_latest(reg)
            base.append(time.perf_counter() - t0)
    n = len(inv)
    print(f"sites: {n} ({args.districts} districts, {args.communes} communes), {args.rounds} rounds")
    print(f"update : median {median(upd) * 1e3:7.2f} ms  p95 {percentile(upd, 95) * 1e3:7.2f} ms")
    print(f"collect: median {median(col) * 1e3:7.2f} ms  p95 {percentile(col, 95) * 1e3:7.2f} ms")
    print(f"render : median {median(ren) * 1e3:7.2f} ms  ({len(body)} bytes of site metrics)")
    total = median(upd) + median(col) + median(ren)
    print(f"site state per scrape: {total * 1e3:.2f} ms; rendering {n - 1} probe_success samples alone: "
          f"{median(base) * 1e3:.2f} ms (ratio {total / median(base):.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
