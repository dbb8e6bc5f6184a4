"""The report's tables as CSV, UTF-8 with a BOM so spreadsheet programs show Vietnamese names right."""

from __future__ import annotations

import csv
from pathlib import Path

from agent.ledger.book import CAUSES
from agent.report.figures import Figures, Totals
from agent.report.text import Text


def _num(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{100 * v:.{digits}f}"


def _totals(tot: Totals) -> list[str]:
    s = tot.seconds
    mttr = tot.mttr()
    return [
        _num(tot.availability),
        *(str(round(s[k])) for k in ("up", "down", "unreachable", "gap")),
        str(round(tot.unknown)),
        *(str(tot.outages[c]) for c in CAUSES),
        "" if mttr is None else str(round(mttr)),
    ]


def _totals_head(t: Text) -> list[str]:
    return [
        f"{t('avail')} (%)",
        *(f"{t('state.' + k)} (s)" for k in ("up", "down", "unreachable", "gap")),
        f"{t('unknown_time')} (s)",
        *(f"{t('outage_count')}: {t('cause.' + c)}" for c in CAUSES),
        f"{t('mttr')} (s)",
    ]


def write_csv(fig: Figures, t: Text, out: Path, stem: str) -> list[Path]:
    """Write ``<stem>-sites.csv``, ``-districts.csv`` and ``-outages.csv``; returns their paths."""
    paths = []
    sites = out / f"{stem}-sites.csv"
    with sites.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow([t("site"), t("name"), t("level"), t("group"), t("state_end"), *_totals_head(t)])
        for s in fig.data.sites:
            sf = fig.sites[s.id]
            group = next((g.name for g in fig.groups if g.id == sf.group and g.id), t("direct"))
            level = t("level." + s.level) if s.level in ("province", "district", "commune") else s.level
            w.writerow([s.id, s.name, level, group, t("state." + sf.state_end), *_totals(sf.totals)])
    paths.append(sites)
    districts = out / f"{stem}-districts.csv"
    with districts.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow([t("group"), t("communes"), t("now"), t("ever"), *_totals_head(t)])
        for g in [*fig.groups, fig.province]:
            name = g.name if g.id or g is fig.province else t("direct")
            w.writerow([name, g.communes, g.communes_now, g.communes_ever, *_totals(g.totals)])
    paths.append(districts)
    outages = out / f"{stem}-outages.csv"
    with outages.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                *(t("site"), t("name"), t("start"), t("end"), f"{t('duration')} (s)", t("cause"), t("links")),
                *(f"{t('state.down')} (s)", f"{t('state.unreachable')} (s)"),
            ]
        )
        for o in fig.data.outages:
            end = o.end if o.end is not None else fig.data.period.end
            w.writerow(
                [
                    o.site,
                    fig.sites[o.site].name if o.site in fig.sites else "",
                    t.time(o.start),
                    t.time(o.end),
                    round(end - o.start),
                    t("cause." + o.cause),
                    "; ".join(f"{k}: {v}" for k, v in sorted(o.links.items())),
                    round(o.down) if o.exact else "",
                    round(o.unreachable) if o.exact else "",
                ]
            )
    paths.append(outages)
    return paths
