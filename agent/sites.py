"""Site state from uplink results and the hierarchy: up, down, unreachable, coverage gap, unknown.

A sysadmin's first question is not "which probe failed" but "which communes are cut off, and is it
their link or something upstream". This module answers it in the agent, from the latest uplink results
and the site tree, so Prometheus rules and Grafana only read finished states:

- ``up``: at least one of the site's uplinks succeeds.
- ``down``: every uplink fails and nothing above it explains that (parent up, unknown, or no parent).
- ``unreachable``: every uplink fails and the parent is down, unreachable or a coverage gap, so the
  outage is upstream and the site itself needs no alert of its own.
- ``gap`` (coverage gap): uplinks are configured and tried, but none has ever succeeded. Last-up times
  persist in ``state_dir/sites.json``, so a restart does not turn a gap into "never seen yet" or a
  long-known site into a gap.
- ``unknown``: no uplinks configured, or no result for any of them yet.

The tracker is a subscriber of the result pipeline: ``on_result`` notes each uplink result as it
arrives (O(1)), and ``tick`` recomputes every site's state (O(sites)), which the agent does every second,
since states also change with time alone (a result going stale). A scrape only reads (``collect``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.inventory import Inventory, Level
from agent.kernel.results import JobResult

log = logging.getLogger("giamsat.sites")

STATES = ("up", "down", "unreachable", "gap", "unknown")
"""Every state a site can be in; ``giamsat_site_state`` is one-hot over these."""

_BLOCKING = frozenset({"down", "unreachable", "gap"})
STATE_FILE = "sites.json"
STALE_AFTER_INTERVALS = 3
"""An uplink result older than this many intervals (plus its timeout) no longer counts, as in the store
(the agent passes its ``agent.stale_after_intervals``)."""
SAVE_EVERY = 60.0
"""Refreshed last-up times are written at most this often; first successes and new gaps at once."""
_FORMAT_VERSION = 1


def uplink_is_up(result: JobResult) -> bool:
    """Whether one job result says the link works, as its collector read it (``JobResult.link``): a
    collector that failed, or a kind whose results say nothing about a link, counts as not up."""
    link = result.link
    return link is not None and link.up


class SiteTracker:
    """Derives every site's state from the latest uplink results; persists last-up times."""

    def __init__(
        self, inventory: Inventory, state_dir: Path, stale_after_intervals: int = STALE_AFTER_INTERVALS
    ) -> None:
        self.inventory = inventory
        self.stale_after_intervals = stale_after_intervals
        self.path = Path(state_dir) / STATE_FILE
        self._lock = threading.Lock()
        # uplink target name -> (timestamp, up, stale after) of its latest result
        self._latest: dict[str, tuple[float, bool, float]] = {}
        self._last_up: dict[str, float] = {}
        # sites whose uplinks were tried and never worked (persisted, so a restart keeps the gap)
        self._tried: dict[str, float] = {}
        self._state: dict[str, str] = {s.id: "unknown" for s in inventory}
        self._up_since: dict[str, float] = {}  # newest state change to up, by result time
        self._fail_since: dict[str, float] = {}  # first failing result of the current failure
        self._dirty = False
        self._urgent = False  # a gap appeared or ended: worth writing at once
        self._saved_at = 0.0
        self._uplinks = frozenset(u for s in inventory for u in s.uplinks)
        self._order = _parents_first(inventory)
        self._families_cache: tuple[tuple[str, ...], tuple[Metric, Metric, Metric, Metric]] | None = None
        self._ancestors = {sid: inventory.ancestors(sid) for sid in inventory.sites}
        #: entries of the state file for sites not in this inventory, written back unchanged.
        self._kept_last_up: dict[str, float] = {}
        self._kept_tried: dict[str, float] = {}

    # -- state ------------------------------------------------------------------------------------

    def on_result(self, result: JobResult) -> None:
        """Pipeline subscriber: note an uplink's newest result (states follow at the next ``tick``)."""
        if result.target is None or result.target not in self._uplinks:
            return
        with self._lock:
            self._note(result, time.time())

    def tick(self, now: float | None = None) -> None:
        """Recompute every site's state from the uplink results noted so far, as of ``now``."""
        with self._lock:
            self._recompute(time.time() if now is None else now)

    def update(self, results: Iterable[JobResult], now: float) -> None:
        """Take many results at once (a reload's store snapshot) and recompute every site's state."""
        with self._lock:
            for r in results:
                if r.target is not None and r.target in self._uplinks:
                    self._note(r, now)
            self._recompute(now)

    def _note(self, r: JobResult, now: float) -> None:
        assert r.target is not None
        prev = self._latest.get(r.target)
        # A newer result replaces the one we hold; so does any result once the one we hold is dated in
        # the future, which means the wall clock has stepped back since.
        if prev is None or r.timestamp >= prev[0] or prev[0] > now:
            # as the store: a result older than a few intervals says nothing about now
            stale_after = r.timestamp + self.stale_after_intervals * r.interval + r.timeout
            self._latest[r.target] = (r.timestamp, uplink_is_up(r), stale_after)

    def _recompute(self, now: float) -> None:
        sites = self.inventory.sites
        state = self._state
        blocked: dict[str, bool] = {}
        for sid in self._order:
            site = sites[sid]
            parent = site.parent
            # Is the path above this site broken? An unknown parent (not monitored) passes the
            # question on to its own parent.
            if parent is None:
                blocked[sid] = False
            else:
                pstate = state[parent]
                blocked[sid] = pstate in _BLOCKING or (pstate == "unknown" and blocked[parent])
            seen = self._fresh(site.uplinks, now)
            if not seen:
                state[sid] = "unknown"
                continue
            if any(up for _, up in seen):
                newest = max(ts for ts, up in seen if up)
                if state[sid] != "up":
                    self._up_since[sid] = newest
                state[sid] = "up"
                self._fail_since.pop(sid, None)
                if self._last_up.get(sid, 0.0) < newest:
                    if sid not in self._last_up:
                        self._urgent = True
                    self._last_up[sid] = newest
                    self._dirty = True
                if self._tried.pop(sid, None) is not None:
                    self._dirty = self._urgent = True
                continue
            first_fail = self._fail_since.setdefault(sid, min(ts for ts, _ in seen))
            last_fail = max(ts for ts, _ in seen)
            if sid not in self._last_up:
                if sid not in self._tried:
                    self._tried[sid] = now
                    self._dirty = self._urgent = True
                state[sid] = "gap"
            elif blocked[sid]:
                state[sid] = "unreachable"
            elif parent is not None and state[parent] == "up" and state[sid] != "unknown":
                # Probes of a site and of its parent run at different moments. Call the site down only
                # once the parent has been seen up after the site started failing, and only for a
                # failure seen after the parent came back; until then the site keeps its state, so a
                # district outage never shows its communes as "down" for one probe interval.
                if (
                    last_fail >= self._up_since.get(parent, 0.0)
                    and self._last_up.get(parent, 0.0) >= first_fail
                ):
                    state[sid] = "down"
            else:
                state[sid] = "down"
        # A site that has a persisted "tried and never up" mark but no result yet stays a gap.
        for sid, st in state.items():
            if st == "unknown" and sid in self._tried and sid not in self._last_up:
                state[sid] = "gap"

    def _fresh(self, uplinks: tuple[str, ...], now: float) -> list[tuple[float, bool]]:
        out = []
        for u in uplinks:
            latest = self._latest.get(u)
            if latest is not None and now <= latest[2]:
                out.append((latest[0], latest[1]))
        return out

    def states(self) -> dict[str, str]:
        """Current state of every site (a copy)."""
        with self._lock:
            return dict(self._state)

    def last_up(self, site_id: str) -> float | None:
        with self._lock:
            return self._last_up.get(site_id)

    # -- metrics ----------------------------------------------------------------------------------

    def collect(self) -> list[Metric]:
        with self._lock:
            state = dict(self._state)
            last_up = dict(self._last_up)
        last = GaugeMetricFamily(
            "giamsat_site_last_up_timestamp_seconds",
            "Unix time of the newest successful uplink result of the site (persisted across restarts).",
            labels=["site"],
        )
        for sid in self.inventory.sites:
            if sid in last_up:
                last.add_metric([sid], last_up[sid])
        # States change rarely; thousands of sites times five states are rebuilt only when they do.
        key = tuple(state.values())
        cached = self._families_cache
        if cached is None or cached[0] != key:
            cached = self._families_cache = (key, self._state_families(state))
        up, one_hot, gap, sites_fam = cached[1]
        return [up, one_hot, last, gap, sites_fam]

    def _state_families(self, state: dict[str, str]) -> tuple[Metric, Metric, Metric, Metric]:
        up = GaugeMetricFamily(
            "giamsat_site_up",
            "Whether any uplink of the site works (1) or none does (0); absent while the state is unknown.",
            labels=["site"],
        )
        one_hot = GaugeMetricFamily(
            "giamsat_site_state",
            "Site state, one-hot: up, down, unreachable (outage upstream), gap (never up), unknown.",
            labels=["site", "state"],
        )
        gap = GaugeMetricFamily(
            "giamsat_site_coverage_gap",
            "1 if the site has uplinks configured and none has ever succeeded.",
            labels=["site"],
        )
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for sid, site in self.inventory.sites.items():
            st = state[sid]
            if st != "unknown":
                up.add_metric([sid], 1.0 if st == "up" else 0.0)
            for s in STATES:
                one_hot.add_metric([sid, s], 1.0 if s == st else 0.0)
            if site.uplinks:
                gap.add_metric([sid], 1.0 if st == "gap" else 0.0)
            for anc in self._ancestors[sid]:
                bucket = counts.setdefault((anc, site.level.name), dict.fromkeys(STATES, 0))
                bucket[st] += 1
        sites_fam = GaugeMetricFamily(
            "giamsat_sites",
            "Number of sites of a level below an ancestor site (direct or further up), by state.",
            labels=["ancestor", "level", "state"],
        )
        for (anc, level), bucket in sorted(counts.items(), key=lambda kv: (kv[0][0], Level[kv[0][1]])):
            for s in STATES:
                sites_fam.add_metric([anc, level, s], float(bucket[s]))
        return up, one_hot, gap, sites_fam

    # -- persistence ------------------------------------------------------------------------------

    def load(self) -> None:
        """Read last-up times; a missing or unreadable file is a warning, not a reason to stop."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            log.info("no saved site state yet", extra={"file": str(self.path)})
            return
        except OSError as exc:
            log.warning("cannot read saved site state", extra={"file": str(self.path), "error": str(exc)})
            return
        try:
            data = json.loads(raw.decode("utf-8"))
            last_up, tried = _parse_state(data)
        except (ValueError, TypeError) as exc:
            log.warning(
                "saved site state is corrupt; starting without it",
                extra={"file": str(self.path), "error": str(exc)},
            )
            return
        known = self.inventory.sites
        with self._lock:
            # Sites this inventory does not have (a reload removed them, maybe for a while) keep their
            # entries in the file: added back later, a site is not mistaken for a coverage gap.
            self._kept_last_up = {sid: ts for sid, ts in last_up.items() if sid not in known}
            self._kept_tried = {sid: ts for sid, ts in tried.items() if sid not in known}
            for sid, ts in last_up.items():
                if sid in known and ts > self._last_up.get(sid, 0.0):
                    self._last_up[sid] = ts
            for sid, ts in tried.items():
                if sid in known and sid not in self._last_up:
                    self._tried.setdefault(sid, ts)
            for sid in self._last_up:
                self._tried.pop(sid, None)
            self._recompute(time.time())

    def save(self, force: bool = False, now: float | None = None) -> bool:
        """Write the state file atomically (temp file, fsync, rename) if anything changed.

        Without ``force``, refreshed last-up times wait until ``SAVE_EVERY`` seconds after the previous
        write (one small fsync a minute at most); a new gap or a first success is written at once.
        Returns whether it wrote. Failures are logged, never raised: monitoring goes on without it.
        """
        now = time.time() if now is None else now
        with self._lock:
            if not force and not (self._dirty and (self._urgent or now - self._saved_at >= SAVE_EVERY)):
                return False
            data: dict[str, Any] = {
                "version": _FORMAT_VERSION,
                "last_up": dict(sorted({**self._kept_last_up, **self._last_up}.items())),
                "tried_never_up": dict(sorted({**self._kept_tried, **self._tried}.items())),
            }
            self._dirty = self._urgent = False
            self._saved_at = now
        try:
            _atomic_write(self.path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
        except OSError as exc:
            with self._lock:
                self._dirty = self._urgent = True
            log.warning("cannot save site state", extra={"file": str(self.path), "error": str(exc)})
            return False
        return True


def _parse_state(data: Any) -> tuple[dict[str, float], dict[str, float]]:
    if not isinstance(data, dict) or data.get("version") != _FORMAT_VERSION:
        raise ValueError("not a giamsat site state file (version 1)")
    out: list[dict[str, float]] = []
    for key in ("last_up", "tried_never_up"):
        section = data.get(key, {})
        if not isinstance(section, dict):
            raise ValueError(f"{key} must be a mapping")
        parsed: dict[str, float] = {}
        for sid, ts in section.items():
            if isinstance(ts, bool) or not isinstance(ts, int | float) or ts < 0:
                raise ValueError(f"{key}.{sid}: expected a Unix time")
            parsed[str(sid)] = float(ts)
        out.append(parsed)
    return out[0], out[1]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename is durable only once the directory entry is on disk.
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _parents_first(inventory: Inventory) -> list[str]:
    order: list[str] = []
    stack = [sid for sid, s in inventory.sites.items() if s.parent is None]
    stack.reverse()
    while stack:
        sid = stack.pop()
        order.append(sid)
        stack.extend(reversed(inventory.children[sid]))
    return order
