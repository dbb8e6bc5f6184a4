"""Report data from a Prometheus-compatible server (Prometheus, VictoriaMetrics, Thanos, Mimir) that
scrapes the agents: increases of the ledger's counters between day boundaries, read with ``query_range``.

The counters are cumulative over each agent's whole ledger and survive its restarts, so the increase
between two readings is exact even when scrapes were missed in between; a reading is as old as the
last scrape before the boundary (within one scrape interval). A boundary with no reading at all makes
the days next to it unknown, never available.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from agent.ledger.book import CAUSES
from agent.report.data import KNOWN, Period, ReportData, ReportError, SiteData, SiteInfo

TIMEOUT = 60.0
LOOKBACK = "6h"
"""How far back a boundary's reading may be (the last scrape before it)."""


class Api:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ReportError(f"--prometheus: {url!r} is not an http(s) URL (e.g. http://prometheus:9090)")
        self.url = url.rstrip("/")

    def get(self, path: str, params: dict[str, str]) -> Any:
        # the scheme is http(s), checked in __init__
        req = urllib.request.Request(  # noqa: S310
            f"{self.url}{path}?{urllib.parse.urlencode(params)}", headers={"Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as r:  # noqa: S310
                body = r.read()
        except urllib.error.HTTPError as exc:
            detail = ""
            with contextlib.suppress(ValueError, AttributeError, OSError):
                detail = str(json.loads(exc.read()).get("error", ""))[:200]
            raise ReportError(
                f"--prometheus {self.url}: {path} answered HTTP {exc.code}"
                + (f": {detail}" if detail else ""),
                code=1,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReportError(f"--prometheus {self.url}: cannot reach it: {reason}", code=1) from None
        try:
            doc = json.loads(body)
            if doc.get("status") != "success":
                raise ValueError(doc.get("error", "status is not success"))
            return doc["data"]
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise ReportError(
                f"--prometheus {self.url}: not a Prometheus API answer on {path} ({str(exc)[:100]})", code=1
            ) from None

    def instant(self, expr: str, at: float) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        return list(data.get("result", []))

    def grid(self, expr: str, times: list[float]) -> dict[str, dict[float, float]]:
        """``expr`` (one series per site) at each of ``times``, by site: one range query when they are
        evenly spaced, else one instant query each."""
        out: dict[str, dict[float, float]] = {}

        def add(metric: dict[str, str], ts: float, value: str) -> None:
            out.setdefault(metric.get("site", ""), {})[round(ts, 3)] = float(value)

        steps = {round(b - a, 3) for a, b in itertools.pairwise(times)}
        if len(times) > 2 and len(steps) == 1:
            data = self.get(
                "/api/v1/query_range",
                {
                    "query": expr,
                    "start": f"{times[0]:.3f}",
                    "end": f"{times[-1]:.3f}",
                    "step": f"{steps.pop():.3f}",
                },
            )
            for series in data.get("result", []):
                for ts, value in series.get("values", []):
                    add(series["metric"], float(ts), value)
        else:
            for t in times:
                for series in self.instant(expr, t):
                    add(series["metric"], t, series["value"][1])
        return out


def from_prometheus(url: str, period: Period) -> ReportData:
    api = Api(url)
    a, b = period.start, period.end
    window = f"{max(60, int(b - a) + 3600)}s"
    info = api.instant(f"last_over_time(giamsat_site_info[{window}])", b)
    if not info:
        raise ReportError(
            f"no data for {period.label}: {api.url} has no giamsat_site_info in that period "
            "(does it scrape the agents, and keep that much history?)",
            code=1,
        )
    sites: dict[str, SiteInfo] = {}
    for r in info:
        m = r["metric"]
        sid = m.get("site", "")
        if sid and sid not in sites:
            sites[sid] = SiteInfo(sid, m.get("name", sid), m.get("level", ""), m.get("parent") or None)
    ordered = _parents_first(list(sites.values()))
    bounds = [a, *(d[1] for d in period.days)]
    # the grid of day boundaries: a range query over the whole days, the period's end apart if it is not on it
    whole = (
        [t for t in bounds if (t - a) % 86400 == 0]
        if all((d1 - d0) == 86400 for d0, d1 in period.days[:-1])
        else bounds
    )
    rest = [t for t in bounds if t not in whole]
    data = {sid: SiteData(days=[dict.fromkeys(KNOWN, 0.0) for _ in period.days]) for sid in sites}
    for st in KNOWN:
        expr = f"max by (site) (last_over_time(giamsat_site_{st}_seconds_total[{LOOKBACK}]))"
        values = api.grid(expr, whole)
        for t in rest:
            for r in api.instant(expr, t):
                values.setdefault(r["metric"].get("site", ""), {})[round(t, 3)] = float(r["value"][1])
        for sid, by_t in values.items():
            sd = data.get(sid)
            if sd is None:
                continue
            for i, (d0, d1) in enumerate(period.days):
                v0, v1 = by_t.get(round(d0, 3)), by_t.get(round(d1, 3))
                if v1 is None:
                    continue
                inc = v1 - v0 if v0 is not None and v1 >= v0 else v1  # a reset counts from zero
                if v0 is None and inc > d1 - d0:
                    continue  # no reading at the day's start and more than a day since: unknown
                sd.days[i][st] = inc
                sd.seconds[st] += inc
            last = by_t.get(round(b, 3))
            if last is not None and last > 0:
                sd.ever_up = sd.ever_up or st == "up"
    for sd in data.values():
        for i, (d0, d1) in enumerate(period.days):
            if sum(sd.days[i].values()) > (d1 - d0) + 60:  # more than the day: readings from elsewhere
                for st in KNOWN:
                    sd.seconds[st] -= sd.days[i][st]
                sd.days[i] = dict.fromkeys(KNOWN, 0.0)
    for name, field in (
        ("giamsat_site_outages_total", "outages"),
        ("giamsat_site_repairs_total", "repairs"),
        ("giamsat_site_repair_seconds_total", "repair_seconds"),
    ):
        expr = f"max by (site, cause) (last_over_time({name}[{window}]))"
        before = {
            (r["metric"].get("site"), r["metric"].get("cause")): float(r["value"][1])
            for r in api.instant(expr, a)
        }
        for r in api.instant(expr, b):
            sid, cause = r["metric"].get("site"), r["metric"].get("cause")
            if sid not in data or cause not in CAUSES:
                continue
            v1 = float(r["value"][1])
            v0 = before.get((sid, cause), 0.0)
            inc = v1 - v0 if v1 >= v0 else v1
            target = getattr(data[sid], field)
            target[cause] = round(inc) if field != "repair_seconds" else inc
    for r in api.instant("max by (site, state) (giamsat_site_state == 1)", b):
        sid = r["metric"].get("site")
        if sid in data:
            data[sid].state_end = r["metric"].get("state", "unknown")
    return ReportData(
        period,
        ordered,
        data,
        [],
        f"Prometheus {api.url}",
        notes=[
            "Outage start and end times are listed from an agent's ledger (--state-dir); "
            "this report was built from the server's counters."
        ],
    )


def _parents_first(sites: list[SiteInfo]) -> list[SiteInfo]:
    ids = {s.id for s in sites}
    children: dict[str | None, list[SiteInfo]] = {}
    for s in sites:
        children.setdefault(s.parent if s.parent in ids else None, []).append(s)
    out: list[SiteInfo] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        s = stack.pop()
        out.append(s)
        stack.extend(reversed(children.get(s.id, [])))
    return out
