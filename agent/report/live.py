"""The agent's ``/report`` page: the current month so far, from the live ledger."""

from __future__ import annotations

import html
import time

from agent.ledger.recorder import LedgerRecorder
from agent.report.data import ReportError, make_period
from agent.report.figures import compute
from agent.report.from_ledger import from_book
from agent.report.html import render
from agent.report.text import LANGS


def render_current_month(ledger: LedgerRecorder, lang: str, now: float | None = None) -> tuple[int, str]:
    """(HTTP status, HTML page) for the month so far in this host's time zone."""
    now = time.time() if now is None else now
    if lang not in LANGS:
        lang = "vi"
    month = time.strftime("%Y-%m", time.localtime(now))
    period = make_period(month, None, None, None, now)

    try:
        data = from_book(ledger.view(), period, now, "ledger (live)")
    except ReportError as exc:
        return 503, f"<!doctype html><meta charset='utf-8'><p>{html.escape(str(exc))}</p>"
    return 200, render(compute(data), lang, now)
