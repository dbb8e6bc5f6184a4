"""Cost of the status page at ``/`` for a large province: snapshot, model build, per-request render, size.

No peer tool has this page, so the figures are absolute (with the machine load printed): a real
``SiteTracker`` holding 1 province, N district nodes and M communes (one ICMP uplink each, one district
cut so its communes are unreachable, every 50th commune never connected), read as the HTTP thread reads
it (``SiteTracker.details``, the only step under the tracker's lock, which ``/metrics`` also takes), then
rendered cold (after a state change: model, template) and warm (what most requests cost).

    .venv/bin/python bench/status_page.py [--districts 40] [--communes 1959] [--rounds 50]
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.inventory import Inventory, Level, Site
from agent.kernel.results import JobResult, LinkStatus
from agent.selfmetrics import ReloadStatus
from agent.sites import SiteTracker
from agent.statusview import agent_health, site_tree
from bench.common import median, percentile
from exporters.status import StatusPage, StatusSnapshot


def build(districts: int, communes: int) -> tuple[Inventory, list[JobResult], list[JobResult]]:
    """The inventory, a round before the cut and a round after it."""
    sites = [Site("p", "Tỉnh Hà Giang", Level.province, None, ("p-wan",))]
    for d in range(districts):
        sites.append(Site(f"d{d}", f"Huyện Số {d}", Level.district, "p", (f"d{d}-wan",)))
    for c in range(communes):
        sites.append(Site(f"c{c}", f"Xã Đạo Đức {c}", Level.commune, f"d{c % districts}", (f"c{c}-wan",)))
    now = time.time()
    before: list[JobResult] = []
    after: list[JobResult] = []
    for i, s in enumerate(sites):
        never = s.level == Level.commune and i % 50 == 0
        cut = s.id == "d3" or s.parent == "d3"
        name = s.uplinks[0]
        for ts, up, out in ((now - 120, not never, before), (now - 60, not (never or cut), after)):
            link = LinkStatus(up, "" if up else "timeout")
            out.append(JobResult(f"icmp/{name}", "icmp", name, s.id, (), ts, 0.01, True, link=link))
    return Inventory(sites), before, after


@contextmanager
def timed(into: list[tuple[float, float]]) -> Iterator[None]:
    """Wall and CPU time of the block (CPU time varies less on a loaded machine)."""
    w, c = time.perf_counter(), time.process_time()
    yield
    into.append((time.perf_counter() - w, time.process_time() - c))


def ms(samples: list[tuple[float, float]]) -> str:
    wall, cpu = [s[0] for s in samples], [s[1] for s in samples]
    return (
        f"wall median {median(wall) * 1e3:.1f} ms (p95 {percentile(wall, 95) * 1e3:.1f}), "
        f"CPU median {median(cpu) * 1e3:.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--districts", type=int, default=40)
    ap.add_argument("--communes", type=int, default=1959)
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()
    inv, before, after = build(args.districts, args.communes)
    with tempfile.TemporaryDirectory() as tmp:
        tracker = SiteTracker(inv, Path(tmp))
        now = time.time()
        tracker.end_warmup()
        tracker.update(before, now - 100)
        tracker.update(after, now)
        states = tracker.states()
        tree = site_tree(inv)
        health = agent_health((), {}, ReloadStatus(), "/etc/giamsat/giamsat.yml", True)
        load_before = os.getloadavg()

        snap_t: list[tuple[float, float]] = []
        cold_t: list[tuple[float, float]] = []
        warm_t: list[tuple[float, float]] = []
        body = b""
        for _ in range(args.rounds):
            with timed(snap_t):
                details = tracker.details()
            snap = StatusSnapshot(tree, details, health)
            with timed(cold_t):
                StatusPage().render(snap, "vi")  # a fresh cache: the first request after a change
        page = StatusPage()
        snap = StatusSnapshot(tree, tracker.details(), health)
        page.render(snap, "vi")
        for _ in range(args.rounds):
            with timed(warm_t):
                # the agent reuses the details for a second; a new snapshot object all the same
                body, _ = page.render(StatusSnapshot(tree, dict(snap.sites), health), "vi")
        load_after = os.getloadavg()

    counts: dict[str, int] = {}
    for st in states.values():
        counts[st] = counts.get(st, 0) + 1
    print(f"sites: {len(inv)} ({args.districts} district nodes, {args.communes} communes); states {counts}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} CPUs)")
    print(f"snapshot (SiteTracker.details, under its lock; taken at most once a second): {ms(snap_t)}")
    print(f"render after a state change (model + template + fill): {ms(cold_t)}")
    print(f"render, states unchanged (key compare + fill; most requests): {ms(warm_t)}")
    print(
        f"page size: {len(body) / 1024:.0f} KiB, gzip level 1 (as served) "
        f"{len(gzip.compress(body, compresslevel=1)) / 1024:.0f} KiB; model rebuilds in the warm loop: "
        f"{page.builds - 1}"
    )


if __name__ == "__main__":
    main()
