"""Report data from an outage book (one agent's ledger): exact to the second."""

from __future__ import annotations

import bisect
from pathlib import Path

from agent.ledger.book import OUTAGE_STATES, Book
from agent.ledger.journal import ReadStats, segments
from agent.ledger.recorder import LEDGER_DIR, replay
from agent.report.data import KNOWN, OutageRow, Period, ReportData, ReportError, SiteData, SiteInfo


def load_state_dir(state_dir: Path) -> tuple[Book, ReadStats, Path]:
    """The book of an agent's state directory; no ledger there is an error the user can fix."""
    directory = Path(state_dir) / LEDGER_DIR
    if not Path(state_dir).is_dir():
        raise ReportError(f"--state-dir {state_dir}: no such directory")
    if not segments(directory):
        raise ReportError(
            f"--state-dir {state_dir}: no ledger in it ({directory}/journal-*.log); "
            "is this the agent's state_dir, and has an agent with a ledger run there?",
            code=1,
        )
    stats = ReadStats()
    try:
        book = replay(directory, stats)
    except PermissionError:
        raise ReportError(f"{directory}: permission denied (run as the giamsat user or root)") from None
    except OSError as exc:
        raise ReportError(f"{directory}: cannot read: {exc.strerror}", code=1) from None
    return book, stats, directory


def from_book(book: Book, period: Period, until: float, source: str) -> ReportData:
    """The period's figures from ``book``, whose last known moment is ``until``."""
    a, b = period.start, period.end
    first = book.first_ts
    if first is None or not book.inventory:
        raise ReportError(f"{source}: the ledger holds no records yet", code=1)
    if until <= a or first >= b:
        raise ReportError(
            f"no data for {period.label}: {source} covers {_iso(first, period)} to {_iso(until, period)}",
            code=1,
        )
    sites = [SiteInfo(i, n, lv, p) for i, n, lv, p in book.inventory]
    day_starts = [d[0] for d in period.days]
    data: dict[str, SiteData] = {}
    rows: list[OutageRow] = []
    for s in sites:
        sd = data[s.id] = SiteData(days=[dict.fromkeys(KNOWN, 0.0) for _ in period.days])
        sb = book.sites.get(s.id)
        if sb is None:
            continue
        spans = book.spans(s.id, until)
        closed_up = sum(e - st for st, e, state in sb.spans if state == "up")
        sd.ever_up = sb.totals["up"] - closed_up > 0.5  # up time from before the kept history
        seconds, day_bins, days, n_days = sd.seconds, sd.days, period.days, len(period.days)
        for st, e, state in spans:
            if st < b:
                if state == "up":
                    sd.ever_up = True
                if b <= e:
                    sd.state_end = state
            lo = st if st > a else a
            hi = e if e < b else b
            if hi <= lo:
                continue
            seconds[state] += hi - lo
            i = bisect.bisect_right(day_starts, lo) - 1
            if i < 0:
                i = 0
            while i < n_days:
                d0, d1 = days[i]
                if d0 >= hi:
                    break
                part = (hi if hi < d1 else d1) - (lo if lo > d0 else d0)
                if part > 0:
                    day_bins[i][state] += part
                i += 1
        for o in sb.history:
            if a < o.start <= b:
                sd.outages[o.cause] = sd.outages.get(o.cause, 0) + 1
            if o.end is not None and a < o.end <= b:
                sd.repairs[o.cause] = sd.repairs.get(o.cause, 0) + 1
                sd.repair_seconds[o.cause] = sd.repair_seconds.get(o.cause, 0.0) + o.end - o.start
            if o.start < b and (o.end is None or o.end > a):
                end = o.end if o.end is not None and o.end <= b else None
                secs = {"down": o.down, "unreachable": o.unreachable}
                if o is sb.open and sb.state in OUTAGE_STATES and until > sb.since:
                    secs[sb.state] += until - sb.since  # the part of the current span so far
                rows.append(
                    OutageRow(s.id, o.start, end, o.cause, dict(o.links), secs["down"], secs["unreachable"])
                )
    rows.sort(key=lambda r: (r.start, r.site))
    return ReportData(period, sites, data, rows, source, covered_from=first, covered_to=until)


def _iso(ts: float, period: Period) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, period.zone).isoformat(timespec="seconds")
