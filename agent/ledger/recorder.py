"""The ledger in the running agent: a subscriber of the result pipeline that journals site state changes.

It hears every result (``on_result``): uplink results give the failed links' last reasons, results
whose collector says the site's power failed (``JobResult.power_failing``: a UPS on battery or low) the
last time a site's power failed. After each site-state tick the agent hands it the states
(``observe``); every change is one
``st`` record, journaled (fsynced) and applied to the in-memory book, which the counters and the
``/report`` page read. The counters are cumulative over the whole journal, so they survive restarts and
availability over any window is exact from two readings.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from agent.inventory import Inventory
from agent.kernel.results import JobResult
from agent.ledger.book import CAUSES, POWER_WINDOW, Book
from agent.ledger.journal import Journal, JournalLocked, ReadStats, read_all

log = logging.getLogger("giamsat.ledger")

LEDGER_DIR = "ledger"
HEARTBEAT = 15.0
"""Seconds between ``alive`` records: after a crash, the agent's downtime starts at the last one."""
PRUNE_EVERY = 3600.0
"""The live book forgets spans and outages that ended before the current month (the ``/report`` page
shows the month so far; ``giamsat report`` replays the journal itself) this often: its memory stays
about one month of state changes."""


def replay(directory: Path, stats: ReadStats | None = None, keep_since: float | None = None) -> Book:
    """The book of a journal; with ``keep_since``, without the detail that ended before it (the totals
    are all there), pruned as it goes so a long journal never sits in memory whole."""
    book = Book()
    if keep_since is None:
        book.apply_all(read_all(directory, stats))
        return book
    for i, r in enumerate(read_all(directory, stats)):
        book.apply(r)
        if i % 50_000 == 49_999:
            book.prune(keep_since)
    book.prune(keep_since)
    return book


def month_start(now: float) -> float:
    """Local midnight starting the month ``now`` is in, less a day (the page's zone may differ)."""
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, -1)) - 86400


class LedgerRecorder:
    """Journals site state changes; exports the ledger's counters."""

    def __init__(
        self,
        state_dir: Path,
        inventory: Inventory,
        now: float | None = None,
        segment_bytes: int | None = None,
    ) -> None:
        self.directory = Path(state_dir) / LEDGER_DIR
        self._lock = threading.Lock()  # the book, against readers (scrapes, /report): held briefly
        self._write_lock = threading.Lock()  # one writer at a time; held across the fsync
        stats = ReadStats()
        now = time.time() if now is None else now
        self.book = replay(self.directory, stats, keep_since=month_start(now))
        self._pruned_at = now
        if stats.torn:
            log.warning(
                "ledger: skipped damaged records",
                extra={"dir": str(self.directory), "records": stats.torn, "bytes": stats.torn_bytes},
            )
        kwargs: dict[str, Any] = {} if segment_bytes is None else {"segment_bytes": segment_bytes}
        self.journal: Journal | None = Journal(
            self.directory, lambda: self.book.snapshot(self.book.last_ts), **kwargs
        )
        self.write_errors = 0
        self._reasons: dict[str, str] = {}  # uplink target -> last failure reason
        self._power_at: dict[str, float] = {}  # site -> last time a UPS there was on battery / low
        self._seen: dict[str, str] = {}
        self._inventory = inventory
        self._uplinks: dict[str, tuple[str, ...]] = {}
        self._targets: frozenset[str] = frozenset()
        self._last_write = now
        self._write([{"k": "boot", "ts": now}, self._inv_record(inventory, now)])
        self._set_inventory(inventory)

    @staticmethod
    def open(state_dir: Path, inventory: Inventory) -> LedgerRecorder | None:
        """A recorder, or None (logged) when the journal cannot be written: monitoring goes on."""
        try:
            return LedgerRecorder(state_dir, inventory)
        except JournalLocked as exc:
            log.error("ledger disabled: journal in use", extra={"error": str(exc)})
        except OSError as exc:
            log.error("ledger disabled: cannot open the journal", extra={"error": str(exc)})
        return None

    @staticmethod
    def _inv_record(inventory: Inventory, now: float) -> dict[str, Any]:
        return {
            "k": "inv",
            "ts": now,
            "sites": [[s.id, s.name, s.level.name, s.parent] for s in inventory],
        }

    def _set_inventory(self, inventory: Inventory) -> None:
        self._inventory = inventory
        self._uplinks = {s.id: s.uplinks for s in inventory}
        self._targets = frozenset(u for s in inventory for u in s.uplinks)

    def set_inventory(self, inventory: Inventory, now: float | None = None) -> None:
        """A reload: journal the new inventory (only if it changed)."""
        old = [(s.id, s.name, s.level, s.parent) for s in self._inventory]
        if old == [(s.id, s.name, s.level, s.parent) for s in inventory]:
            self._set_inventory(inventory)
            return
        self._set_inventory(inventory)
        self._write([self._inv_record(inventory, time.time() if now is None else now)])

    # -- pipeline subscriber ------------------------------------------------------------------------

    def on_result(self, result: JobResult) -> None:
        target = result.target
        if target is not None and target in self._targets:
            link = result.link
            if link is not None and not link.up:
                self._reasons[target] = link.reason or result.reason or "failed"
        if result.power_failing and result.site is not None:
            self._power_at[result.site] = result.timestamp

    # -- states ---------------------------------------------------------------------------------------

    def observe(self, states: dict[str, str], now: float | None = None) -> int:
        """Journal every site whose state changed since the last call (and a heartbeat when due).
        Returns the number of changes."""
        now = time.time() if now is None else now
        records: list[dict[str, Any]] = []
        seen = self._seen
        for sid, st in states.items():
            if seen.get(sid, "unknown") == st:
                continue
            seen[sid] = st
            rec: dict[str, Any] = {"k": "st", "ts": now, "site": sid, "st": st}
            if st in ("down", "unreachable", "gap"):
                links = {u: self._reasons.get(u, "failed") for u in self._uplinks.get(sid, ())}
                if links:
                    rec["links"] = links
                power = self._power_at.get(sid)
                if st == "down" and power is not None and now - power <= POWER_WINDOW:
                    rec["power"] = True
            records.append(rec)
        if not records and now - self._last_write < HEARTBEAT:
            return 0
        if not records:
            records.append({"k": "alive", "ts": now})
        self._write(records)
        return len(records) if records[0]["k"] == "st" else 0

    def _write(self, records: list[dict[str, Any]]) -> None:
        """Journal first (a rotation snapshots the book as it was before these), then apply. A scrape
        waits for the book only while records are applied, never for the disk."""
        with self._write_lock:
            self._journal(records)
            with self._lock:
                self.book.apply_all(records)
                self._last_write = records[-1]["ts"]
                if self._last_write - self._pruned_at > PRUNE_EVERY:
                    self._pruned_at = self._last_write
                    self.book.prune(month_start(self._last_write))

    def _journal(self, records: list[dict[str, Any]]) -> None:
        # Only writers (under _write_lock) change the book, so a rotation may snapshot it unlocked.
        journal = self.journal
        if journal is not None:
            try:
                journal.append(records)
            except OSError as exc:
                self.write_errors += 1
                if self.write_errors == 1 or self.write_errors % 1000 == 0:
                    log.error(
                        "ledger: cannot write the journal; counting in memory only",
                        extra={"error": str(exc), "errors": self.write_errors},
                    )

    def close(self, now: float | None = None) -> None:
        self._write([{"k": "stop", "ts": time.time() if now is None else now}])
        with self._write_lock:
            if self.journal is not None:
                self.journal.close()
                self.journal = None

    # -- views ----------------------------------------------------------------------------------------

    def view(self) -> Book:
        """A copy of the book to compute a report from without holding up the journal or a scrape."""
        with self._lock:
            return self.book.view()

    def collect(self, now: float | None = None) -> list[Metric]:
        now = time.time() if now is None else now
        outages = CounterMetricFamily(
            "giamsat_site_outages",
            "Outages of the site since its ledger began, by cause (own_link, upstream, power, unknown).",
            labels=["site", "cause"],
        )
        repairs = CounterMetricFamily(
            "giamsat_site_repairs",
            "Outages of the site that ended (it came back up), by cause.",
            labels=["site", "cause"],
        )
        repair_s = CounterMetricFamily(
            "giamsat_site_repair_seconds",
            "Summed duration of the site's ended outages, start to return, by cause (MTTR = this / repairs).",
            labels=["site", "cause"],
        )
        secs = {
            st: CounterMetricFamily(
                f"giamsat_site_{st}_seconds",
                f"Seconds the site was {st} since its ledger began (agent downtime and unknown state excluded).",
                labels=["site"],
            )
            for st in ("up", "down", "unreachable", "gap")
        }
        errors = CounterMetricFamily(
            "giamsat_ledger_write_errors", "Ledger journal writes that failed (counted in memory only)."
        )
        errors.add_metric([], float(self.write_errors))
        with self._lock:
            book = self.book
            for sid in self._uplinks:
                if sid not in book.sites:
                    continue
                b = book.sites[sid]
                for st, v in book.totals_at(sid, now).items():
                    secs[st].add_metric([sid], v)
                for c in CAUSES:
                    if c in b.outages:
                        outages.add_metric([sid, c], float(b.outages[c]))
                    if c in b.repairs:
                        repairs.add_metric([sid, c], float(b.repairs[c]))
                        repair_s.add_metric([sid, c], b.repair_seconds[c])
        return [outages, repairs, repair_s, *secs.values(), errors]
