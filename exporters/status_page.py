"""The landing page at ``/``: the agent's configuration, its collection jobs and the site inventory.

Plain HTML with no script, built from what the agent reports (``AgentView.landing``); every value is
escaped.
"""

from __future__ import annotations

import html
from typing import Any

from agent.kernel.version import __version__


def render_landing(info: dict[str, Any]) -> bytes:
    """The page for ``info`` (``jobs``, ``sites``, ``config``, ``reload_ok``), as UTF-8."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(j['collector'])}</td><td>{e(j['target'])}</td><td>{e(j['site'])}</td>"
        f"<td>{'ok' if j['success'] else e('failing: ' + j['reason']) if j['success'] is False else '-'}</td>"
        f"<td>{e(j['age'])}</td></tr>"
        for j in info["jobs"]
    )
    sites = "".join(
        f"<tr><td>{e(s['id'])}</td><td>{e(s['name'])}</td><td>{e(s['level'])}</td><td>{e(s['parent'])}</td></tr>"
        for s in info["sites"]
    )
    page = f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>giamsat</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}</style></head>
<body><h1>giamsat {e(__version__)}</h1>
<p><a href="/metrics">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a></p>
<p>Configuration: {e(info["config"])} · last reload {"successful" if info["reload_ok"] else "FAILED"}</p>
<h2>Collection jobs</h2><table><tr><th>Collector</th><th>Target</th><th>Site</th><th>State</th><th>Last run</th></tr>
{rows}</table>
<h2>Sites</h2><table><tr><th>Id</th><th>Name</th><th>Level</th><th>Parent</th></tr>{sites}</table>
</body></html>
"""
    return page.encode("utf-8")
