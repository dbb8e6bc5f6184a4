"""The status page's model and rendering: states, counts per level, problems first, coverage gaps
apart, language negotiation, escaping of every value, the cache, and a province of 2 000 sites."""

from __future__ import annotations

import re
import textwrap
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from agent.config import load_config
from agent.kernel.collector import Collector
from agent.kernel.errors import ConfigError
from agent.kernel.pipeline import Job
from agent.kernel.results import JobHealth
from agent.selfmetrics import ReloadStatus
from agent.statusview import agent_health
from exporters.status import AgentHealth, CollectorHealth, SiteRow, SiteTree, StatusPage, StatusSnapshot
from exporters.status.i18n import EN, STRINGS, VI, negotiate
from exporters.status.model import build
from exporters.status.render import duration
from tests.pagetext import parse, section

NOW = 1_764_660_000.0  # a fixed "now": relative times are exact


@dataclass(frozen=True)
class Detail:
    state: str
    since: float | None = NOW - 120
    reason: str = ""
    failing: tuple[tuple[str, str], ...] = ()


HEALTH = AgentHealth(
    "1.2.3",
    "/etc/giamsat/giamsat.yml",
    True,
    NOW - 3600,
    True,
    (CollectorHealth("icmp", 10, 9, 1, 0, NOW - 2, (("timeout", 1),)),),
)


def province() -> tuple[SiteTree, dict[str, Detail]]:
    """Hà Giang: Vị Xuyên cut (its communes unreachable), Bắc Mê up with one commune down and one gap,
    a commune directly under the province."""
    rows = [
        SiteRow("hg", "Tỉnh Hà Giang", 0, None),
        SiteRow("vx", "Huyện Vị Xuyên", 1, "hg"),
        SiteRow("bm", "Huyện Bắc Mê", 1, "hg"),
        SiteRow("qb", "Huyện Quản Bạ", 1, "hg"),
        SiteRow("vx-daoduc", "Xã Đạo Đức", 2, "vx"),
        SiteRow("vx-phulinh", "Xã Phú Linh", 2, "vx"),
        SiteRow("bm-yenphu", "Xã Yên Phú", 2, "bm"),
        SiteRow("bm-minhngoc", "Xã Minh Ngọc", 2, "bm"),
        SiteRow("bm-lacnong", "Xã Lạc Nông", 2, "bm"),
        SiteRow("qb-tamson", "Xã Tam Sơn", 2, "qb"),
        SiteRow("hg-phuongha", "Phường Hà Giang 1", 2, "hg"),
    ]
    states = {
        "hg": Detail("up", NOW - 86400 * 3),
        "vx": Detail("down", NOW - 125, "timeout", (("icmp/vx-wan", "timeout"),)),
        "bm": Detail("up", NOW - 4000),
        "qb": Detail("up", NOW - 4000),
        "vx-daoduc": Detail("unreachable", NOW - 120, "upstream", (("icmp/vx-daoduc-wan", "timeout"),)),
        "vx-phulinh": Detail("unreachable", NOW - 120, "upstream", (("icmp/vx-phulinh-wan", "timeout"),)),
        "bm-yenphu": Detail("up", NOW - 4000, "", (("tcp/bm-yenphu-backup", "connection_refused"),)),
        "bm-minhngoc": Detail("down", NOW - 600, "unreachable", (("icmp/bm-minhngoc-wan", "unreachable"),)),
        "bm-lacnong": Detail("gap", NOW - 9000, "never_up", (("icmp/bm-lacnong-wan", "timeout"),)),
        "qb-tamson": Detail("up", NOW - 4000),
        "hg-phuongha": Detail("unknown", None, "no_uplinks"),
    }
    return SiteTree(rows), states


def render(lang: str = "vi", tree: SiteTree | None = None, states: dict[str, Detail] | None = None) -> str:
    if tree is None or states is None:
        tree, states = province()
    body, got = StatusPage().render(StatusSnapshot(tree, states, HEALTH), asked=lang, now=NOW)
    assert got == lang
    return body.decode("utf-8")


# --- the model -------------------------------------------------------------------------------------


def test_counts_per_state_at_each_level() -> None:
    model = build(*province())
    assert model.totals[0] == {"down": 0, "unreachable": 0, "gap": 0, "unknown": 0, "up": 1}
    assert model.totals[1] == {"down": 1, "unreachable": 0, "gap": 0, "unknown": 0, "up": 2}
    assert model.totals[2] == {"down": 1, "unreachable": 2, "gap": 1, "unknown": 1, "up": 2}
    (hg,) = model.roots
    assert hg.counts[1] == model.totals[1] and hg.counts[2] == model.totals[2]
    vx, bm = (next(c for c in hg.children if c.row.id == d) for d in ("vx", "bm"))
    assert vx.counts == {2: {"down": 0, "unreachable": 2, "gap": 0, "unknown": 0, "up": 0}}
    assert bm.counts == {2: {"down": 1, "unreachable": 0, "gap": 1, "unknown": 0, "up": 1}}


def test_problems_first_widest_first_and_gaps_apart() -> None:
    model = build(*province())
    # the cut district with what it cuts off, then the commune down on its own
    assert [(p.node.row.id, [b.row.id for b in p.behind]) for p in model.problems] == [
        ("vx", ["vx-daoduc", "vx-phulinh"]),
        ("bm-minhngoc", []),
    ]
    assert [g.row.id for g in model.gaps] == ["bm-lacnong"]
    (hg,) = model.roots
    # districts with an outage first, healthy ones last; within a district the failing commune first
    assert [c.row.id for c in hg.children] == ["vx", "bm", "hg-phuongha", "qb"]
    bm = hg.children[1]
    assert [c.row.id for c in bm.children] == ["bm-minhngoc", "bm-lacnong", "bm-yenphu"]
    assert [c.has_problem for c in hg.children] == [True, True, False, False]


def test_unreachable_without_a_down_parent_is_a_problem_of_its_own() -> None:
    # a district that never connected: its communes are unreachable behind a gap
    tree = SiteTree([SiteRow("p", "P", 0, None), SiteRow("d", "D", 1, "p"), SiteRow("c", "C", 2, "d")])
    states = {"p": Detail("up"), "d": Detail("gap", reason="never_up"), "c": Detail("unreachable")}
    model = build(tree, states)
    assert [(p.node.row.id, p.behind) for p in model.problems] == [("c", [])]
    assert [g.row.id for g in model.gaps] == ["d"]


def test_a_site_without_state_is_unknown_and_a_state_without_site_is_ignored() -> None:
    tree = SiteTree([SiteRow("p", "P", 0, None), SiteRow("c", "C", 2, "p")])
    model = build(tree, {"p": Detail("up"), "gone": Detail("down")})
    assert model.totals[2]["unknown"] == 1 and model.problems == []


def test_a_deep_tree_does_not_recurse() -> None:
    rows = [SiteRow("s0", "S0", 0, None)] + [
        SiteRow(f"s{i}", f"S{i}", 2, f"s{i - 1}") for i in range(1, 5000)
    ]
    model = build(SiteTree(rows), {r.id: Detail("up") for r in rows})
    assert model.roots[0].counts[2]["up"] == 4999


# --- rendering -------------------------------------------------------------------------------------


def test_page_in_vietnamese_shows_states_since_and_failing_uplinks() -> None:
    page = render("vi")
    dom = parse(page)
    assert ("html", {"lang": "vi"}) in dom.tags
    assert ("meta", {"http-equiv": "refresh", "content": "15"}) in dom.tags
    assert not any(tag == "script" for tag, _ in dom.tags)
    problems = parse(section(page, "problems")).text
    assert "Mất kết nối Huyện Vị Xuyên vx" in problems
    assert "(2 phút trước)" in problems and "icmp/vx-wan: timeout" in problems
    assert "Không tới được Xã Đạo Đức" in problems and "lỗi ở cấp trên" in problems
    assert problems.index("Huyện Vị Xuyên") < problems.index("Xã Minh Ngọc")
    gaps = parse(section(page, "gaps")).text
    assert "Xã Lạc Nông" in gaps and "chưa từng thành công" in gaps and "Xã Đạo Đức" not in gaps
    agent = parse(section(page, "agent")).text
    assert "giamsat 1.2.3" in agent and "/etc/giamsat/giamsat.yml" in agent and "timeout ×1" in agent
    assert "Trang tạo lúc" in agent
    summary = parse(section(page, "summary")).text
    assert "Cấp huyện 1 0 0 0 2" in summary and "Cấp xã 1 2 1 1 2" in summary
    assert 'href="/report"' in page


def test_page_in_english() -> None:
    page = render("en")
    assert '<html lang="en">' in page
    text = parse(page).text
    assert "down Huyện Vị Xuyên vx District node" in text and "(2 min ago)" in text
    assert "outage upstream" in text and "Never connected (coverage gaps) (1)" in text
    assert "an uplink is failing: tcp/bm-yenphu-backup: connection_refused" in text


def test_healthy_subtrees_are_collapsed_and_outages_open() -> None:
    page = render()
    opened = {
        m.group(2): m.group(1) == " open"
        for m in re.finditer(
            r'<details id="s-[^"]*"( open)?><summary><span class="b \w+">[^<]*</span> <b>[^<]*</b> <code>([^<]*)</code>',
            page,
        )
    }
    assert opened == {"hg": True, "vx": True, "bm": True, "qb": False}


def test_every_value_is_escaped() -> None:
    evil = '<script>alert("x")</script>&"\'><img src=x onerror=alert(1)>'
    tree = SiteTree(
        [SiteRow("p", "Tỉnh " + evil, 0, None), SiteRow("c", evil, 2, "p"), SiteRow("g", evil, 2, "p")]
    )
    states = {
        "p": Detail("up"),
        "c": Detail("down", reason=evil, failing=((evil, evil),)),
        "g": Detail("gap", reason=evil, failing=((evil, evil),)),
    }
    health = AgentHealth(
        evil, evil, False, NOW, False, (CollectorHealth(evil, 1, 0, 1, 0, 0.0, ((evil, 1),)),)
    )
    for lang in ("vi", "en"):
        body, _ = StatusPage().render(StatusSnapshot(tree, states, health), asked=lang, now=NOW)
        page = body.decode()
        dom = parse(page)
        assert not any(tag in ("script", "img") for tag, _ in dom.tags)
        assert "<script>" not in page and "<img" not in page and 'alert("x")' not in page
        assert dom.text.count(evil) >= 8  # names, reasons, uplinks, version, config, collector: shown as text


def test_language_negotiation() -> None:
    assert negotiate(None) == "vi"
    assert negotiate("") == "vi"
    assert negotiate("en-US,en;q=0.9") == "en"
    assert negotiate("en-US;q=0.8,en;q=0.9,vi;q=0.95") == "vi"
    assert negotiate("fr-FR, en;q=0.5") == "en"
    assert negotiate("fr-FR, de;q=0.5") == "vi"
    assert negotiate("vi;q=0.2, EN;q=0.3") == "en"
    assert negotiate("en;q=0") == "vi"  # q=0: not acceptable
    assert negotiate("en;q=abc, vi;q=0.1") == "vi"
    assert negotiate("en;q=2") == "vi"  # out of range: ignored
    assert negotiate("*;q=0.9, en;q=0.8") == "vi"
    assert negotiate("en, vi") == "en"  # equal q: the order given
    assert negotiate("en", override="vi") == "vi"  # the configuration wins over the browser
    assert negotiate("vi", override="en") == "en"
    assert negotiate("en", override="auto") == "en"
    assert negotiate("en", override="vi", asked="en") == "en"  # an explicit ?lang= wins
    assert negotiate("en", asked="xx") == "en"  # an unsupported ?lang= is ignored
    assert negotiate(";;,,;q=,=;," * 2000) == "vi"


def test_string_tables() -> None:
    assert set(VI) == set(EN) and STRINGS == {"vi": VI, "en": EN}
    # Vietnamese with its diacritics (composed, as browsers and fonts expect)
    assert VI["state.down"] == "Mất kết nối" and VI["state.unreachable"] == "Không tới được"
    assert all(unicodedata.is_normalized("NFC", v) for v in VI.values())
    for key in VI:  # same placeholders in both
        assert VI[key].count("{}") == EN[key].count("{}"), key


def test_durations() -> None:
    assert [duration(x, "en") for x in (-5, 0, 59, 60, 3599, 3600, 7322, 86400 * 2 + 3600 * 5)] == [
        "0 s",
        "0 s",
        "59 s",
        "1 min",
        "59 min",
        "1 h 0 min",
        "2 h 2 min",
        "2 d 5 h",
    ]
    assert duration(7322, "vi") == "2 giờ 2 phút"


def test_rebuilt_only_when_a_state_changes() -> None:
    tree, states = province()
    page = StatusPage()
    snap = StatusSnapshot(tree, states, HEALTH)
    first, _ = page.render(snap, asked="vi", now=NOW)
    later, _ = page.render(StatusSnapshot(tree, dict(states), HEALTH), asked="vi", now=NOW + 60)
    assert page.builds == 1
    assert "(2 phút trước)" in first.decode() and "(3 phút trước)" in later.decode()  # times still move
    page.render(snap, asked="en", now=NOW)
    assert page.builds == 1  # one model, a template per language
    changed = dict(states, vx=Detail("up", NOW))
    body, _ = page.render(StatusSnapshot(tree, changed, HEALTH), asked="vi", now=NOW)
    assert page.builds == 2 and "Huyện Vị Xuyên" not in section(body.decode(), "problems")
    # a new inventory (a reload) with the same states rebuilds too
    page.render(StatusSnapshot(SiteTree(list(tree.rows.values())), changed, HEALTH), asked="vi", now=NOW)
    assert page.builds == 3


def big_province(n_districts: int = 40, per_district: int = 49) -> tuple[SiteTree, dict[str, Detail]]:
    """1 province, 40 district nodes, 1 959 communes: 2 000 sites; one district cut, a few gaps."""
    rows = [SiteRow("p", "Tỉnh Lớn", 0, None)]
    states: dict[str, Detail] = {"p": Detail("up", NOW - 86400)}
    for d in range(n_districts):
        did = f"d{d:02d}"
        rows.append(SiteRow(did, f"Huyện Số {d}", 1, "p"))
        states[did] = (
            Detail("down", NOW - 60, "timeout", ((f"icmp/{did}-wan", "timeout"),))
            if d == 7
            else Detail("up", NOW - 86400)
        )
        for c in range(per_district - (1 if d == n_districts - 1 else 0)):
            cid = f"{did}-c{c:02d}"
            rows.append(SiteRow(cid, f"Xã Thứ {c} Huyện {d}", 2, did))
            if d == 7:
                states[cid] = Detail("unreachable", NOW - 58, "upstream", ((f"icmp/{cid}-wan", "timeout"),))
            elif c == 0:
                states[cid] = Detail("gap", NOW - 86400, "never_up", ((f"icmp/{cid}-wan", "timeout"),))
            else:
                states[cid] = Detail("up", NOW - 86400 + c)
    assert len(rows) == 2000
    return SiteTree(rows), states


def test_two_thousand_sites() -> None:
    tree, states = big_province()
    page = StatusPage()
    body, _ = page.render(StatusSnapshot(tree, states, HEALTH), asked="vi", now=NOW)
    text = body.decode()
    model = build(tree, states)
    assert sum(sum(c.values()) for c in model.totals.values()) == 2000
    assert model.totals[2] == {"down": 0, "unreachable": 49, "gap": 39, "unknown": 0, "up": 1959 - 49 - 39}
    assert all(f"<code>{sid}</code>" in text for sid in tree.rows)
    assert [p.node.row.id for p in model.problems] == ["d07"] and len(model.problems[0].behind) == 49
    assert text.index("Huyện Số 7<") < text.index("Huyện Số 0<")  # the cut district first in the tree
    assert len(body) < 2_000 * 600  # about 0.4 KiB a site; bench/status_page.py prints the figures


def test_status_page_language_in_the_configuration(tmp_path: Path) -> None:
    def load(value: str) -> str:
        p = tmp_path / "giamsat.yml"
        p.write_text(textwrap.dedent(f"agent: {{status_page_language: {value}}}\n"), encoding="utf-8")
        return load_config(p).config.agent.status_page_language

    assert load("en") == "en" and load("auto") == "auto"
    with pytest.raises(ConfigError) as exc:
        load("fr")
    (problem,) = exc.value.problems
    assert "giamsat.yml" in str(problem) and "status_page_language" in str(problem) and ":1" in str(problem)


def test_agent_health_per_collector_kind() -> None:
    no_collector = cast(Collector, None)  # agent_health reads a job's id and kind, never its collector
    jobs = [
        Job(f"{kind}/{i}", kind, no_collector, None, None, 30.0, 10.0)
        for kind, n in (("icmp", 4), ("host", 1))
        for i in range(n)
    ]
    health = {
        "icmp/0": JobHealth("icmp", "0", None, last_success=True, last_success_timestamp=NOW - 5),
        "icmp/1": JobHealth(
            "icmp", "1", None, last_success=False, last_reason="timeout", last_success_timestamp=NOW - 90
        ),
        "icmp/2": JobHealth("icmp", "2", None, last_success=False, last_reason="timeout"),
        "host/0": JobHealth("host", None, None, last_success=True, last_success_timestamp=NOW - 1),
    }
    reload = ReloadStatus(successful=False, last_success_timestamp=NOW - 600)
    h = agent_health(jobs, health, reload, "/etc/giamsat/giamsat.yml", True)
    assert h.collectors == (
        CollectorHealth("host", 1, 1, 0, 0, NOW - 1, ()),
        CollectorHealth("icmp", 4, 1, 2, 1, NOW - 5, (("timeout", 2),)),
    )
    assert not h.reload_ok and h.reload_success_timestamp == NOW - 600
    body, _ = StatusPage().render(StatusSnapshot(SiteTree([]), {}, h), asked="en", now=NOW)
    text = parse(section(body.decode(), "agent")).text
    assert "FAILED (the old configuration keeps running)" in text
    assert "icmp 4 1 2 1" in text and "timeout ×2" in text and "(1 s ago)" in text


def test_a_pinned_subtree_stays_open_across_refreshes() -> None:
    tree, states = province()
    page = StatusPage()
    snap = StatusSnapshot(tree, states, HEALTH)
    body = page.render(snap, asked="vi", now=NOW)[0].decode()
    # a collapsed subtree links to the page with it pinned open (the refresh reloads that address)
    assert '<details id="s-qb"><summary>' in body
    assert '<a class="pin" href="/?open=qb&amp;lang=vi#s-qb">[giữ mở]</a>' in body
    pinned = page.render(snap, asked="vi", now=NOW, open_site="qb")[0].decode()
    assert '<details id="s-qb" open><summary>' in pinned and page.builds == 1
    # a commune pins its district (and the province) open; a hostile value opens nothing and is not echoed
    pinned = page.render(snap, asked="vi", now=NOW, open_site="qb-tamson")[0].decode()
    assert '<details id="s-qb" open>' in pinned
    hostile = page.render(snap, asked="vi", now=NOW, open_site='"><script>x</script>')[0].decode()
    assert hostile == body and "<script>" not in hostile
    direct = page.render(snap, asked="en", now=NOW, open_site="hg/direct")[0].decode()
    assert '<details id="s-hg/direct" open>' in direct
