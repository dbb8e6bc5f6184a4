"""What a report is computed from, whichever the source (a ledger, a Prometheus server): the period
with its days, the inventory, and per site the seconds by state, outage counts and repairs.

Every source fills the same structure, so both give the same figures for the same period.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

KNOWN = ("up", "down", "unreachable", "gap")


class ReportError(Exception):
    """A problem the user can fix, said in one sentence; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Period:
    """A half-open period ``(start, end]`` in Unix seconds, cut into local days (for the heatmap)."""

    start: float
    end: float
    tz: str
    label: str
    zone: dt.tzinfo
    #: (start, end) of each day, local midnights; the last one may be cut by ``end``
    days: tuple[tuple[float, float], ...]

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _zone(tz: str | None) -> dt.tzinfo:
    if not tz:
        return dt.datetime.now().astimezone().tzinfo or dt.UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"--tz: unknown time zone {tz!r} (e.g. Asia/Ho_Chi_Minh, UTC)") from None


def _days(a: dt.datetime, b: dt.datetime) -> tuple[tuple[float, float], ...]:
    out = []
    day = a.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < b:
        nxt = (day.replace(tzinfo=None) + dt.timedelta(days=1)).replace(tzinfo=day.tzinfo)
        out.append((max(day.timestamp(), a.timestamp()), min(nxt.timestamp(), b.timestamp())))
        day = nxt
    return tuple(out)


def _parse_time(text: str, zone: dt.tzinfo, what: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(
            f"{what}: {text!r} is not a date or time (2026-11-01 or 2026-11-01T08:00)"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=zone)


def make_period(month: str | None, start: str | None, end: str | None, tz: str | None, now: float) -> Period:
    """The period from ``--month YYYY-MM`` or ``--from``/``--to`` (local dates or ISO times); a
    period still running ends now."""
    zone = _zone(tz)
    if month is not None:
        if start or end:
            raise ReportError("give either --month or --from/--to, not both")
        m = re.fullmatch(r"(\d{4})-(\d{2})", month)
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise ReportError(f"--month: {month!r} is not a month (YYYY-MM, e.g. 2026-11)")
        y, mo = int(m.group(1)), int(m.group(2))
        a = dt.datetime(y, mo, 1, tzinfo=zone)
        b = dt.datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=zone)
        label = month
    else:
        if not start:
            raise ReportError("give --month YYYY-MM, or --from DATE (and optionally --to DATE)")
        a = _parse_time(start, zone, "--from")
        b = _parse_time(end, zone, "--to") if end else dt.datetime.fromtimestamp(now, zone)
        if end and len(end) == 10:  # a date: up to the end of that day
            b += dt.timedelta(days=1)
        label = f"{a.date().isoformat()} – {(b - dt.timedelta(seconds=1)).date().isoformat()}"
    if b.timestamp() > now:
        b = dt.datetime.fromtimestamp(now, zone)
    if b <= a:
        raise ReportError(
            f"the period {label} has not started yet" if a.timestamp() > now else "--to must be after --from"
        )
    name = getattr(zone, "key", None) or a.strftime("UTC%z")
    return Period(a.timestamp(), b.timestamp(), name, label, zone, _days(a, b))


@dataclass
class SiteInfo:
    id: str
    name: str
    level: str  # province, district, commune
    parent: str | None


@dataclass
class SiteData:
    """One site over the period; seconds by known state (the rest of the period is unknown)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KNOWN, 0.0))
    days: list[dict[str, float]] = field(default_factory=list)
    outages: dict[str, int] = field(default_factory=dict)  # started in the period, by cause
    repairs: dict[str, int] = field(default_factory=dict)  # ended in the period, by cause
    repair_seconds: dict[str, float] = field(default_factory=dict)
    ever_up: bool = False  # by the end of the period
    state_end: str = "unknown"  # at the end of the period


@dataclass
class OutageRow:
    site: str
    start: float
    end: float | None  # None: still going at the end of the period
    cause: str
    links: dict[str, str]
    down: float  # known seconds down / unreachable; unknown = duration - both
    unreachable: float
    exact: bool = True  # False: start and end only as precise as the source's resolution


@dataclass
class ReportData:
    period: Period
    sites: list[SiteInfo]
    data: dict[str, SiteData]
    outages: list[OutageRow]
    source: str
    notes: list[str] = field(default_factory=list)
    #: seconds of the period the source covers at all (the ledger's or the server's data)
    covered_from: float | None = None
    covered_to: float | None = None
