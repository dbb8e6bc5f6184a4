"""A ledger written through the recorder with known outages (one across an agent crash and restart, one
cut upstream, one after a UPS went on battery, overlapping ones), and every figure of its report checked
exactly: seconds by state, availability to the second, outages by cause, MTTR, coverage, days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily

from agent.inventory import Inventory, Level, Site
from agent.kernel.results import JobResult, LinkStatus
from agent.ledger.recorder import LedgerRecorder, replay
from agent.report.data import make_period
from agent.report.figures import compute
from agent.report.from_ledger import from_book, load_state_dir

T = dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()
DAY = 86400.0

INVENTORY = Inventory(
    [
        Site("p", "Tỉnh Hà Giang", Level.province, None, ("p-wan",)),
        Site("d1", "Huyện Vị Xuyên", Level.district, "p", ("d1-wan",)),
        Site("d2", "Huyện Bắc Mê", Level.district, "p", ("d2-wan",)),
        Site("c1", "Xã Đạo Đức", Level.commune, "d1", ("c1-wan",)),
        Site("c2", "Xã Phú Linh", Level.commune, "d1", ("c2-wan",)),
        Site("c3", "Xã Yên Phú", Level.commune, "d2", ("c3-wan",)),
        Site("c5", "Xã Minh Ngọc", Level.commune, "d2", ("c5-wan",)),
        Site("c4", "Xã Lạc Nông", Level.commune, "p", ("c4-wan",)),
    ]
)
ALL_UP = {s.id: "up" for s in INVENTORY} | {"c4": "gap"}


def states(**changed: str) -> dict[str, str]:
    return ALL_UP | changed


def ups_result(site: str, source: str, ts: float) -> JobResult:
    fam = GaugeMetricFamily("upsOutputSource", "", labels=["upsOutputSource"])
    for s in ("normal", "battery"):
        fam.add_metric([s], 1.0 if s == source else 0.0)
    # power_failing as the SNMP collector reads this family (tests/unit/test_snmp.py checks that reading)
    return JobResult(
        "snmp/ups", "snmp", f"{site}-ups", site, (fam,), ts, 0.1, True, power_failing=source == "battery"
    )


def link_result(target: str, site: str, ts: float, reason: str) -> JobResult:
    return JobResult(
        f"icmp/{target}", "icmp", target, site, (), ts, 0.1, True, link=LinkStatus(False, reason)
    )


def build(state_dir: Path) -> None:
    rec = LedgerRecorder(state_dir, INVENTORY, now=T - 3600)
    rec.observe(states(), T - 3600)
    # Vị Xuyên's link is cut: the district down (own link), its communes unreachable (upstream).
    rec.on_result(link_result("d1-wan", "d1", T + 9990, "timeout"))
    rec.observe(states(d1="down", c1="unreachable", c2="unreachable"), T + 10000)
    rec.observe(states(), T + 13600)
    # Yên Phú's UPS goes on battery, five minutes later its link goes: power.
    rec.on_result(ups_result("c3", "battery", T + 20000))
    rec.observe(states(c3="down"), T + 20300)
    rec.on_result(ups_result("c3", "normal", T + 22000))
    rec.observe(states(), T + 22100)
    # Overlapping: Minh Ngọc down on its own, then its district too, then the district back, then it.
    rec.observe(states(c5="down"), T + 30000)
    rec.observe(states(d2="down", c3="unreachable", c5="unreachable"), T + 31000)
    rec.observe(states(c5="down"), T + 32000)
    rec.observe(states(), T + 33000)
    # Phú Linh goes down; the agent's last heartbeat is at +50600, then it crashes (no stop record).
    rec.observe(states(c2="down"), T + 50000)
    assert rec.observe(states(c2="down"), T + 50600) == 0  # a heartbeat
    assert rec.journal is not None
    rec.journal.close()
    # Restarted at +52000: Phú Linh is still down, back at +55000; the agent stops cleanly two days in.
    rec = LedgerRecorder(state_dir, INVENTORY, now=T + 52000)
    rec.observe(states(c2="down"), T + 52000)
    rec.observe(states(), T + 55000)
    rec.observe(states(), T + 2 * DAY - 100)
    rec.close(T + 2 * DAY)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    build(tmp_path)
    return tmp_path


KNOWN_S = 2 * DAY - 1400  # the agent was down from the heartbeat at +50600 to the restart at +52000


def test_every_figure_of_a_month(ledger: Path) -> None:
    book, stats, _ = load_state_dir(ledger)
    assert stats.torn == 0
    period = make_period("2026-11", None, None, "UTC", now=T + 40 * DAY)
    assert period.seconds == 30 * DAY and len(period.days) == 30
    fig = compute(from_book(book, period, book.last_ts, "test"))
    secs = {sid: f.totals.seconds for sid, f in fig.sites.items()}
    assert secs["p"] == {"up": KNOWN_S, "down": 0, "unreachable": 0, "gap": 0}
    assert secs["d1"] == {"up": KNOWN_S - 3600, "down": 3600, "unreachable": 0, "gap": 0}
    assert secs["c1"] == {"up": KNOWN_S - 3600, "down": 0, "unreachable": 3600, "gap": 0}
    # upstream cut 3600 s, then its own outage: 600 s before the crash + 3000 s after the restart
    assert secs["c2"] == {"up": KNOWN_S - 7200, "down": 3600, "unreachable": 3600, "gap": 0}
    assert secs["c3"] == {"up": KNOWN_S - 2800, "down": 1800, "unreachable": 1000, "gap": 0}
    assert secs["c5"] == {"up": KNOWN_S - 3000, "down": 2000, "unreachable": 1000, "gap": 0}
    assert secs["d2"] == {"up": KNOWN_S - 1000, "down": 1000, "unreachable": 0, "gap": 0}
    assert secs["c4"] == {"up": 0, "down": 0, "unreachable": 0, "gap": KNOWN_S}
    for f in fig.sites.values():
        assert f.totals.unknown == 30 * DAY - KNOWN_S  # the crash and everything after the stop
    assert fig.sites["c2"].totals.availability == (KNOWN_S - 7200) / KNOWN_S
    assert fig.sites["c4"].totals.availability is None  # never connected: coverage, not availability

    by_cause = {sid: {c: n for c, n in f.totals.outages.items() if n} for sid, f in fig.sites.items()}
    assert by_cause == {
        "p": {},
        "d1": {"own_link": 1},
        "d2": {"own_link": 1},
        "c1": {"upstream": 1},
        "c2": {"upstream": 1, "own_link": 1},  # the one across the restart is one outage
        "c3": {"power": 1, "upstream": 1},
        "c5": {"own_link": 1},  # overlapped by its district's outage: still one
        "c4": {},
    }
    prov = fig.province.totals
    assert prov.outages == {"own_link": 4, "upstream": 3, "power": 1, "unknown": 0}
    assert prov.mttr("own_link") == (3600 + 1000 + 3000 + 5000) / 4
    assert prov.mttr("upstream") == pytest.approx((3600 + 3600 + 1000) / 3, abs=1e-9)
    assert prov.mttr("power") == 1800
    assert prov.mttr("unknown") is None
    assert prov.mttr() == (12600 + 8200 + 1800) / 8
    assert prov.downtime == 3600 + 7200 + 3600 + 2800 + 3000 + 1000
    assert prov.availability == (7 * KNOWN_S - 3600 * 4 - 2800 - 3000 - 1000) / (7 * KNOWN_S)

    d1 = next(g for g in fig.groups if g.id == "d1")
    assert d1.sites == ["d1", "c1", "c2"]
    assert d1.totals.availability == (3 * KNOWN_S - 3600 - 3600 - 7200) / (3 * KNOWN_S)
    assert [g.id for g in fig.groups] == ["d2", "d1", ""]  # by name (Bắc Mê, Vị Xuyên), then the rest
    # coverage at the end of the month: the agent stopped on the 3rd, so no commune is known up "now"
    assert (fig.province.communes, fig.province.communes_ever, fig.province.communes_now) == (5, 4, 0)
    assert fig.never_connected == ["c4"]
    assert fig.worst[:2] == ["c2", "c1"]  # c1 and d1 tie on availability and downtime: by id

    # the outage across the restart: one row, its down seconds known, the agent's downtime not
    c2 = [o for o in fig.data.outages if o.site == "c2" and o.cause == "own_link"]
    assert len(c2) == 1
    assert (c2[0].start, c2[0].end, c2[0].down, c2[0].unreachable) == (T + 50000, T + 55000, 3600, 0)
    assert c2[0].links == {"c2-wan": "failed"}
    d1_row = next(o for o in fig.data.outages if o.site == "d1")
    assert d1_row.links == {"d1-wan": "timeout"}
    assert [(o.site, o.cause) for o in fig.long_outages] == [
        ("c1", "upstream"),  # by start, then site
        ("c2", "upstream"),
        ("d1", "own_link"),
        ("c2", "own_link"),
    ]

    # days: the first two are known (day 1 less the crash), the rest unknown
    c2_days = fig.sites["c2"].days
    assert c2_days[0] == (DAY - 1400 - 7200) / (DAY - 1400)
    assert c2_days[1] == 1.0
    assert c2_days[2:] == [None] * 28


def test_a_day_with_known_end_state(ledger: Path) -> None:
    book, _, _ = load_state_dir(ledger)
    period = make_period(None, "2026-11-01", "2026-11-01", "UTC", now=T + 40 * DAY)
    assert period.seconds == DAY
    fig = compute(from_book(book, period, book.last_ts, "test"))
    assert (fig.province.communes, fig.province.communes_ever, fig.province.communes_now) == (5, 4, 4)
    assert fig.sites["c4"].state_end == "gap"
    d2 = next(g for g in fig.groups if g.id == "d2")
    assert (d2.communes, d2.communes_ever, d2.communes_now) == (2, 2, 2)


def test_counters_survive_restarts(ledger: Path) -> None:
    """The exported counters after a restart equal the book's totals, and a window's increase equals
    the report's figures for that window (what the Prometheus source relies on)."""
    rec = LedgerRecorder(ledger, INVENTORY, now=T + 3 * DAY)
    fams = {f.name: f for f in rec.collect(now=T + 3 * DAY)}
    down = {s.labels["site"]: s.value for s in fams["giamsat_site_down_seconds"].samples}
    assert down["c2"] == 3600 and down["d1"] == 3600
    up = {s.labels["site"]: s.value for s in fams["giamsat_site_up_seconds"].samples}
    assert up["p"] == KNOWN_S + 3600  # includes the hour before the month began
    outages = {
        (s.labels["site"], s.labels["cause"]): s.value
        for s in fams["giamsat_site_outages"].samples
        if s.name == "giamsat_site_outages_total"
    }
    assert outages[("c3", "power")] == 1 and outages[("c2", "own_link")] == 1
    rec.close(T + 3 * DAY)
    book = replay(ledger / "ledger")
    assert book.sites["p"].totals["up"] == KNOWN_S + 3600


def test_live_view_gives_the_figures_of_the_disk(ledger: Path) -> None:
    """The agent's /report reads a copy of its live book: the same figures as the journal on disk,
    and the copy does not move while the book goes on."""
    from agent.report.live import render_current_month

    rec = LedgerRecorder(ledger, INVENTORY, now=T + 3 * DAY)
    rec.observe(states(c5="down"), T + 3 * DAY + 10)
    view = rec.view()
    rec.observe(states(), T + 3 * DAY + 70)  # after the copy: not in it
    period = make_period(None, "2026-11-01", "2026-11-04", "UTC", now=T + 40 * DAY)
    live = compute(from_book(view, period, T + 3 * DAY + 40, "live"))
    assert (
        live.sites["c5"].totals.seconds["down"] == 3000 - 1000 + 30
    )  # the old outage's, and 30 s of this one
    assert live.sites["c5"].state_end == "unknown"  # the period ends after the last known moment
    rec.close(T + 3 * DAY + 100)
    disk, _, _ = load_state_dir(ledger)
    again = compute(from_book(disk, period, disk.last_ts, "disk"))
    assert again.sites["c5"].totals.seconds["down"] == 2000 + 60
    # c5 was down in the first states after the agent started: its start was not seen, so "unknown"
    assert again.province.totals.outages == {"own_link": 4, "upstream": 3, "power": 1, "unknown": 1}
    status, page = render_current_month(rec, "vi", now=T + 3 * DAY + 100)
    assert status == 200 and "Xã Minh Ngọc" in page and "Tỉnh Hà Giang" in page
    status, page = render_current_month(rec, "en", now=T + 3 * DAY + 100)
    assert status == 200 and "Network availability and coverage report" in page
