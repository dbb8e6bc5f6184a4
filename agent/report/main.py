"""``giamsat report``: read the source, compute the figures, write the HTML and CSV files.

Exit status: 0 written; 1 no data for the period, or the source cannot be read (nothing written);
2 bad arguments (unknown site, bad month...); 3 written, but the ledger had damaged records (named in the
report and on stderr). Every failure is one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from agent.report.data import ReportData, ReportError, make_period
from agent.report.figures import LONG_OUTAGE, compute
from agent.report.text import LANGS, Text

EXIT_DAMAGED = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--state-dir", type=Path, help="an agent's state_dir: read its ledger (exact)")
    src.add_argument(
        "--prometheus",
        metavar="URL",
        help="a Prometheus-compatible server (Prometheus, VictoriaMetrics, Thanos, Mimir) that scrapes the agents",
    )
    p.add_argument("--month", help="YYYY-MM: that calendar month (up to now if it is the current one)")
    p.add_argument("--from", dest="start", help="start date or time (2026-11-01, 2026-11-01T08:00)")
    p.add_argument("--to", dest="end", help="end date (included) or time; default now")
    p.add_argument("--tz", default=None, help="time zone of dates and days (default: this host's)")
    p.add_argument("--out", type=Path, default=Path("."), help="directory for the HTML and CSV files")
    p.add_argument("--lang", choices=LANGS, default="vi", help="vi (default) or en")
    p.add_argument("--site", default=None, help="only this site and the sites below it")
    p.add_argument(
        "--long",
        type=float,
        default=LONG_OUTAGE / 60,
        metavar="MINUTES",
        help="list every outage at least this long (default 60)",
    )


def subtree(data: ReportData, site: str) -> ReportData:
    ids = {s.id for s in data.sites}
    if site not in ids:
        some = ", ".join(sorted(ids)[:5])
        raise ReportError(f"--site: unknown site {site!r}; the inventory has {len(ids)} sites ({some}, ...)")
    keep = {site}
    changed = True
    while changed:
        changed = False
        for s in data.sites:
            if s.parent in keep and s.id not in keep:
                keep.add(s.id)
                changed = True
    data.sites = [s for s in data.sites if s.id in keep]
    data.outages = [o for o in data.outages if o.site in keep]
    return data


def slug(label: str) -> str:
    return re.sub(r"[^0-9A-Za-z-]+", "_", label.replace(" – ", "_")).strip("_")


def run(args: argparse.Namespace, now: float | None = None) -> int:
    now = time.time() if now is None else now
    damaged = 0
    try:
        period = make_period(args.month, args.start, args.end, args.tz, now)
        if args.state_dir is not None:
            from agent.report.from_ledger import from_book, load_state_dir

            book, stats, directory = load_state_dir(args.state_dir)
            data = from_book(book, period, book.last_ts, f"ledger {directory}")
            if stats.torn:
                damaged = stats.torn
                files = ", ".join(f"{name} ({n})" for name, n in sorted(stats.damaged.items()))
                msg = (
                    f"{directory}: {stats.torn} damaged record(s), {stats.torn_bytes} bytes, skipped in {files}; "
                    "the state changes they held are lost and the figures around them may be off"
                )
                data.notes.append(msg)
                print(f"giamsat report: warning: {msg}", file=sys.stderr)
        else:
            from agent.report.from_prometheus import from_prometheus

            data = from_prometheus(args.prometheus, period)
        if args.site:
            data = subtree(data, args.site)
        if args.long <= 0:
            raise ReportError("--long: must be a positive number of minutes")
        fig = compute(data, long_threshold=args.long * 60)
        out: Path = args.out
        try:
            out.mkdir(parents=True, exist_ok=True)
            stem = f"giamsat-report-{slug(period.label)}" + (f"-{args.site}" if args.site else "")
            from agent.report.csvfiles import write_csv
            from agent.report.html import render

            html_path = out / f"{stem}.html"
            html_path.write_text(render(fig, args.lang, now), encoding="utf-8")
            paths = [html_path, *write_csv(fig, Text(args.lang, period.zone), out, stem)]
        except OSError as exc:
            raise ReportError(f"--out {out}: cannot write: {exc.strerror}", code=1) from None
    except ReportError as exc:
        print(f"giamsat report: {exc}", file=sys.stderr)
        return exc.code
    for p in paths:
        print(p)
    return EXIT_DAMAGED if damaged else 0
