"""The status page as HTML: no script, no external resource, every value escaped.

``compile_page`` does the work that depends only on the site states (tree walk, ordering, escaping,
absolute times) and returns a template: strings with the timestamps whose "x min ago" depends on the
moment of the request left as floats, and ``HEALTH`` where the agent's own health goes. ``fill`` turns
it into the page for one request, which costs a join and a few thousand small formats.
"""

from __future__ import annotations

import functools
import html
import time
import urllib.parse
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from exporters.status.i18n import STRINGS
from exporters.status.model import LEVELS, STATES, AgentHealth, Node, PageModel

REFRESH_SECONDS = 15
HEALTH = None
"""Where ``fill`` puts the agent's health, rendered per request (it changes every round)."""


@dataclass(frozen=True, slots=True)
class OpenIf:
    """Where a collapsed subtree's ``open`` attribute goes when the request pinned it (``?open=``)."""

    key: str


Part = str | float | OpenIf | None

_e = functools.partial(html.escape, quote=True)

STYLE = """
body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222;background:#fff;font-size:15px}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.2em 0 .4em;border-bottom:1px solid #ccc}
nav a{margin-right:1em}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;vertical-align:top}
tr:nth-child(even){background:#f6f6f6}th{background:#eee}code{font-size:.9em;color:#555}
.b{display:inline-block;min-width:7.5em;padding:1px 6px;border-radius:3px;color:#fff;font-weight:600;text-align:center}
.down{background:#d32f2f}.unreachable{background:#ef6c00}.gap{background:#6a1b9a}.unknown{background:#757575}
.up{background:#2e7d32}.t-down{color:#d32f2f}.t-unreachable{color:#e65100}.t-gap{color:#6a1b9a}
.t-unknown{color:#616161}.t-up{color:#2e7d32}.n{font-weight:600}
.pb{border-left:6px solid #d32f2f;padding:4px 10px;margin:6px 0;background:#fdecea}
.pb.unreachable{border-color:#ef6c00;background:#fff3e0}.ok{padding:6px 10px;background:#e8f5e9}
details{margin:2px 0 2px 1.2em}summary{cursor:pointer;padding:2px 0}.rel{color:#666}
.why{color:#b71c1c}.deg{color:#8d6e00}.foot{color:#666;font-size:.9em;margin-top:2em}
.cnt span{margin-right:.8em}.pin{font-size:.85em;margin-left:.5em}
"""


def compile_page(model: PageModel, lang: str) -> list[Part]:
    """The page for ``model`` in ``lang``, with request-time parts left open (see the module doc)."""
    s = STRINGS[lang]
    out: list[Part] = []
    add = out.append
    province = " · ".join(n.row.name for n in model.roots if n.row.level == 0)
    n_problems = len(model.problems)
    title = f"{s['title']}: {province}" if province else s["title"]
    tab = f"({n_problems}) {title}" if n_problems else title
    add(
        f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(tab)}</title><style>{STYLE}</style></head><body>\n"
        f"<header><h1>{_e(title)}</h1><nav>"
        f'<a href="/report">{s["nav.report"]}</a><a href="/metrics">{s["nav.metrics"]}</a>'
        f'<a href="/-/healthy">{s["nav.health"]}</a><a href="/-/ready">{s["nav.ready"]}</a>'
        f'<a href="/?lang={"en" if lang == "vi" else "vi"}" hreflang="{"en" if lang == "vi" else "vi"}">'
        f"{s['nav.language']}</a></nav></header>\n"
    )
    # Whole inventory, counts per level and state.
    add(f'<section id="summary"><h2>{s["summary"]}</h2><table><tr><th></th>')
    add("".join(f'<th><span class="b {st}">{s["state." + st]}</span></th>' for st in STATES))
    add("</tr>")
    for level in sorted(model.totals):
        counts = model.totals[level]
        add(f"<tr><th>{s['level.' + LEVELS[min(level, 2)]]}</th>")
        add("".join(f'<td class="n t-{st}">{counts.get(st, 0)}</td>' for st in STATES))
        add("</tr>")
    add("</table></section>\n")
    # Problems first.
    add(f'<section id="problems"><h2>{s["problems"]} ({n_problems})</h2>')
    if not model.problems:
        add(f'<p class="ok">{s["problems.none"]}</p>')
    for p in model.problems:
        node = p.node
        add(f'<div class="pb {node.detail.state}">')
        _site_line(out, node, s)
        if p.behind:
            add(
                f"<details{' open' if len(p.behind) <= 30 else ''}><summary>{s['problems.behind']}: "
                f"{_counts_text(_count(p.behind), s)}</summary><table>"
            )
            for b in p.behind:
                _site_row(out, b, s)
            add("</table></details>")
        add("</div>")
    add("</section>\n")
    # The tree.
    add(f'<section id="tree"><h2>{s["tree"]}</h2>')
    if not model.roots:
        add(f"<p>{s['sites.none']}</p>")
    for root in model.roots:
        _subtree(out, root, s, top=True)
    add("</section>\n")
    # Coverage gaps apart.
    add(f'<section id="gaps"><h2>{s["gaps"]} ({len(model.gaps)})</h2>')
    if model.gaps:
        add(
            f"<p>{s['gaps.note']}</p><table><tr><th>{s['col.site']}</th><th>{s['col.id']}</th>"
            f"<th>{s['col.tried']}</th><th>{s['col.why']}</th></tr>"
        )
        for g in model.gaps:
            add(f"<tr><td>{_e(g.row.name)}</td><td><code>{_e(g.row.id)}</code></td><td>")
            _since(out, g.detail.since, s)
            add(f"</td><td>{_failing(g, s)}</td></tr>")
        add("</table>")
    else:
        add(f"<p>{s['gaps.none']}</p>")
    add("</section>\n")
    add(HEALTH)
    add("</body></html>\n")
    return _merge(out)


def fill(
    template: list[Part], lang: str, now: float, health: AgentHealth, opened: Collection[str] = ()
) -> str:
    """The page for one request: relative times as of ``now``, the agent's health, and the subtrees
    ``opened`` (pinned with ``?open=``, so they stay open across the page's own refresh)."""
    s = STRINGS[lang]
    memo: dict[float, str] = {}
    parts: list[str] = []
    for p in template:
        if type(p) is str:
            parts.append(p)
        elif p is HEALTH:
            parts.append(render_health(health, lang, now))
        elif isinstance(p, OpenIf):
            parts.append(" open" if p.key in opened else "")
        else:
            assert isinstance(p, float)
            r = memo.get(p)
            if r is None:
                r = memo[p] = s["ago"].format(duration(now - p, lang))
            parts.append(r)
    return "".join(parts)


def render_health(h: AgentHealth, lang: str, now: float) -> str:
    s = STRINGS[lang]
    reload = (
        s["agent.reload.ok"].format(absolute(h.reload_success_timestamp))
        if h.reload_ok
        else f'<span class="why">{s["agent.reload.failed"].format(absolute(h.reload_success_timestamp))}</span>'
    )
    newest = max((c.newest_success for c in h.collectors), default=0.0)
    latest = (
        f"{absolute(newest)} <span class=rel>({s['ago'].format(duration(now - newest, lang))})</span>"
        if newest
        else s["never"]
    )
    rows = []
    for c in h.collectors:
        last = (
            f"{absolute(c.newest_success)} <span class=rel>({s['ago'].format(duration(now - c.newest_success, lang))})</span>"
            if c.newest_success
            else s["never"]
        )
        errors = ", ".join(f"{_e(reason)} ×{n}" for reason, n in c.errors[:3])
        rows.append(
            f"<tr><td>{_e(c.kind)}</td><td>{c.jobs}</td><td class=t-up>{c.ok}</td>"
            f'<td class="{"why" if c.failing else ""}">{c.failing}</td><td>{c.pending}</td><td>{last}</td>'
            f'<td class="why">{errors}</td></tr>'
        )
    return (
        f'<section id="agent"><h2>{s["agent"]}</h2><table>'
        f"<tr><th>{s['agent.version']}</th><td>giamsat {_e(h.version)}</td></tr>"
        f"<tr><th>{s['agent.config']}</th><td><code>{_e(h.config)}</code></td></tr>"
        f"<tr><th>{s['agent.reload']}</th><td>{reload}</td></tr>"
        f"<tr><th>{s['agent.round']}</th><td>"
        f"{s['agent.round.done'] if h.first_round_done else s['agent.round.waiting']}</td></tr>"
        f"<tr><th>{s['agent.latest']}</th><td>{latest}</td></tr></table>"
        f"<p>{s['collectors.note']}</p><table><tr><th>{s['col.collector']}</th><th>{s['col.jobs']}</th>"
        f"<th>{s['col.ok']}</th><th>{s['col.failing']}</th><th>{s['col.pending']}</th>"
        f"<th>{s['col.last']}</th><th>{s['col.errors']}</th></tr>{''.join(rows)}</table>"
        f'<p class="foot">{s["agent.rendered"].format(absolute(now, zone=True), REFRESH_SECONDS)}</p>'
        "</section>\n"
    )


# --- pieces ----------------------------------------------------------------------------------------


def _subtree(out: list[Part], node: Node, s: dict[str, str], top: bool = False) -> None:
    """A site with children: a <details>, open when something below it is down or unreachable."""
    add = out.append
    sid = node.row.id
    _details(out, sid, top or node.has_problem)
    _site_line(out, node, s)
    add(f' <span class="cnt">{_level_counts(node, s)}</span>')
    if not (top or node.has_problem):
        add(_pin(sid, s))
    add("</summary>")
    leaves = [c for c in node.children if not c.children]
    branches = [c for c in node.children if c.children]
    # Problem branches, then this site's own leaves (its communes), then the healthy branches.
    for b in branches:
        if b.has_problem:
            _subtree(out, b, s)
    if leaves:
        if top and branches:
            # communes hung directly under the province, as one group beside the district nodes
            problem = min(c.worst for c in leaves) <= 1
            key = f"{sid}/direct"  # a "/" is in no site id
            _details(out, key, problem)
            add(
                f"<b>{s['direct']}</b> "
                f'<span class="cnt">{_counts_text(_count(leaves), s)}</span>{"" if problem else _pin(key, s)}</summary>'
            )
        add(_table_head(s))
        for c in leaves:
            _site_row(out, c, s)
        add("</table>")
        if top and branches:
            add("</details>")
    for b in branches:
        if not b.has_problem:
            _subtree(out, b, s)
    add("</details>")


def _details(out: list[Part], key: str, always_open: bool) -> None:
    out.append(f'<details id="s-{_e(key)}"')
    out.append(" open" if always_open else OpenIf(key))
    out.append("><summary>")


def _pin(key: str, s: dict[str, str]) -> str:
    """A link that opens this subtree and keeps it open across refreshes."""
    q = urllib.parse.quote(key, safe="")
    return f' <a class="pin" href="/?open={q}&amp;lang={s["lang"]}#s-{_e(key)}">{s["pin"]}</a>'


def _table_head(s: dict[str, str]) -> str:
    return (
        f"<table><tr><th>{s['col.state']}</th><th>{s['col.site']}</th><th>{s['col.id']}</th>"
        f"<th>{s['col.since']}</th><th>{s['col.why']}</th></tr>"
    )


def _site_line(out: list[Part], node: Node, s: dict[str, str]) -> None:
    st = node.detail.state
    out.append(
        f'<span class="b {st}">{s["state." + st]}</span> <b>{_e(node.row.name)}</b> <code>{_e(node.row.id)}</code> '
        f"{s['level.' + LEVELS[min(node.row.level, 2)]]} · "
    )
    _since(out, node.detail.since, s)
    why = _failing(node, s)
    if why:
        out.append(f" · {why}")


def _site_row(out: list[Part], node: Node, s: dict[str, str]) -> None:
    st = node.detail.state
    out.append(
        f'<tr><td><span class="b {st}">{s["state." + st]}</span></td><td>{_e(node.row.name)}</td>'
        f"<td><code>{_e(node.row.id)}</code></td><td>"
    )
    _since(out, node.detail.since, s)
    out.append(f"</td><td>{_failing(node, s)}</td></tr>")


def _since(out: list[Part], since: float | None, s: dict[str, str]) -> None:
    if not since:
        out.append(s["since.unknown"])
        return
    out.append(f'<time datetime="{_iso(since)}">{absolute(since)}</time> <span class="rel">(')
    out.append(float(since))
    out.append(")</span>")


def _failing(node: Node, s: dict[str, str]) -> str:
    """Why: the failing uplinks and their reasons, or the state's own reason."""
    d = node.detail
    links = ", ".join(f"<code>{_e(job)}</code>: {_e(_reason(reason, s))}" for job, reason in d.failing)
    if d.state == "up":
        return f'<span class="deg">{s["degraded"]}: {links}</span>' if links else ""
    if d.state == "down":
        return f'<span class="why">{links or _e(_reason(d.reason, s))}</span>'
    own = _e(_reason(d.reason, s)) if d.reason else ""
    return f"{own}{' · ' if own and links else ''}{links}"


def _reason(token: str, s: dict[str, str]) -> str:
    return s.get("reason." + token, token)


def _count(nodes: Iterable[Node]) -> dict[str, int]:
    out = dict.fromkeys(STATES, 0)
    for n in nodes:
        out[n.detail.state] = out.get(n.detail.state, 0) + 1
    return out


def _counts_text(counts: dict[str, int], s: dict[str, str]) -> str:
    return " ".join(
        f'<span class="t-{st}"><span class="n">{counts[st]}</span> {s["state." + st]}</span>'
        for st in STATES
        if counts.get(st)
    )


def _level_counts(node: Node, s: dict[str, str]) -> str:
    return " · ".join(
        f"{s['levels.' + LEVELS[min(level, 2)]]}: {_counts_text(node.counts[level], s)}"
        for level in sorted(node.counts)
        if level > 0
    )


def _merge(parts: list[Part]) -> list[Part]:
    """Adjacent strings joined: fewer parts to walk per request."""
    out: list[Part] = []
    buf: list[str] = []
    for p in parts:
        if type(p) is str:
            buf.append(p)
            continue
        if buf:
            out.append("".join(buf))
            buf = []
        out.append(p)
    if buf:
        out.append("".join(buf))
    return out


# --- times -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def absolute(ts: float, zone: bool = False) -> str:
    """Local time as the agent's host keeps it; many sites share a since-time, hence the cache."""
    t = time.localtime(ts)
    return time.strftime("%Y-%m-%d %H:%M:%S %z" if zone else "%Y-%m-%d %H:%M:%S", t)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def duration(seconds: float, lang: str) -> str:
    """A short human duration: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    s = STRINGS[lang]
    sec = max(0, int(seconds))
    if sec < 60:
        return s["unit.s"].format(sec)
    if sec < 3600:
        return s["unit.min"].format(sec // 60)
    if sec < 2 * 86400:
        return s["unit.h"].format(sec // 3600, sec % 3600 // 60)
    return s["unit.d"].format(sec // 86400, sec % 86400 // 3600)
