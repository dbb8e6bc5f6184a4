"""The report's figures from its data: availability per site, per district-era node and for the province,
coverage of communes, outages and mean time to repair by cause, the worst sites, the long outages.

Definitions (docs/report.md):

- *known* time is time with a known site state (up, down, unreachable, gap); the rest of the period is
  *unknown* (the agent was not running, results were stale, the data does not reach that far) and is
  never counted as available or not.
- *availability* = up / (up + down + unreachable); a site or group with none of these has none (shown
  as unknown). A group's availability is its sites' up time over their up, down and unreachable time
  (each second of each site weighs the same). A coverage gap (a commune never connected) is not in
  availability: it is reported under coverage, where it counts against the province.
- *downtime* = down + unreachable seconds.
- an *outage* is counted in the period it starts in; MTTR is the mean start-to-return duration of the
  outages that ended in the period.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.ledger.book import CAUSES
from agent.report.data import KNOWN, OutageRow, ReportData, SiteData

WORST = 10
LONG_OUTAGE = 3600.0
"""Outages at least this long are listed one by one (``--long``)."""


@dataclass
class Totals:
    """Sums over some sites: seconds by state, outages and repairs by cause."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KNOWN, 0.0))
    period: float = 0.0  # sites x period length
    outages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0))
    repairs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0))
    repair_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0.0))

    def add(self, d: SiteData, period: float) -> None:
        for k in KNOWN:
            self.seconds[k] += d.seconds[k]
        self.period += period
        for c in CAUSES:
            self.outages[c] += d.outages.get(c, 0)
            self.repairs[c] += d.repairs.get(c, 0)
            self.repair_seconds[c] += d.repair_seconds.get(c, 0.0)

    @property
    def known(self) -> float:
        return sum(self.seconds.values())

    @property
    def unknown(self) -> float:
        return max(0.0, self.period - self.known)

    @property
    def availability(self) -> float | None:
        s = self.seconds
        k = s["up"] + s["down"] + s["unreachable"]
        return s["up"] / k if k > 0 else None

    @property
    def downtime(self) -> float:
        return self.seconds["down"] + self.seconds["unreachable"]

    @property
    def n_outages(self) -> int:
        return sum(self.outages.values())

    def mttr(self, cause: str | None = None) -> float | None:
        n = sum(self.repairs.values()) if cause is None else self.repairs[cause]
        s = sum(self.repair_seconds.values()) if cause is None else self.repair_seconds[cause]
        return s / n if n else None


@dataclass
class SiteFig:
    id: str
    name: str
    level: str
    group: str
    totals: Totals
    days: list[float | None]  # availability per day
    state_end: str
    ever_up: bool


@dataclass
class GroupFig:
    """A district-era node with the sites under it (or the sites directly under the province)."""

    id: str
    name: str
    totals: Totals = field(default_factory=Totals)
    communes: int = 0
    communes_now: int = 0
    communes_ever: int = 0
    sites: list[str] = field(default_factory=list)


@dataclass
class Figures:
    data: ReportData
    sites: dict[str, SiteFig]
    groups: list[GroupFig]
    province: GroupFig
    never_connected: list[str]
    worst: list[str]
    long_outages: list[OutageRow]
    long_threshold: float


def _avail(d: dict[str, float]) -> float | None:
    k = d["up"] + d["down"] + d["unreachable"]
    return d["up"] / k if k > 0 else None


def compute(data: ReportData, long_threshold: float = LONG_OUTAGE, worst: int = WORST) -> Figures:
    period = data.period
    info = {s.id: s for s in data.sites}
    root_name = next((s.name for s in data.sites if s.parent is None), "")

    def group_of(sid: str) -> str:
        cur: str | None = sid
        while cur is not None:
            s = info[cur]
            if s.level == "district":
                return s.id
            cur = s.parent if s.parent in info else None
        return ""

    groups: dict[str, GroupFig] = {}
    for s in data.sites:
        if s.level == "district":
            groups[s.id] = GroupFig(s.id, s.name)
    province = GroupFig("", root_name)
    sites: dict[str, SiteFig] = {}
    for s in data.sites:
        d = data.data.get(s.id) or SiteData(days=[dict.fromkeys(KNOWN, 0.0) for _ in period.days])
        t = Totals()
        t.add(d, period.seconds)
        g = group_of(s.id)
        if g not in groups:
            groups[g] = GroupFig(g, "")
        sites[s.id] = SiteFig(
            s.id, s.name, s.level, g, t, [_avail(x) for x in d.days], d.state_end, d.ever_up
        )
        for grp in (groups[g], province):
            grp.totals.add(d, period.seconds)
            grp.sites.append(s.id)
            if s.level == "commune":
                grp.communes += 1
                grp.communes_now += d.state_end == "up"
                grp.communes_ever += d.ever_up
    ordered = sorted((g for g in groups.values() if g.id), key=lambda g: g.name)
    if "" in groups:
        ordered.append(groups[""])
    never = [s.id for s in data.sites if s.level == "commune" and not sites[s.id].ever_up]
    ranked = sorted(
        (f for f in sites.values() if f.totals.availability is not None and f.totals.availability < 1),
        key=lambda f: (f.totals.availability, -f.totals.downtime, f.id),
    )
    long_rows = [
        o for o in data.outages if (o.end if o.end is not None else period.end) - o.start >= long_threshold
    ]
    return Figures(
        data, sites, ordered, province, never, [f.id for f in ranked[:worst]], long_rows, long_threshold
    )
