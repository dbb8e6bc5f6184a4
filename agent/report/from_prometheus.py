"""Report data from a Prometheus-compatible server (Prometheus, VictoriaMetrics, Thanos, Mimir) that
scrapes the agents: increases of the ledger's counters between day boundaries, read with ``query_range``.

The counters are cumulative over each agent's whole ledger and survive its restarts, so the increase
between two readings is exact even when scrapes were missed in between; a reading is as old as the
last scrape before the boundary (within one scrape interval). A boundary with no reading at all makes
the days next to it unknown, never available.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from agent.ledger.book import CAUSES
from agent.report.data import KNOWN, OutageRow, Period, ReportData, ReportError, SiteData, SiteInfo

TIMEOUT = 60.0
LOOKBACK = "1h"
"""How far back a boundary's reading may be (the last scrape before it): a longer window makes the
server read more samples at every boundary (a month of 2 000 sites at 15 s: 60 M for 1 h)."""


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

    def at(self, expr: str, times: list[float]) -> list[tuple[dict[str, str], float, float]]:
        """``expr`` at each of ``times`` as (labels, time, value): one range query over the evenly
        spaced run of them (the day boundaries), one instant query for each of the rest."""
        out: list[tuple[dict[str, str], float, float]] = []
        grid, rest = _grid(times)
        if grid:
            step = grid[1] - grid[0] if len(grid) > 1 else 86400.0
            data = self.get(
                "/api/v1/query_range",
                {"query": expr, "start": f"{grid[0]:.3f}", "end": f"{grid[-1]:.3f}", "step": f"{step:.3f}"},
            )
            for series in data.get("result", []):
                for ts, value in series.get("values", []):
                    out.append((series["metric"], round(float(ts), 3), float(value)))
        for t in rest:
            for r in self.instant(expr, t):
                out.append((r["metric"], round(t, 3), float(r["value"][1])))
        return out


def _grid(times: list[float]) -> tuple[list[float], list[float]]:
    """The longest evenly spaced run from the first time (whole days), and the rest."""
    if len(times) < 3:
        return [], times
    step = times[1] - times[0]
    n = 2
    while n < len(times) and abs(times[n] - times[n - 1] - step) < 1e-3:
        n += 1
    return times[:n], times[n:]


def from_prometheus(url: str, period: Period) -> ReportData:
    api = Api(url)
    a, b = period.start, period.end
    bounds = [a, *(d[1] for d in period.days)]
    info = api.at(f"last_over_time(giamsat_site_info[{LOOKBACK}])", bounds)
    if not info:
        raise ReportError(
            f"no data for {period.label}: {api.url} has no giamsat_site_info in that period "
            "(does it scrape the agents, and keep that much history?)",
            code=1,
        )
    sites: dict[str, SiteInfo] = {}
    for m, _, _ in sorted(info, key=lambda x: -x[1]):  # the newest labels of each site
        sid = m.get("site", "")
        if sid and sid not in sites:
            sites[sid] = SiteInfo(sid, m.get("name", sid), m.get("level", ""), m.get("parent") or None)
    ordered = _parents_first(list(sites.values()))
    data = {sid: SiteData(days=[dict.fromkeys(KNOWN, 0.0) for _ in period.days]) for sid in sites}
    for st in KNOWN:
        values: dict[str, dict[float, float]] = {}
        expr = f"max by (site) (last_over_time(giamsat_site_{st}_seconds_total[{LOOKBACK}]))"
        for m, t, v in api.at(expr, bounds):
            values.setdefault(m.get("site", ""), {})[t] = v
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
            # up at some time before a reading in the period (the agent may be gone by its end)
            if st == "up" and any(v > 0 for v in by_t.values()):
                sd.ever_up = True
    for sd in data.values():
        for i, (d0, d1) in enumerate(period.days):
            if sum(sd.days[i].values()) > (d1 - d0) + 60:  # more than the day: readings from elsewhere
                for st in KNOWN:
                    sd.seconds[st] -= sd.days[i][st]
                sd.days[i] = dict.fromkeys(KNOWN, 0.0)
    # Outages and repairs: from each counter's readings over the whole period (the agent may be gone by
    # its end, so a reading at the end alone would miss them), which also time each outage.
    step = max(15.0, float(int((b - a) / 10_000) + 1))
    counters = {
        name: _counter(api, f"giamsat_site_{name}_total", a, b, step)
        for name in ("outages", "repairs", "repair_seconds")
    }
    for name, by_key in counters.items():
        for (sid, cause), events in by_key.items():
            if sid not in data or cause not in CAUSES:
                continue
            inc = sum(v for _, v in events)
            target = getattr(data[sid], name)
            target[cause] = round(inc) if name != "repair_seconds" else inc
    for r in api.instant("max by (site, state) (giamsat_site_state == 1)", b):
        sid = r["metric"].get("site")
        if sid in data:
            data[sid].state_end = r["metric"].get("state", "unknown")
    rows = _outages(counters["outages"], counters["repairs"], data)
    return ReportData(period, ordered, data, rows, f"Prometheus {api.url}")


BASELINE = "7d"
"""How far before the period its first reading of an outage counter may be (one instant query over the
few series that exist: sites that had outages)."""


def _counter(
    api: Api, name: str, a: float, b: float, step: float
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Each (site, cause) series' increases in the period, as (time seen, increase), at the step's
    resolution; a series absent before the period was created in it (counters appear at their first
    outage) and counts from zero; a reset counts from zero too."""

    def key(metric: dict[str, str]) -> tuple[str, str]:
        return metric.get("site", ""), metric.get("cause", "")

    expr = f"max by (site, cause) ({name})"
    base = {
        key(r["metric"]): float(r["value"][1])
        for r in api.instant(f"max by (site, cause) (last_over_time({name}[{BASELINE}]))", a)
    }
    data = api.get(
        "/api/v1/query_range",
        {"query": expr, "start": f"{a + step:.3f}", "end": f"{b:.3f}", "step": f"{step:.3f}"},
    )
    series = {
        key(r["metric"]): [(float(t), float(v)) for t, v in r.get("values", [])]
        for r in data.get("result", [])
    }
    for r in api.instant(expr, b):  # the period's very end, which the step's grid rarely falls on
        values = series.setdefault(key(r["metric"]), [])
        if not values or values[-1][0] < b:
            values.append((b, float(r["value"][1])))
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for k, values in series.items():
        prev = base.get(k, 0.0)
        events = []
        for t, v in values:
            inc = v - prev if v >= prev else v
            if inc > 0:
                events.append((t, inc))
            prev = v
        out[k] = events
    return out


def _outages(
    starts: dict[tuple[str, str], list[tuple[float, float]]],
    ends: dict[tuple[str, str], list[tuple[float, float]]],
    data: dict[str, SiteData],
) -> list[OutageRow]:
    """Each outage started in the period, its start and end as precise as the readings' step (at most
    ~10 000 points over the period, never finer than 15 s): the counters carry no exact times."""
    rows: list[OutageRow] = []
    for (sid, cause), events in starts.items():
        if sid not in data:
            continue
        done = sorted(t for t, n in ends.get((sid, cause), []) for _ in range(round(n)))
        for t in sorted(t for t, n in events for _ in range(round(n))):
            while done and done[0] < t:  # the end of an outage that started before the period
                done.pop(0)
            end = done.pop(0) if done else None
            rows.append(OutageRow(sid, t, end, cause, {}, 0.0, 0.0, exact=False))
    rows.sort(key=lambda r: (r.start, r.site))
    return rows


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
