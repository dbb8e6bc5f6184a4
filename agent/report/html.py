"""The report as one self-contained HTML page: inline CSS and SVG charts, no script, no external asset,
so it opens anywhere, can be mailed as one file, and prints cleanly to PDF (each section on its own page
where it is long). Every value from the data is escaped."""

from __future__ import annotations

import html
import time

from agent.ledger.book import CAUSES
from agent.report.figures import Figures, GroupFig, Totals
from agent.report.text import Text

e = html.escape

# availability colour scale of the heatmap, best first; unknown is grey, never green
SCALE = (
    (0.999, "#1b7837", "≥ 99,9%", "≥ 99.9%"),
    (0.99, "#7fbf7b", "≥ 99%", "≥ 99%"),
    (0.95, "#fee08b", "≥ 95%", "≥ 95%"),
    (0.90, "#f46d43", "≥ 90%", "≥ 90%"),
    (0.0, "#a50026", "< 90%", "< 90%"),
)
UNKNOWN_COLOUR = "#d9d9d9"

CSS = """
body{font-family:"DejaVu Sans","Noto Sans",Arial,sans-serif;margin:24px;color:#222;font-size:13px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #999}
table{border-collapse:collapse;margin:4px 0 12px}td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}
th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}
.big{font-size:20px;font-weight:bold}.cards td{padding:6px 14px}.note{color:#555;font-size:12px}
section{page-break-inside:avoid}section.long{page-break-inside:auto;page-break-before:always}
@media print{body{margin:10mm}h2{page-break-after:avoid}tr{page-break-inside:avoid}}
"""


def colour(v: float | None) -> str:
    if v is None:
        return UNKNOWN_COLOUR
    for floor, c, _, _ in SCALE:
        if v >= floor:
            return c
    return SCALE[-1][1]


def render(fig: Figures, lang: str = "vi", generated: float | None = None) -> str:
    d = fig.data
    p = d.period
    t = Text(lang, p.zone)
    prov = fig.province
    pt = prov.totals
    out: list[str] = [
        f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">',
        f"<title>{e(t('title'))} – {e(prov.name)} – {e(p.label)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(t('title'))}: {e(prov.name)}</h1>",
        f"<p>{e(t('period'))}: <b>{e(p.label)}</b> ({e(t.time(p.start))} – {e(t.time(p.end))}, "
        f"{e(t('tz'))} {e(p.tz)}) · {e(t('source'))}: {e(d.source)} · "
        f"{e(t('generated'))}: {e(t.time(generated if generated is not None else time.time()))}</p>",
    ]
    # -- summary
    cards = [
        (t("province_avail"), t.pct(pt.availability)),
        (t("communes_now"), f"{prov.communes_now} / {prov.communes}"),
        (t("communes_ever"), f"{prov.communes_ever} / {prov.communes}"),
        (t("outage_count"), str(pt.n_outages)),
        (t("downtime"), t.dur(pt.downtime)),
        (t("mttr"), t.dur(pt.mttr())),
        (t("unknown_time"), t.pct(pt.unknown / pt.period if pt.period else None, 1)),
    ]
    out.append(f'<section id="summary"><h2>{e(t("summary"))}</h2><table class="cards">')
    out += [f'<tr><th>{e(k)}</th><td class="big">{e(v)}</td></tr>' for k, v in cards]
    out.append(f'</table><p class="note">{e(t("note_unknown"))}</p>')
    if d.notes:
        out.append(f"<p><b>{e(t('notes'))}:</b></p><ul>")
        out += [f"<li>{e(n)}</li>" for n in d.notes]
        out.append("</ul>")
    out.append("</section>")
    # -- coverage
    out.append(f'<section id="coverage"><h2>{e(t("coverage"))}</h2><table>')
    out.append(
        f"<tr><th>{e(t('group'))}</th><th>{e(t('communes'))}</th><th>{e(t('now'))}</th>"
        f"<th>{e(t('ever'))}</th></tr>"
    )
    for g in [*fig.groups, prov]:
        if not g.communes:
            continue
        name = _group_name(g, t, prov)
        out.append(
            f"<tr><td>{'<b>' if g is prov else ''}{e(name)}{'</b>' if g is prov else ''}</td>"
            f'<td class="n">{g.communes}</td><td class="n">{g.communes_now} ({t.pct(g.communes_now / g.communes, 1)})</td>'
            f'<td class="n">{g.communes_ever} ({t.pct(g.communes_ever / g.communes, 1)})</td></tr>'
        )
    out.append(f"</table><p><b>{e(t('never'))}</b> ({len(fig.never_connected)}): ")
    names = [f"{fig.sites[s].name} ({s})" for s in fig.never_connected]
    out.append(e(", ".join(names)) if names else e(t("none")))
    out.append("</p></section>")
    # -- availability per district: bar chart
    out.append(f'<section id="availability"><h2>{e(t("availability"))}</h2>')
    out.append(_bars([*fig.groups, prov], t, prov))
    out.append("</section>")
    # -- heatmap
    out.append(f'<section id="heatmap" class="long"><h2>{e(t("heatmap"))}</h2>')
    out.append(_heatmap(fig, t))
    out.append("</section>")
    # -- causes
    out.append(f'<section id="causes"><h2>{e(t("causes"))}</h2><table>')
    out.append(
        f"<tr><th>{e(t('cause'))}</th><th>{e(t('outage_count'))}</th><th>{e(t('repaired'))}</th>"
        f"<th>{e(t('mttr'))}</th></tr>"
    )
    for c in CAUSES:
        out.append(
            f"<tr><td>{e(t('cause.' + c))}</td><td class='n'>{pt.outages[c]}</td>"
            f"<td class='n'>{pt.repairs[c]}</td><td class='n'>{e(t.dur(pt.mttr(c)))}</td></tr>"
        )
    out.append(
        f"<tr><th>{e(t('cause.total'))}</th><th class='n'>{pt.n_outages}</th>"
        f"<th class='n'>{sum(pt.repairs.values())}</th><th class='n'>{e(t.dur(pt.mttr()))}</th></tr>"
    )
    out.append("</table>")
    out.append(_group_table(fig, t))
    out.append("</section>")
    # -- worst sites
    out.append(f'<section id="worst"><h2>{e(t("worst"))}</h2>')
    out.append(_site_table(fig, fig.worst, t))
    out.append("</section>")
    # -- long outages
    out.append(
        f'<section id="outages" class="long"><h2>{e(t("outages"))} ({e(t("longer_than"))} '
        f"{e(t.dur(fig.long_threshold))})</h2>"
    )
    if fig.long_outages:
        out.append(
            f"<table><tr><th>{e(t('site'))}</th><th>{e(t('name'))}</th><th>{e(t('start'))}</th>"
            f"<th>{e(t('end'))}</th><th>{e(t('duration'))}</th><th>{e(t('cause'))}</th>"
            f"<th>{e(t('links'))}</th></tr>"
        )
        for o in fig.long_outages:
            end = o.end if o.end is not None else p.end
            links = ", ".join(f"{k}: {v}" for k, v in sorted(o.links.items()))
            out.append(
                f"<tr><td>{e(o.site)}</td><td>{e(fig.sites[o.site].name if o.site in fig.sites else '')}</td>"
                f"<td>{'~' if not o.exact else ''}{e(t.time(o.start))}</td>"
                f"<td>{'~' if not o.exact and o.end is not None else ''}{e(t.time(o.end))}</td>"
                f"<td class='n'>{e(t.dur(end - o.start))}</td><td>{e(t('cause.' + o.cause))}</td>"
                f"<td>{e(links)}</td></tr>"
            )
        out.append("</table>")
        if not all(o.exact for o in fig.long_outages):
            out.append(f'<p class="note">{e(t("approx_times"))}</p>')
    else:
        out.append(f"<p>{e(t('none'))}</p>")
    out.append("</section>")
    # -- every site
    out.append(f'<section id="sites" class="long"><h2>{e(t("sites"))}</h2>')
    out.append(_site_table(fig, [s.id for s in d.sites], t))
    out.append("</section></body></html>\n")
    return "".join(out)


def _group_name(g: GroupFig, t: Text, prov: GroupFig) -> str:
    if g is prov:
        return prov.name or t("summary")
    return g.name if g.id else t("direct")


def _bars(groups: list[GroupFig], t: Text, prov: GroupFig) -> str:
    label_w, bar_w, row_h = 260, 420, 24
    h = row_h * len(groups) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 90}" height="{h}" '
        f'role="img" aria-label="{e(t("availability"))}">'
    ]
    for i, g in enumerate(groups):
        y = 5 + i * row_h
        a = g.totals.availability
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" font-size="13" '
            f'font-weight="{"bold" if g is prov else "normal"}">{e(_group_name(g, t, prov))}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="{row_h - 6}" fill="{UNKNOWN_COLOUR}"/>'
        )
        if a is not None:
            parts.append(
                f'<rect x="{label_w}" y="{y + 3}" width="{bar_w * a:.1f}" height="{row_h - 6}" '
                f'fill="{colour(a)}"/>'
            )
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 16}" font-size="13">{e(t.pct(a, 2))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _heatmap(fig: Figures, t: Text) -> str:
    days = fig.data.period.days
    label_w, cell_w, cell_h, head_h = 230, max(10, min(22, 640 // max(1, len(days)))), 12, 48
    rows: list[tuple[str, str | None]] = []  # (label, site id or None for a group header)
    for g in fig.groups:
        rows.append((g.name if g.id else t("direct"), None))
        rows += [(f"{fig.sites[s].name}", s) for s in g.sites]
    width = label_w + cell_w * len(days) + 10
    height = head_h + cell_h * len(rows) + 40
    p = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{e(t("heatmap"))}" font-size="10">'
    ]
    for j, (d0, _) in enumerate(days):
        x = label_w + j * cell_w + cell_w / 2
        p.append(
            f'<text x="{x:.1f}" y="{head_h - 6}" text-anchor="end" transform="rotate(-60 {x:.1f} {head_h - 6})">'
            f"{e(t.day(d0))}</text>"
        )
    for i, (label, sid) in enumerate(rows):
        y = head_h + i * cell_h
        if sid is None:
            p.append(f'<text x="2" y="{y + cell_h - 2}" font-weight="bold">{e(label)}</text>')
            continue
        p.append(f'<text x="10" y="{y + cell_h - 2}">{e(label[:34])}</text>')
        for j, v in enumerate(fig.sites[sid].days):
            p.append(
                f'<rect x="{label_w + j * cell_w}" y="{y}" width="{cell_w - 1}" height="{cell_h - 1}" '
                f'fill="{colour(v)}"><title>{e(sid)} {e(t.day(days[j][0]))}: {e(t.pct(v, 2))}</title></rect>'
            )
    y = head_h + len(rows) * cell_h + 14
    x = 2
    for _, c, vi, en in [*SCALE, (0, UNKNOWN_COLOUR, t("legend_unknown"), t("legend_unknown"))]:
        p.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{c}"/>')
        p.append(f'<text x="{x + 16}" y="{y + 10}">{e(vi if t.lang == "vi" else en)}</text>')
        x += 110
    p.append("</svg>")
    return "".join(p)


def _row(t: Text, name: str, tot: Totals, extra: str = "") -> str:
    return (
        f"<td>{e(name)}</td>{extra}<td class='n'>{e(t.pct(tot.availability))}</td>"
        f"<td class='n'>{tot.n_outages}</td><td class='n'>{e(t.dur(tot.downtime))}</td>"
        f"<td class='n'>{e(t.dur(tot.mttr()))}</td><td class='n'>{e(t.dur(tot.unknown))}</td>"
    )


def _head(t: Text, extra: str = "") -> str:
    return (
        f"<tr><th>{e(t('name'))}</th>{extra}<th>{e(t('avail'))}</th><th>{e(t('outage_count'))}</th>"
        f"<th>{e(t('downtime'))}</th><th>{e(t('mttr'))}</th><th>{e(t('unknown_time'))}</th></tr>"
    )


def _group_table(fig: Figures, t: Text) -> str:
    rows = [_head(t)]
    for g in [*fig.groups, fig.province]:
        rows.append(f"<tr>{_row(t, _group_name(g, t, fig.province), g.totals)}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _site_table(fig: Figures, ids: list[str], t: Text) -> str:
    if not ids:
        return f"<p>{e(t('none'))}</p>"
    extra_h = f"<th>{e(t('site'))}</th><th>{e(t('level'))}</th><th>{e(t('state_end'))}</th>"
    rows = [_head(t, extra_h)]
    for sid in ids:
        f = fig.sites[sid]
        extra = (
            f"<td>{e(sid)}</td><td>{e(t('level.' + f.level) if f.level in ('province', 'district', 'commune') else f.level)}</td>"
            f"<td>{e(t('state.' + f.state_end))}</td>"
        )
        rows.append(f"<tr>{_row(t, f.name, f.totals, extra)}</tr>")
    return "<table>" + "".join(rows) + "</table>"
