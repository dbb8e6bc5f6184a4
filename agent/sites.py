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

Each state comes with a reason (the failing uplinks' own reason for ``down``) and the time it began
(``giamsat_site_state_change_timestamp_seconds``). An uplink is tracked per job (``kind/name``), so an ICMP
target and a TCP target that share a name are two uplinks, not one overwriting the other. A failure
reaches this module only once its collector confirmed it (an ICMP burst, a retry for other kinds), so
one lost round on a lossy line never turns a site ``down``.

States, reasons and since-times persist too: after a restart each site keeps its saved state until its
uplinks have a first result (``end_warmup``), so a scrape in the first seconds never sees a site that
is down as ``unknown`` (which would resolve its alert).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.inventory import Inventory, Level
from agent.kernel.results import JobResult

log = logging.getLogger("giamsat.sites")

STATES = ("up", "down", "unreachable", "gap", "unknown")
"""Every state a site can be in; ``giamsat_site_state`` is one-hot over these."""

_BLOCKING = frozenset({"down", "unreachable", "gap"})
_RESTORED = frozenset({"up", "down", "unreachable", "gap"})  # states a restart carries over
STATE_FILE = "sites.json"
#: Reasons of states other than ``down`` (whose reason is its failing uplinks' own, a bounded token).
REASON_UPSTREAM = "upstream"
REASON_NEVER_UP = "never_up"
REASON_NO_UPLINKS = "no_uplinks"
REASON_NO_RESULT = "no_result"
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


@dataclass(frozen=True, slots=True)
class _Seen:
    """The latest result of one uplink job."""

    timestamp: float  # when the result was recorded
    started: float  # when its run began (timestamp less duration)
    up: bool
    stale_after: float
    reason: str


@dataclass(frozen=True)
class SiteDetail:
    """One site as a person triages it: state, since when, why, and which uplinks fail."""

    state: str
    since: float | None
    reason: str
    failing: tuple[tuple[str, str], ...]  # (uplink job id, reason) of each fresh failing uplink


class SiteTracker:
    """Derives every site's state from the latest uplink results; persists last-up times and states."""

    def __init__(
        self, inventory: Inventory, state_dir: Path, stale_after_intervals: int = STALE_AFTER_INTERVALS
    ) -> None:
        self.inventory = inventory
        self.stale_after_intervals = stale_after_intervals
        self.path = Path(state_dir) / STATE_FILE
        self._lock = threading.Lock()
        # uplink target name -> {job id (kind/name) -> its latest result}
        self._latest: dict[str, dict[str, _Seen]] = {}
        self._last_up: dict[str, float] = {}
        # sites whose uplinks were tried and never worked (persisted, so a restart keeps the gap)
        self._tried: dict[str, float] = {}
        self._state: dict[str, str] = {s.id: "unknown" for s in inventory}
        self._reason: dict[str, str] = {
            s.id: REASON_NO_RESULT if s.uplinks else REASON_NO_UPLINKS for s in inventory
        }
        self._since: dict[str, float] = {}  # when the current state began
        self._failing: dict[str, tuple[tuple[str, str], ...]] = {}
        # Until the first round is in, a site without a fresh result keeps the state it had when the
        # agent stopped (``load``), rather than turning ``unknown`` for a few seconds.
        self._warming = True
        self._saved: set[str] = set()
        self._up_since: dict[str, float] = {}  # newest state change to up, by result time
        self._fail_since: dict[str, float] = {}  # first failing result of the current failure
        self._dirty = False
        self._urgent = False  # a gap appeared or ended: worth writing at once
        self._saved_at = 0.0
        self._uplinks = frozenset(u for s in inventory for u in s.uplinks)
        self._order = _parents_first(inventory)
        self._families_cache: (
            tuple[tuple[tuple[str, str, float], ...], tuple[Metric, Metric, Metric, Metric, Metric, Metric]]
            | None
        ) = None
        self._ancestors = {sid: inventory.ancestors(sid) for sid in inventory.sites}
        #: entries of the state file for sites not in this inventory, written back unchanged.
        self._kept_last_up: dict[str, float] = {}
        self._kept_tried: dict[str, float] = {}
        self._kept_states: dict[str, dict[str, Any]] = {}

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

    def end_warmup(self) -> None:
        """The first round is in: a site still without a fresh result is ``unknown`` from now on."""
        with self._lock:
            self._warming = False
            self._recompute(time.time())

    def _note(self, r: JobResult, now: float) -> None:
        assert r.target is not None
        jobs = self._latest.setdefault(r.target, {})
        prev = jobs.get(r.job_id)
        # A newer result replaces the one we hold; so does any result once the one we hold is dated in
        # the future, which means the wall clock has stepped back since.
        if prev is None or r.timestamp >= prev.timestamp or prev.timestamp > now:
            # as the store: a result older than a few intervals says nothing about now
            stale_after = r.timestamp + self.stale_after_intervals * r.interval + r.timeout
            up = uplink_is_up(r)
            reason = "" if up else (r.link.reason if r.link is not None and r.link.reason else "down")
            jobs[r.job_id] = _Seen(r.timestamp, r.timestamp - r.duration, up, stale_after, reason)

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
                self._failing.pop(sid, None)
                if self._warming and sid in self._saved:
                    continue  # the state saved at the last stop holds until the first result
                self._set(sid, "unknown", REASON_NO_RESULT if site.uplinks else REASON_NO_UPLINKS, now)
                continue
            if any(x.up for _, x in seen):
                newest = max(x.timestamp for _, x in seen if x.up)
                if state[sid] != "up":
                    self._up_since[sid] = newest
                self._set(sid, "up", "", now)
                self._fail_since.pop(sid, None)
                self._failing[sid] = tuple((job, x.reason) for job, x in seen if not x.up)
                if self._last_up.get(sid, 0.0) < newest:
                    if sid not in self._last_up:
                        self._urgent = True
                    self._last_up[sid] = newest
                    self._dirty = True
                if self._tried.pop(sid, None) is not None:
                    self._dirty = self._urgent = True
                continue
            failing = tuple((job, x.reason) for job, x in seen)
            self._failing[sid] = failing
            # When the failure began: the start of the first failing run, so a parent that answered
            # in the same round (probed at the same moment) counts as seen up during the failure.
            first_fail = self._fail_since.setdefault(sid, min(x.started for _, x in seen))
            last_fail = max(x.timestamp for _, x in seen)
            if sid not in self._last_up:
                if sid not in self._tried:
                    self._tried[sid] = now
                    self._dirty = self._urgent = True
                self._set(sid, "gap", REASON_NEVER_UP, now)
            elif blocked[sid]:
                self._set(sid, "unreachable", REASON_UPSTREAM, now)
            elif parent is not None and state[parent] == "up" and state[sid] != "unknown":
                # Probes of a site and of its parent run at different moments. Call the site down only
                # once the parent has been seen up after the site started failing, and only for a
                # failure seen after the parent came back; until then the site keeps its state, so a
                # district outage never shows its communes as "down" for one probe interval.
                if (
                    last_fail >= self._up_since.get(parent, 0.0)
                    and self._last_up.get(parent, 0.0) >= first_fail
                ):
                    self._set(sid, "down", failing[0][1], now)
            else:
                self._set(sid, "down", failing[0][1], now)
        # A site that has a persisted "tried and never up" mark but no result yet stays a gap.
        for sid, st in state.items():
            if st == "unknown" and sid in self._tried and sid not in self._last_up:
                self._set(sid, "gap", REASON_NEVER_UP, now)

    def _set(self, sid: str, new: str, reason: str, now: float) -> None:
        if self._state[sid] != new or sid not in self._since:
            if self._state[sid] != new:
                self._dirty = self._urgent = True  # a state change is worth writing at once
            self._state[sid] = new
            self._since[sid] = now
        self._reason[sid] = reason

    def _fresh(self, uplinks: tuple[str, ...], now: float) -> list[tuple[str, _Seen]]:
        out = []
        latest = self._latest
        for u in uplinks:
            jobs = latest.get(u)
            if jobs:
                for job, seen in jobs.items():
                    if now <= seen.stale_after:
                        out.append((job, seen))
        return out

    def states(self) -> dict[str, str]:
        """Current state of every site (a copy)."""
        with self._lock:
            return dict(self._state)

    def details(self) -> dict[str, SiteDetail]:
        """Every site's state, since when, its reason and its failing uplinks (for the status page)."""
        with self._lock:
            return {
                sid: SiteDetail(st, self._since.get(sid), self._reason[sid], self._failing.get(sid, ()))
                for sid, st in self._state.items()
            }

    def last_up(self, site_id: str) -> float | None:
        with self._lock:
            return self._last_up.get(site_id)

    # -- metrics ----------------------------------------------------------------------------------

    def collect(self) -> list[Metric]:
        with self._lock:
            key = tuple(
                (self._state[sid], self._reason[sid], self._since.get(sid, 0.0))
                for sid in self.inventory.sites
            )
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
        cached = self._families_cache
        if cached is None or cached[0] != key:
            cached = self._families_cache = (key, self._state_families(state, key))
        up, one_hot, gap, sites_fam, since, reason = cached[1]
        return [up, one_hot, since, reason, last, gap, sites_fam]

    def _state_families(
        self, state: dict[str, str], key: tuple[tuple[str, str, float], ...]
    ) -> tuple[Metric, Metric, Metric, Metric, Metric, Metric]:
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
        since = GaugeMetricFamily(
            "giamsat_site_state_change_timestamp_seconds",
            "Unix time the site entered its current state (persisted across restarts).",
            labels=["site"],
        )
        reason = GaugeMetricFamily(
            "giamsat_site_state_reason",
            "Why a site is not up (1): its failing uplinks' reason when down, upstream, never_up, "
            "no_result or no_uplinks.",
            labels=["site", "state", "reason"],
        )
        gap = GaugeMetricFamily(
            "giamsat_site_coverage_gap",
            "1 if the site has uplinks configured and none has ever succeeded.",
            labels=["site"],
        )
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for (sid, site), (st, why, changed) in zip(self.inventory.sites.items(), key, strict=True):
            if st != "unknown":
                up.add_metric([sid], 1.0 if st == "up" else 0.0)
            for s in STATES:
                one_hot.add_metric([sid, s], 1.0 if s == st else 0.0)
            if changed:
                since.add_metric([sid], changed)
            if st != "up":
                reason.add_metric([sid, st, why], 1.0)
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
        return up, one_hot, gap, sites_fam, since, reason

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
            saved_states = _parse_states(data)
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
            self._kept_states = {sid: v for sid, v in saved_states.items() if sid not in known}
            for sid, v in saved_states.items():
                if sid in known and v["state"] in _RESTORED and (v["state"] != "gap" or sid in self._tried):
                    self._state[sid] = v["state"]
                    self._since[sid] = v["since"]
                    self._reason[sid] = v["reason"]
                    self._saved.add(sid)
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
                "states": dict(
                    sorted(
                        {
                            **self._kept_states,
                            **{
                                sid: {"state": st, "since": self._since[sid], "reason": self._reason[sid]}
                                for sid, st in self._state.items()
                                if st != "unknown" and sid in self._since
                            },
                        }.items()
                    )
                ),
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


def _parse_states(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``states`` section (absent in files written before it existed): site -> state, since, reason."""
    section = data.get("states", {})
    if not isinstance(section, dict):
        raise ValueError("states must be a mapping")
    out: dict[str, dict[str, Any]] = {}
    for sid, v in section.items():
        if (
            not isinstance(v, dict)
            or v.get("state") not in STATES
            or isinstance(v.get("since"), bool)
            or not isinstance(v.get("since"), int | float)
            or not isinstance(v.get("reason", ""), str)
        ):
            raise ValueError(f"states.{sid}: expected state, since and reason")
        out[str(sid)] = {"state": v["state"], "since": float(v["since"]), "reason": v.get("reason", "")[:64]}
    return out


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
