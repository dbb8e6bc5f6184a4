"""The outage book: site state spans and outages, rebuilt from the journal's records.

Records (``k`` is the kind):

- ``boot`` / ``stop`` / ``alive``: the agent started, stopped cleanly, is still running. Between the
  last record before a ``boot`` (a ``stop``, or the last heartbeat after a crash) and a site's first
  state after it, the site's state is **unknown**: the agent's own downtime is neither up nor down.
- ``inv``: the site inventory (``sites``: ``[id, name, level, parent]`` each).
- ``st``: a site entered a state (``site``, ``st``), with the uplinks that failed and their last
  reasons (``links``) and whether a UPS at the site was on battery or low shortly before (``power``).
- ``snap``: the whole book at the start of a new segment (the older segments may be gone).

An **outage** starts when a site goes from ``up`` to ``down`` or ``unreachable`` and ends at its next
``up``. Unknown time in between (an agent restart, results gone stale) does not end it: an outage that
spans a restart stays one outage, its unknown seconds counted apart. Its cause is decided when it starts:
``upstream`` (the site became unreachable: a parent was down), ``power`` (it went down within
``POWER_WINDOW`` of its UPS reporting on-battery or low battery), ``own_link`` (it went down otherwise),
or ``unknown`` (its start was not seen: the state before it was unknown).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

KNOWN = ("up", "down", "unreachable", "gap")
"""States that count as known time; ``unknown`` time is what is left of a period."""
OUTAGE_STATES = frozenset({"down", "unreachable"})
_STATES = frozenset({*KNOWN, "unknown"})
CAUSES = ("own_link", "upstream", "power", "unknown")
POWER_WINDOW = 600.0
"""A UPS reading on battery (or low) at most this many seconds before a site went down makes the cause
``power``."""
_VERSION = 1


@dataclass(slots=True)
class Outage:
    site: str
    start: float
    cause: str
    end: float | None = None
    #: failed uplinks and their last reasons, as sorted pairs (shared between outages: the same few
    #: combinations recur thousands of times in a month, and a dict each cost most of the book's memory)
    links: tuple[tuple[str, str], ...] = ()
    #: known seconds of the outage down and unreachable; unknown = duration - both
    down: float = 0.0
    unreachable: float = 0.0

    def add(self, state: str, seconds: float) -> None:
        if state == "down":
            self.down += seconds
        else:
            self.unreachable += seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "start": self.start,
            "cause": self.cause,
            "end": self.end,
            "links": dict(self.links),
            "seconds": {"down": self.down, "unreachable": self.unreachable},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Outage:
        return cls(
            str(d["site"]),
            float(d["start"]),
            str(d["cause"]),
            None if d.get("end") is None else float(d["end"]),
            tuple(sorted((str(k), str(v)) for k, v in dict(d.get("links") or {}).items())),
            float(d["seconds"]["down"]),
            float(d["seconds"]["unreachable"]),
        )


_CODE = {s: i for i, s in enumerate(KNOWN)}


class Spans:
    """A site's closed spans of known state, oldest first, packed: two doubles and a byte each (a list
    of tuples cost seven times as much, and a busy province has hundreds of thousands a month)."""

    __slots__ = ("ends", "starts", "states")

    def __init__(self) -> None:
        self.starts = array("d")
        self.ends = array("d")
        self.states = bytearray()

    def append(self, span: tuple[float, float, str]) -> None:
        self.starts.append(span[0])
        self.ends.append(span[1])
        self.states.append(_CODE[span[2]])

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self) -> Iterator[tuple[float, float, str]]:
        known = KNOWN
        for st, e, c in zip(self.starts, self.ends, self.states, strict=True):
            yield st, e, known[c]

    def first_end(self) -> float | None:
        return self.ends[0] if self.states else None

    def drop_before(self, before: float) -> None:
        """Forget the spans that ended before ``before``."""
        i = 0
        ends = self.ends
        while i < len(ends) and ends[i] < before:
            i += 1
        del self.starts[:i], self.ends[:i], self.states[:i]

    def copy(self) -> Spans:
        out = Spans()
        out.starts, out.ends, out.states = (
            array("d", self.starts),
            array("d", self.ends),
            bytearray(self.states),
        )
        return out


@dataclass
class SiteBook:
    """One site: its current state since when, cumulative figures, its spans and outages."""

    state: str = "unknown"
    since: float = 0.0
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KNOWN, 0.0))
    outages: dict[str, int] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)
    repair_seconds: dict[str, float] = field(default_factory=dict)
    open: Outage | None = None
    #: closed spans of known state, (start, end, state), oldest first
    spans: Spans = field(default_factory=Spans)
    history: list[Outage] = field(default_factory=list)  # every outage, closed and open, oldest first

    def close_span(self, ts: float) -> None:
        st = self.state
        if st in self.totals and ts > self.since:
            self.spans.append((self.since, ts, st))
            self.totals[st] += ts - self.since
            if self.open is not None and st in OUTAGE_STATES:
                self.open.add(st, ts - self.since)


class Book:
    """Replays records into site books; ``apply`` is the only way in (the recorder uses it live)."""

    def __init__(self) -> None:
        self.sites: dict[str, SiteBook] = {}
        self.inventory: list[tuple[str, str, str, str | None]] = []
        self.first_ts: float | None = None
        self.last_ts = 0.0
        self.running = False
        self.records = 0
        self._interned: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}

    def _links(self, raw: dict[Any, Any]) -> tuple[tuple[str, str], ...]:
        key = tuple(sorted((str(k), str(v)) for k, v in raw.items()))
        return self._interned.setdefault(key, key)

    def site(self, sid: str) -> SiteBook:
        b = self.sites.get(sid)
        if b is None:
            b = self.sites[sid] = SiteBook()
        return b

    def apply_all(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            self.apply(r)

    def apply(self, r: dict[str, Any]) -> None:
        kind = r.get("k")
        ts = r.get("ts")
        if not isinstance(ts, int | float) or isinstance(ts, bool):
            return
        ts = float(ts)
        if kind == "snap":
            if self.records == 0:
                self._restore(r)
            return
        self.records += 1
        if self.first_ts is None:
            self.first_ts = ts
        if kind == "st":
            self._state(r, ts)
        elif kind == "alive":
            pass
        elif kind == "boot":
            # After a crash the last record is the last moment the agent vouched for; after a clean
            # stop the sites are unknown already.
            self._all_unknown(self.last_ts if self.running else ts)
            self.running = True
        elif kind == "stop":
            self._all_unknown(ts)
            self.running = False
        elif kind == "inv":
            sites = r.get("sites")
            if isinstance(sites, list):
                self.inventory = [
                    (str(s[0]), str(s[1]), str(s[2]), None if s[3] in (None, "") else str(s[3]))
                    for s in sites
                    if isinstance(s, list) and len(s) == 4
                ]
        self.last_ts = max(self.last_ts, ts)

    def _all_unknown(self, ts: float) -> None:
        for b in self.sites.values():
            if b.state != "unknown":
                b.close_span(max(ts, b.since))
                b.state, b.since = "unknown", max(ts, b.since)

    def _state(self, r: dict[str, Any], ts: float) -> None:
        sid, new = r.get("site"), r.get("st")
        if new not in _STATES or not isinstance(sid, str):
            return
        b = self.sites.get(sid) or self.site(sid)
        if ts < b.since:  # the wall clock stepped back: never count negative time
            ts = b.since
        prev, since = b.state, b.since
        if ts > since and prev != "unknown":  # close_span, inlined: this runs for every record
            b.spans.append((since, ts, prev))
            b.totals[prev] += ts - since
            if b.open is not None and prev in OUTAGE_STATES:
                b.open.add(prev, ts - since)
        b.state, b.since = new, ts
        if new in OUTAGE_STATES:
            raw = r.get("links")
            links = self._links(raw) if isinstance(raw, dict) and raw else ()
            if b.open is None:
                if prev == "up":
                    cause = "upstream" if new == "unreachable" else "power" if r.get("power") else "own_link"
                else:
                    cause = "unknown"
                b.open = Outage(sid, ts, cause, links=links)
                b.history.append(b.open)
                b.outages[cause] = b.outages.get(cause, 0) + 1
            else:
                if links and links != b.open.links:
                    b.open.links = self._links({**dict(b.open.links), **dict(links)})
        elif new == "up" and b.open is not None:
            o, b.open = b.open, None
            o.end = ts
            b.repairs[o.cause] = b.repairs.get(o.cause, 0) + 1
            b.repair_seconds[o.cause] = b.repair_seconds.get(o.cause, 0.0) + (ts - o.start)

    # -- views ---------------------------------------------------------------------------------------

    def spans(self, sid: str, until: float) -> list[tuple[float, float, str]]:
        """The site's known spans, the current one closed at ``until`` (the last moment known)."""
        b = self.sites.get(sid)
        if b is None:
            return []
        out = list(b.spans)  # tuples again: a few sites at a time
        if b.state in KNOWN and until > b.since:
            out.append((b.since, until, b.state))
        return out

    def totals_at(self, sid: str, now: float) -> dict[str, float]:
        """Cumulative seconds by state up to ``now`` (the live counters)."""
        b = self.sites[sid]
        out = dict(b.totals)
        if b.state in out and now > b.since:
            out[b.state] += now - b.since
        return out

    def prune(self, before: float) -> None:
        """Forget spans and closed outages that ended before ``before`` (totals stay)."""
        for b in self.sites.values():
            first = b.spans.first_end()
            if first is not None and first < before:
                b.spans.drop_before(before)
            if b.history and b.history[0].end is not None and b.history[0].end < before:
                b.history = [o for o in b.history if o.end is None or o.end >= before]

    def view(self) -> Book:
        """A copy to read from while this book goes on changing (the lists and the open outages are
        copied; closed outages never change). Milliseconds for thousands of sites."""
        out = Book()
        out.inventory, out.first_ts, out.last_ts = self.inventory, self.first_ts, self.last_ts
        out.running, out.records = self.running, self.records
        for sid, b in self.sites.items():
            o = b.open
            if o is not None:
                o = Outage(o.site, o.start, o.cause, o.end, o.links, o.down, o.unreachable)
            history = [o if h is b.open else h for h in b.history] if o is not None else list(b.history)
            out.sites[sid] = SiteBook(
                b.state,
                b.since,
                dict(b.totals),
                b.outages,
                b.repairs,
                b.repair_seconds,
                o,
                b.spans.copy(),
                history,
            )
        return out

    # -- snapshot ------------------------------------------------------------------------------------

    def snapshot(self, ts: float) -> dict[str, Any]:
        """Everything needed to go on without the records before it (spans are not kept)."""
        return {
            "k": "snap",
            "v": _VERSION,
            "ts": ts,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "running": self.running,
            "inv": [list(s) for s in self.inventory],
            "sites": {
                sid: {
                    "state": b.state,
                    "since": b.since,
                    "totals": b.totals,
                    "outages": b.outages,
                    "repairs": b.repairs,
                    "repair_seconds": b.repair_seconds,
                    "open": b.open.to_json() if b.open else None,
                }
                for sid, b in self.sites.items()
            },
        }

    def _restore(self, r: dict[str, Any]) -> None:
        try:
            if r.get("v") != _VERSION:
                return
            sites: dict[str, SiteBook] = {}
            for sid, d in dict(r["sites"]).items():
                b = SiteBook(
                    state=str(d["state"]),
                    since=float(d["since"]),
                    totals={k: float(d["totals"].get(k, 0.0)) for k in KNOWN},
                    outages={str(k): int(v) for k, v in d["outages"].items()},
                    repairs={str(k): int(v) for k, v in d["repairs"].items()},
                    repair_seconds={str(k): float(v) for k, v in d["repair_seconds"].items()},
                    open=Outage.from_json(d["open"]) if d.get("open") else None,
                )
                if b.open is not None:
                    b.history.append(b.open)
                sites[str(sid)] = b
            inv = [(str(s[0]), str(s[1]), str(s[2]), s[3] or None) for s in r.get("inv", [])]
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            return  # a damaged snapshot: start from the records after it
        self.sites, self.inventory = sites, inv
        self.first_ts = float(r["ts"])
        self.last_ts = float(r.get("last_ts") or r["ts"])
        self.running = bool(r.get("running"))
