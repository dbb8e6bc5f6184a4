#!/usr/bin/env python3
"""Generates the giamsat Grafana dashboards as JSON (dashboards as code, plain dicts).

Run ``python3 deploy/grafana/generate.py`` after changing a dashboard; the JSON files in
``deploy/grafana/dashboards/`` are committed and a test fails when they are out of date. Plain dicts
rather than grafana-foundation-sdk: three dashboards do not justify a dependency whose Python package
pins a Grafana version. Site names are written as given (UTF-8, ``ensure_ascii=False``).

Queries read the recorded series of ``deploy/prometheus/rules/giamsat.rules.yml`` where one exists,
so a dashboard and an alert never disagree about what "down" means.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39

# site:giamsat_site_state:code -> text and colour
STATE_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "không rõ / unknown", "color": "text", "index": 0},
            "1": {"text": "hoạt động / up", "color": "green", "index": 1},
            "2": {"text": "mất kết nối / down", "color": "red", "index": 2},
            "3": {"text": "không tới được / unreachable", "color": "orange", "index": 3},
            "4": {"text": "chưa kết nối / gap", "color": "purple", "index": 4},
        },
    }
]


# the ``state`` label of the current-outages table -> text and colour
OUTAGE_STATE_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "down": {"text": "mất kết nối / down", "color": "red", "index": 0},
            "unreachable": {"text": "không tới được / unreachable", "color": "orange", "index": 1},
        },
    }
]


class Board:
    """A dashboard under construction: panels are laid out left to right, wrapping at 24 columns."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str]) -> None:
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.panels: list[dict[str, Any]] = []
        self.variables: list[dict[str, Any]] = [
            {
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            }
        ]
        self._x = self._y = self._row_h = 0

    def var(
        self, name: str, label: str, query: str, *, multi: bool = False, include_all: bool = False
    ) -> None:
        self.variables.append(
            {
                "name": name,
                "label": label,
                "type": "query",
                "datasource": DS,
                "query": {"query": query, "refId": f"var-{name}"},
                "definition": query,
                "refresh": 2,
                "sort": 1,
                "multi": multi,
                "includeAll": include_all,
                "current": {},
                "hide": 0,
            }
        )

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def _newline(self) -> None:
        if self._x:
            self._y += self._row_h
            self._x = self._row_h = 0

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if self._x + w > 24:
            self._newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self._x, "y": self._y}
        panel.setdefault("datasource", DS)
        self.panels.append(panel)
        self._x += w
        self._row_h = max(self._row_h, h)

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "editable": True,
            "graphTooltip": 1,
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "time": {"from": "now-6h", "to": "now"},
            "timezone": "browser",
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "links": [{"title": "giamsat", "type": "dashboards", "tags": ["giamsat"], "asDropdown": True}],
            "panels": self.panels,
        }


def target(expr: str, legend: str = "", *, instant: bool = False, fmt: str = "time_series") -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "format": fmt}
    if instant:
        t["instant"], t["range"] = True, False
    return t


def stat(title: str, expr: str, *, unit: str = "percentunit", legend: str = "", description: str = "",
         mappings: list[dict[str, Any]] | None = None, thresholds: list[tuple[float | None, str]] | None = None,
         text_mode: str = "auto", color_mode: str = "value", instant: bool = True) -> dict[str, Any]:  # fmt: skip
    steps = [
        {"value": v, "color": c} for v, c in (thresholds or [(None, "red"), (0.8, "orange"), (0.95, "green")])
    ]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "targets": [{**target(expr, legend, instant=instant), "refId": "A"}],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "mappings": mappings or [],
                "thresholds": {"mode": "absolute", "steps": steps},
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": color_mode,
            "graphMode": "none",
            "textMode": text_mode,
            "justifyMode": "auto",
            "orientation": "auto",
        },
    }


def timeseries(title: str, targets: list[tuple[str, str]], *, unit: str = "short", description: str = "",
               max_: float | None = None, stack: bool = False) -> dict[str, Any]:  # fmt: skip
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
        "color": {"mode": "palette-classic"},
    }
    if max_ is not None:
        defaults["max"] = max_
        defaults["min"] = 0
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "targets": [{**target(e, legend), "refId": chr(65 + i)} for i, (e, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def table(title: str, expr: str, *, columns: dict[str, str], value_name: str, unit: str,
          description: str = "", sort_by: str | None = None,
          mappings: list[dict[str, Any]] | None = None,
          label_mappings: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:  # fmt: skip
    """An instant query shown as a table; ``columns`` maps label -> header (the usual extra labels are
    hidden unless named there); ``label_mappings`` gives a label column value mappings (text, colour)."""
    exclude = {"Time": True, "__name__": True, "job": True, "instance": True}
    exclude |= {k: True for k in ("level", "parent", "state") if k not in columns}
    label_overrides = [
        {
            "matcher": {"id": "byName", "options": label},
            "properties": [
                {"id": "mappings", "value": maps},
                {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            ],
        }
        for label, maps in (label_mappings or {}).items()
    ]
    order = {label: i for i, label in enumerate([*columns, "Value"])}
    return {
        "type": "table",
        "title": title,
        "description": description,
        "targets": [{**target(expr, instant=True, fmt="table"), "refId": "A"}],
        "fieldConfig": {
            "defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}}, "mappings": []},
            "overrides": [
                {
                    "matcher": {"id": "byName", "options": "Value"},
                    "properties": [
                        {"id": "unit", "value": unit},
                        {"id": "mappings", "value": mappings or []},
                        {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                    ],
                },
                *label_overrides,
            ],
        },
        "options": {
            "showHeader": True,
            "sortBy": [{"displayName": sort_by or value_name, "desc": True}],
            "footer": {"show": False, "reducer": ["count"], "fields": ""},
        },
        "transformations": [
            {"id": "labelsToFields", "options": {"mode": "columns"}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": exclude,
                    "indexByName": order,
                    "renameByName": {**columns, "Value": value_name},
                },
            },
        ],
    }


# ---------------------------------------------------------------------------------------------------
def province_overview() -> Board:
    b = Board(
        "giamsat-province",
        "giamsat / Tổng quan tỉnh (province overview)",
        "Coverage per district, the state of every commune, current outages and coverage gaps.",
        ["giamsat"],
    )
    b.var("province", "Tỉnh / province", 'label_values(giamsat_site_info{level="province"}, site)')
    b.row("Độ phủ / coverage")
    b.add(
        stat(
            "Xã hoạt động / communes up",
            'province:giamsat_communes_up:ratio{province="$province"}',
            description="Share of all communes of the province whose link works now.",
        ),
        6,
        5,
    )
    b.add(
        stat(
            "Huyện hoạt động / district sites up",
            'province:giamsat_districts_up:ratio{province="$province"}',
            description="Share of district-level sites (aggregation nodes) that are up.",
        ),
        6,
        5,
    )
    # One count per troubled state (site:giamsat_site_state:code), coloured by how bad it is.
    for title, code, colour in (
        ("Mất kết nối / sites down", 2, "red"),
        ("Không tới được / unreachable", 3, "orange"),
        ("Chưa kết nối / coverage gaps", 4, "purple"),
    ):
        b.add(
            stat(
                title,
                f"count(site:giamsat_site_state:code == {code}) or vector(0)",
                unit="none",
                thresholds=[(None, "green"), (1, colour)],
            ),
            4,
            5,
        )
    b.add(
        {
            "type": "bargauge",
            "title": "Độ phủ theo huyện / coverage per district",
            "description": "Share of communes up below each district-level site.",
            "targets": [
                {
                    **target(
                        "ancestor:giamsat_communes_up:ratio"
                        " * on (ancestor) group_left (site_name) label_replace("
                        'site:giamsat_site:info{level="district", parent="$province"}, "ancestor", "$1", "site", "(.+)")',
                        "{{site_name}}",
                        instant=True,
                    ),
                    "refId": "A",
                }
            ],
            "fieldConfig": {
                "defaults": {
                    "unit": "percentunit",
                    "min": 0,
                    "max": 1,
                    "thresholds": {
                        "mode": "absolute",
                        "steps": [
                            {"value": None, "color": "red"},
                            {"value": 0.8, "color": "orange"},
                            {"value": 0.95, "color": "green"},
                        ],
                    },
                    "color": {"mode": "thresholds"},
                },
                "overrides": [],
            },
            "options": {
                "orientation": "horizontal",
                "displayMode": "gradient",
                "showUnfilled": True,
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        },
        12,
        8,
    )
    b.add(
        timeseries(
            "Độ phủ theo thời gian / coverage over time",
            [
                ('province:giamsat_communes_up:ratio{province="$province"}', "toàn tỉnh / province"),
                (
                    "ancestor:giamsat_communes_up:ratio * on (ancestor) group_left (site_name) label_replace("
                    'site:giamsat_site:info{level="district", parent="$province"}, "ancestor", "$1", "site", "(.+)")',
                    "{{site_name}}",
                ),
            ],
            unit="percentunit",
            max_=1,
        ),
        12,
        8,
    )
    b.row("Trạng thái từng xã / every commune")
    b.add(
        {
            **stat(
                "Xã / communes",
                'site:giamsat_site_state:code{level="commune"}',
                unit="none",
                legend="{{site_name}}",
                mappings=STATE_MAPPINGS,
                thresholds=[(None, "text"), (1, "green"), (2, "red"), (3, "orange"), (4, "purple")],
                text_mode="value_and_name",
                color_mode="background",
                description="One tile per commune: green up, red down (its own link), orange unreachable "
                "(an outage upstream), purple never connected, grey unknown.",
            ),
        },
        24,
        10,
    )
    b.row("Sự cố / outages")
    b.add(
        table(
            "Đang mất kết nối / current outages",
            "(time() - max by (site) (giamsat_site_last_up_timestamp_seconds))"
            " * on (site) group_left (site_name, district, state) ("
            'label_replace(clamp_max(site:giamsat_site_state:code == 2, 1), "state", "down", "", "")'
            ' or label_replace(clamp_max(site:giamsat_site_state:code == 3, 1), "state", "unreachable", "", ""))',
            columns={
                "site": "Mã / id",
                "site_name": "Tên / name",
                "district": "Huyện / district",
                "state": "Trạng thái / state",
            },
            value_name="Thời gian / for",
            unit="dtdurations",
            description="Sites that are down (their own link failed: call them) or unreachable (cut off "
            "by an outage upstream: find the down site above them), with the time since their last "
            "working uplink result.",
            label_mappings={"state": OUTAGE_STATE_MAPPINGS},
        ),
        12,
        9,
    )
    b.add(
        table(
            "Chưa từng kết nối / coverage gaps",
            "(max by (site) (giamsat_site_coverage_gap) == 1)"
            " * on (site) group_left (site_name, district, level) site:giamsat_site:info",
            columns={"site": "Mã / id", "site_name": "Tên / name", "district": "Huyện / district"},
            value_name="Gap",
            unit="none",
            description="Sites with uplinks configured that have never answered.",
        ),
        12,
        9,
    )
    b.add(
        table(
            "Sẵn sàng 30 ngày / availability, 30 days (lowest first)",
            "bottomk(20, site:giamsat_site_availability:ratio_30d"
            " * on (site) group_left (site_name, district) site:giamsat_site:info)",
            columns={"site": "Mã / id", "site_name": "Tên / name", "district": "Huyện / district"},
            value_name="30d",
            unit="percentunit",
            description="Share of time up while the site's state was known. Sites that have never been "
            "connected are not listed here (no availability to speak of): see the coverage gaps.",
        ),
        24,
        9,
    )
    return b


def site_detail() -> Board:
    b = Board(
        "giamsat-site",
        "giamsat / Chi tiết điểm (site detail)",
        "One site: state, link round-trip time and loss, interfaces and UPS.",
        ["giamsat"],
    )
    b.var("site", "Điểm / site", "label_values(giamsat_site_info, site)")
    b.row("Trạng thái / state")
    b.add(
        stat(
            "Trạng thái / state",
            'site:giamsat_site_state:code{site="$site"}',
            unit="none",
            legend="{{site_name}}",
            mappings=STATE_MAPPINGS,
            thresholds=[(None, "text"), (1, "green"), (2, "red"), (3, "orange"), (4, "purple")],
            text_mode="value_and_name",
            color_mode="background",
        ),
        8,
        5,
    )
    b.add(
        stat("Sẵn sàng 1 ngày / availability 1d", 'site:giamsat_site_availability:ratio_1d{site="$site"}'),
        4,
        5,
    )
    b.add(
        stat("Sẵn sàng 30 ngày / availability 30d", 'site:giamsat_site_availability:ratio_30d{site="$site"}'),
        4,
        5,
    )
    b.add(
        stat(
            "Lần cuối hoạt động / last up",
            'max(giamsat_site_last_up_timestamp_seconds{site="$site"}) * 1000',
            unit="dateTimeFromNow",
            thresholds=[(None, "blue")],
        ),
        8,
        5,
    )
    b.row("Đường truyền / links")
    b.add(
        timeseries(
            "Thời gian phản hồi / round-trip time",
            [('probe_icmp_duration_seconds{site="$site", phase="rtt"}', "{{target}}")],
            unit="s",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Mất gói / packet loss",
            [('probe_icmp_packet_loss_ratio{site="$site"}', "{{target}}")],
            unit="percentunit",
            max_=1,
        ),
        12,
        8,
    )
    b.add(
        {
            "type": "heatmap",
            "title": "Phân bố RTT / round-trip time heatmap",
            "description": "Every echo reply of the site's ICMP probes, by round-trip time.",
            "targets": [
                {
                    **target(
                        'sum by (le) (increase(probe_icmp_response_duration_seconds_bucket{site="$site"}'
                        "[$__rate_interval]))",
                        "{{le}}",
                        fmt="heatmap",
                    ),
                    "refId": "A",
                }
            ],
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {
                "calculate": False,
                "yAxis": {"unit": "s"},
                "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "tooltip": {"show": True, "yHistogram": True},
            },
        },
        12,
        8,
    )
    b.add(
        timeseries(
            "Kết quả thăm dò / probe success",
            [('probe_success{site="$site"}', "{{target}}")],
            unit="none",
            max_=1,
        ),
        12,
        8,
    )
    b.row("Giao diện mạng / interfaces (SNMP)")
    b.add(
        timeseries(
            "Lưu lượng / traffic",
            [
                ('rate(ifHCInOctets{site="$site"}[$__rate_interval]) * 8', "{{target}} {{ifName}} vào / in"),
                (
                    '-rate(ifHCOutOctets{site="$site"}[$__rate_interval]) * 8',
                    "{{target}} {{ifName}} ra / out",
                ),
            ],
            unit="bps",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Lỗi / errors and discards",
            [
                (
                    'rate(ifInErrors{site="$site"}[$__rate_interval]) + rate(ifOutErrors{site="$site"}[$__rate_interval])',
                    "{{target}} {{ifName}} errors",
                ),
                (
                    'rate(ifInDiscards{site="$site"}[$__rate_interval]) + rate(ifOutDiscards{site="$site"}[$__rate_interval])',
                    "{{target}} {{ifName}} discards",
                ),
            ],
            unit="pps",
        ),
        12,
        8,
    )
    b.row("Nguồn điện / UPS")
    b.add(
        timeseries(
            "Pin còn lại / battery charge",
            [('upsEstimatedChargeRemaining{site="$site"}', "{{target}}")],
            unit="percent",
            max_=100,
        ),
        12,
        7,
    )
    b.add(
        stat(
            "Nguồn ra / output source",
            'upsOutputSource{site="$site"} == 1',
            unit="none",
            legend="{{target}}: {{upsOutputSource}}",
            thresholds=[(None, "blue")],
            text_mode="name",
            color_mode="background",
            instant=False,  # the last value seen in the time range, also while the site is cut off
            description="Where the UPS takes its output power from: normal (mains), battery, bypass...",
        ),
        6,
        7,
    )
    b.add(
        stat(
            "Pin / battery status",
            'upsBatteryStatus{site="$site"} == 1',
            unit="none",
            legend="{{target}}: {{upsBatteryStatus}}",
            thresholds=[(None, "blue")],
            text_mode="name",
            color_mode="background",
            instant=False,  # the last value seen in the time range, also while the site is cut off
        ),
        6,
        7,
    )
    return b


def host_overview() -> Board:
    b = Board(
        "giamsat-host",
        "giamsat / Máy chủ (host overview)",
        "CPU, memory, disks and network of hosts watched by the agent (node_exporter names).",
        ["giamsat"],
    )
    b.var("instance", "Máy / host", "label_values(node_load1, instance)")
    sel = 'instance="$instance"'
    b.add(
        timeseries(
            "CPU",
            [
                (
                    f'1 - avg by (instance) (rate(node_cpu_seconds_total{{{sel}, mode="idle"}}[$__rate_interval]))',
                    "busy",
                )
            ],
            unit="percentunit",
            max_=1,
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Tải / load",
            [
                (f"node_load1{{{sel}}}", "1m"),
                (f"node_load5{{{sel}}}", "5m"),
                (f"node_load15{{{sel}}}", "15m"),
            ],
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Bộ nhớ / memory used",
            [(f"1 - node_memory_MemAvailable_bytes{{{sel}}} / node_memory_MemTotal_bytes{{{sel}}}", "used")],
            unit="percentunit",
            max_=1,
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Ổ đĩa / filesystem used",
            [
                (
                    f'1 - node_filesystem_avail_bytes{{{sel}, fstype!~"tmpfs|ramfs|squashfs|overlay"}}'
                    f' / node_filesystem_size_bytes{{{sel}, fstype!~"tmpfs|ramfs|squashfs|overlay"}}',
                    "{{mountpoint}}",
                )
            ],
            unit="percentunit",
            max_=1,
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Mạng / network",
            [
                (
                    f'rate(node_network_receive_bytes_total{{{sel}, device!="lo"}}[$__rate_interval]) * 8',
                    "{{device}} in",
                ),
                (
                    f'-rate(node_network_transmit_bytes_total{{{sel}, device!="lo"}}[$__rate_interval]) * 8',
                    "{{device}} out",
                ),
            ],
            unit="bps",
        ),
        24,
        8,
    )
    return b


BOARDS = {"province-overview": province_overview, "site-detail": site_detail, "host-overview": host_overview}


def render(board: Board) -> str:
    return json.dumps(board.to_json(), ensure_ascii=False, indent=2, sort_keys=False) + "\n"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, build in BOARDS.items():
        (OUT / f"{name}.json").write_text(render(build()), encoding="utf-8")
        print(f"wrote {OUT / name}.json")
    return 0


def panel_queries(dashboard: dict[str, Any], values: dict[str, str]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target, with dashboard variables and Grafana's interval
    macros replaced, for running them against a real Prometheus in tests."""
    macros = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h", "${datasource}": ""}
    out = []
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            expr = t["expr"]
            for k, v in macros.items():
                expr = expr.replace(k, v)
            for k, v in values.items():
                expr = expr.replace(f"${k}", v)
            out.append((panel["title"], expr))
    return out


if __name__ == "__main__":
    sys.exit(main())
