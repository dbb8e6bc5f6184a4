"""SiteTracker: states from synthetic uplink results (real prometheus_client families) and the tree."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agent.inventory import Inventory, Level, Site
from agent.kernel.collector import read_link_status
from agent.kernel.results import JobResult, LinkStatus
from agent.sites import STATES, SiteTracker, uplink_is_up
from collectors import COLLECTORS


def _result(
    kind: str, target: str, families: tuple[Metric, ...], ts: float, success: bool = True, reason: str = ""
) -> JobResult:
    """A stored result as the pipeline makes it: the link read by the kind's own rule."""
    cls = COLLECTORS[kind]
    assert cls.link_metric is not None
    link = read_link_status(families, cls.link_metric, cls.link_reason_metric) if success else None
    if not success:
        link = LinkStatus(False, reason)
    return JobResult(f"{kind}/{target}", kind, target, None, families, ts, 0.01, success, reason, link=link)


def _probe(target: str, ok: bool, ts: float, kind: str = "icmp") -> JobResult:
    fam = GaugeMetricFamily("probe_success", "Displays whether or not the probe was a success")
    fam.add_metric([], 1.0 if ok else 0.0)
    dur = GaugeMetricFamily("probe_duration_seconds", "How long the probe took")
    dur.add_metric([], 0.01)
    return _result(kind, target, (fam, dur), ts)


def _snmp(target: str, ok: bool, ts: float) -> JobResult:
    fam = GaugeMetricFamily("snmp_up", "Whether the device answered", labels=["reason"])
    fam.add_metric(["" if ok else "timeout"], 1.0 if ok else 0.0)
    return _result("snmp", target, (fam,), ts)


# province P; districts D1, D2; communes C1, C2 under D1, C3 under D2, C4 under P (post-2025 layout),
# C5 under D2 never connected, C6 with no uplinks.
def _inventory() -> Inventory:
    return Inventory(
        [
            Site("P", "Tỉnh Hà Giang", Level.province, None, ()),
            Site("D1", "Huyện Vị Xuyên", Level.district, "P", ("d1-wan",)),
            Site("D2", "Huyện Bắc Mê", Level.district, "P", ("d2-wan", "d2-backup")),
            Site("C1", "Xã Đạo Đức", Level.commune, "D1", ("c1-wan",)),
            Site("C2", "Xã Phú Linh", Level.commune, "D1", ("c2-wan",)),
            Site("C3", "Xã Yên Phú", Level.commune, "D2", ("c3-wan",)),
            Site("C4", "Xã Ngọc Đường", Level.commune, "P", ("c4-wan",)),
            Site("C5", "Xã Minh Ngọc", Level.commune, "D2", ("c5-wan",)),
            Site("C6", "Xã Lạc Nông", Level.commune, "D2", ()),
        ]
    )


ALL_UP = ["d1-wan", "d2-wan", "d2-backup", "c1-wan", "c2-wan", "c3-wan", "c4-wan"]


def _round(
    ts: float, down: frozenset[str] | set[str] = frozenset(), ok: list[str] = ALL_UP
) -> list[JobResult]:
    out = [_probe(t, t not in down, ts) for t in ok]
    out.append(_probe("c5-wan", False, ts))
    return out


def _registry(tracker: SiteTracker) -> CollectorRegistry:
    reg = CollectorRegistry()

    class _C(Collector):
        def collect(self) -> list[Metric]:
            return tracker.collect()

    reg.register(_C())
    return reg


@pytest.fixture
def tracker(tmp_path: Path) -> SiteTracker:
    return SiteTracker(_inventory(), tmp_path)


def test_uplink_rule_probe_and_up_gauges() -> None:
    assert uplink_is_up(_probe("x", True, 1))
    assert not uplink_is_up(_probe("x", False, 1))
    assert uplink_is_up(_snmp("x", True, 1))
    assert not uplink_is_up(_snmp("x", False, 1))
    # a broken collector is not evidence of a working link, whatever it returned
    r = _probe("x", True, 1)
    broken = _result("icmp", "x", r.families, 1, success=False, reason="timeout")
    assert not uplink_is_up(broken)
    # probe_success decides alone when present
    fam = GaugeMetricFamily("probe_success", "")
    fam.add_metric([], 0)
    other = GaugeMetricFamily("probe_dns_up", "")
    other.add_metric([], 1)
    assert not uplink_is_up(_result("dns", "x", (fam, other), 1))
    # no verdict at all
    assert not uplink_is_up(_result("tcp", "x", (), 1))
    # a kind whose results say nothing about a link (this host) is never an up uplink
    assert not uplink_is_up(JobResult("host", "host", None, None, (fam,), 1, 0.1, True))


def test_all_up_then_district_cut(tracker: SiteTracker) -> None:
    assert set(tracker.states().values()) == {"unknown"}
    tracker.update(_round(100), now=100)
    s = tracker.states()
    assert s == {
        "P": "unknown",
        "D1": "up",
        "D2": "up",
        "C1": "up",
        "C2": "up",
        "C3": "up",
        "C4": "up",
        "C5": "gap",
        "C6": "unknown",
    }
    tracker.update(_round(110, down={"d1-wan", "c1-wan", "c2-wan"}), now=110)
    s = tracker.states()
    assert s["D1"] == "down"
    assert s["C1"] == s["C2"] == "unreachable"
    assert s["D2"] == s["C3"] == s["C4"] == "up"
    assert tracker.last_up("D1") == 100
    assert tracker.last_up("D2") == 110
    # a commune up behind a failed district (another path) is up, not unreachable
    tracker.update(_round(120, down={"d1-wan", "c1-wan"}), now=120)
    assert tracker.states()["C2"] == "up"
    # restore
    tracker.update(_round(130), now=130)
    assert tracker.states()["D1"] == tracker.states()["C1"] == "up"


def test_one_uplink_enough_and_commune_down_with_parent_up(tracker: SiteTracker) -> None:
    tracker.update(_round(100), now=100)
    tracker.update(_round(110, down={"d2-wan", "c3-wan"}), now=110)
    s = tracker.states()
    assert s["D2"] == "up"  # backup link still works
    assert s["C3"] == "down"


def test_unreachable_propagates_and_unknown_parent_passes_through(tmp_path: Path) -> None:
    inv = Inventory(
        [
            Site("P", "P", Level.province, None, ("p-wan",)),
            Site("D", "D", Level.district, "P", ()),  # not monitored itself
            Site("C", "C", Level.commune, "D", ("c-wan",)),
            Site("D2", "D2", Level.district, "P", ("d2-wan",)),
            Site("C2", "C2", Level.commune, "D2", ("c2-wan",)),
        ]
    )
    t = SiteTracker(inv, tmp_path)
    t.update([_probe(x, True, 1) for x in ("p-wan", "c-wan", "d2-wan", "c2-wan")], now=1)
    t.update([_probe(x, False, 2) for x in ("p-wan", "c-wan", "d2-wan", "c2-wan")], now=2)
    assert t.states() == {
        "P": "down",
        "D": "unknown",
        "C": "unreachable",
        "D2": "unreachable",
        "C2": "unreachable",
    }


def test_gap_blocks_children_and_clears_on_first_success(tmp_path: Path) -> None:
    inv = Inventory(
        [
            Site("P", "P", Level.province, None, ()),
            Site("D", "D", Level.district, "P", ("d-wan",)),
            Site("C", "C", Level.commune, "D", ("c-wan",)),
        ]
    )
    t = SiteTracker(inv, tmp_path)
    t.update([_probe("c-wan", True, 1), _probe("d-wan", False, 1)], now=1)
    t.update([_probe("c-wan", False, 2), _probe("d-wan", False, 2)], now=2)
    assert t.states() == {"P": "unknown", "D": "gap", "C": "unreachable"}
    t.update([_probe("d-wan", True, 3)], now=3)
    assert t.states()["D"] == "up"
    # C's failure was seen while D was a gap: it says nothing until C is probed again
    assert t.states()["C"] == "unreachable"
    t.update([_probe("c-wan", False, 4)], now=4)
    assert t.states()["C"] == "down"


def test_older_result_does_not_override_newer(tracker: SiteTracker) -> None:
    tracker.update([_probe("d1-wan", True, 200)], now=200)
    tracker.update([_probe("d1-wan", False, 150)], now=201)
    assert tracker.states()["D1"] == "up"


def test_after_the_wall_clock_steps_back_new_results_count(tracker: SiteTracker) -> None:
    """The result held is dated after ``now``: the clock stepped back since, and the results that
    follow carry earlier timestamps yet are newer."""
    tracker.update([_probe("d1-wan", True, 5000)], now=5000)
    tracker.update([_probe("d1-wan", False, 1400)], now=1401)  # clock stepped back about an hour
    assert tracker.states()["D1"] != "up"


def test_stale_after_intervals_follows_the_agent_setting(tmp_path: Path) -> None:
    t = SiteTracker(_inventory(), tmp_path, stale_after_intervals=10)
    t.update([_probe("d1-wan", True, 100)], now=100)
    r = _probe("d1-wan", True, 100)
    t.update([], now=100 + 5 * r.interval + r.timeout)  # past 3 intervals, not past 10
    assert t.states()["D1"] == "up"


def test_snmp_uplink_counts(tmp_path: Path) -> None:
    inv = Inventory([Site("D", "D", Level.district, None, ("router",))])
    t = SiteTracker(inv, tmp_path)
    t.update([_snmp("router", True, 5)], now=5)
    assert t.states()["D"] == "up"
    t.update([_snmp("router", False, 6)], now=6)
    assert t.states()["D"] == "down"


def test_metrics(tracker: SiteTracker) -> None:
    tracker.update(_round(100), now=100)
    tracker.update(_round(110, down={"d1-wan", "c1-wan", "c2-wan"}), now=110)
    reg = _registry(tracker)
    g = reg.get_sample_value
    assert g("giamsat_site_up", {"site": "D1"}) == 0
    assert g("giamsat_site_up", {"site": "C1"}) == 0
    assert g("giamsat_site_up", {"site": "C3"}) == 1
    assert g("giamsat_site_up", {"site": "C6"}) is None  # unknown: absent, not 0
    for site, want in {"D1": "down", "C1": "unreachable", "C5": "gap", "C6": "unknown", "C4": "up"}.items():
        for st in STATES:
            assert g("giamsat_site_state", {"site": site, "state": st}) == (1 if st == want else 0)
    assert g("giamsat_site_last_up_timestamp_seconds", {"site": "D1"}) == 100
    assert g("giamsat_site_last_up_timestamp_seconds", {"site": "C5"}) is None
    assert g("giamsat_site_coverage_gap", {"site": "C5"}) == 1
    assert g("giamsat_site_coverage_gap", {"site": "C1"}) == 0
    assert g("giamsat_site_coverage_gap", {"site": "C6"}) is None
    # communes under the province (all of them, through districts): C1..C6
    communes = {st: g("giamsat_sites", {"ancestor": "P", "level": "commune", "state": st}) for st in STATES}
    assert communes == {"up": 2, "down": 0, "unreachable": 2, "gap": 1, "unknown": 1}
    districts = {st: g("giamsat_sites", {"ancestor": "P", "level": "district", "state": st}) for st in STATES}
    assert districts == {"up": 1, "down": 1, "unreachable": 0, "gap": 0, "unknown": 0}
    assert g("giamsat_sites", {"ancestor": "D1", "level": "commune", "state": "unreachable"}) == 2
    assert g("giamsat_sites", {"ancestor": "D2", "level": "commune", "state": "gap"}) == 1
    assert g("giamsat_sites", {"ancestor": "C1", "level": "commune", "state": "up"}) is None


def test_persistence_round_trip(tmp_path: Path) -> None:
    t = SiteTracker(_inventory(), tmp_path)
    t.update(_round(100), now=100)
    assert t.save()
    assert not t.save()  # nothing changed since
    data = json.loads((tmp_path / "sites.json").read_text())
    assert data["last_up"]["D1"] == 100
    assert "C5" in data["tried_never_up"]
    assert list(tmp_path.iterdir()) == [tmp_path / "sites.json"]  # no temp file left behind

    t2 = SiteTracker(_inventory(), tmp_path)
    t2.load()
    # after a restart, before any result: known gap stays a gap, last-up times survive
    assert t2.states()["C5"] == "gap"
    assert t2.last_up("D1") == 100
    t2.update(_round(200, down={"d1-wan", "c1-wan", "c2-wan"}), now=200)
    assert t2.states()["D1"] == "down"  # known before, so not a gap


@pytest.mark.parametrize(
    "content",
    ["{not json", "[]", '{"version": 99}', '{"version": 1, "last_up": {"D1": "yesterday"}}', "\xff"],
)
def test_corrupt_state_file_is_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "sites.json").write_text(content, encoding="latin-1")
    t = SiteTracker(_inventory(), tmp_path)
    with caplog.at_level(logging.WARNING, logger="giamsat.sites"):
        t.load()
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    t.update(_round(100), now=100)
    assert t.states()["D1"] == "up"
    assert t.save()
    assert json.loads((tmp_path / "sites.json").read_text())["version"] == 1


def test_missing_state_file_and_unknown_sites_ignored(tmp_path: Path) -> None:
    t = SiteTracker(_inventory(), tmp_path / "not-yet")
    t.load()  # no file: fine
    (tmp_path / "sites.json").write_text(
        json.dumps({"version": 1, "last_up": {"GONE": 5, "D1": 7}, "tried_never_up": {}})
    )
    t = SiteTracker(_inventory(), tmp_path)
    t.load()
    assert t.last_up("D1") == 7
    assert "GONE" not in t.states()
    # A site this inventory lacks (a reload removed it) keeps its entry: added back, it is no gap.
    assert t.save(force=True)
    assert json.loads((tmp_path / "sites.json").read_text())["last_up"]["GONE"] == 5


def test_save_failure_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    t = SiteTracker(_inventory(), blocker / "sub")  # parent is a file: cannot create the directory
    t.update(_round(1), now=1)
    with caplog.at_level(logging.WARNING, logger="giamsat.sites"):
        assert not t.save()
    assert any("cannot save" in r.getMessage() for r in caplog.records)


def test_stale_uplink_result_no_longer_counts(tracker: SiteTracker) -> None:
    tracker.update(_round(100), now=100)
    # probes default to interval 30s, timeout 10s: stale after 3 * 30 + 10 = 100 s
    tracker.update([], now=200)
    assert tracker.states()["D1"] == "up"
    tracker.update([], now=201)
    assert tracker.states()["D1"] == "unknown"
    assert tracker.last_up("D1") == 100


def test_save_is_throttled_except_for_gap_changes(tmp_path: Path) -> None:
    t = SiteTracker(_inventory(), tmp_path)
    t.update(_round(100), now=100)
    assert t.save(now=100)  # first successes and a new gap: at once
    t.update(_round(110), now=110)
    assert not t.save(now=110)  # only refreshed last-up times: wait
    assert t.save(now=160)
    t.update([_probe("c5-wan", True, 170)], now=170)
    assert t.save(now=171)  # the gap ended: at once
    assert "C5" not in json.loads((tmp_path / "sites.json").read_text())["tried_never_up"]
    assert t.save(force=True, now=172)


def _chain(tmp_path: Path) -> SiteTracker:
    inv = Inventory(
        [
            Site("P", "P", Level.province, None, ()),
            Site("D", "D", Level.district, "P", ("d-wan",)),
            Site("C", "C", Level.commune, "D", ("c-wan",)),
        ]
    )
    t = SiteTracker(inv, tmp_path)
    t.update([_probe("d-wan", True, 10), _probe("c-wan", True, 11)], now=11)
    return t


def test_commune_failing_before_its_district_is_reprobed_is_not_down(tmp_path: Path) -> None:
    """The district's link is cut at t=15; the commune's probe notices first (t=16), the district's at
    t=20. The commune must go straight from up to unreachable, never down in between."""
    t = _chain(tmp_path)
    t.update([_probe("c-wan", False, 16)], now=16)
    assert t.states() == {"P": "unknown", "D": "up", "C": "up"}  # held: D not re-checked yet
    t.update([_probe("d-wan", False, 20)], now=20)
    assert t.states()["D"] == "down"
    assert t.states()["C"] == "unreachable"


def test_commune_failing_alone_is_down_once_its_district_is_seen_up(tmp_path: Path) -> None:
    t = _chain(tmp_path)
    t.update([_probe("c-wan", False, 16)], now=16)
    assert t.states()["C"] == "up"
    t.update([_probe("d-wan", True, 20)], now=20)
    assert t.states()["C"] == "down"


def test_after_restore_the_commune_stays_unreachable_until_probed_again(tmp_path: Path) -> None:
    t = _chain(tmp_path)
    t.update([_probe("d-wan", False, 20), _probe("c-wan", False, 21)], now=21)
    assert t.states()["C"] == "unreachable"
    t.update([_probe("d-wan", True, 30)], now=30)  # district back; commune's last result is from t=21
    assert t.states()["D"] == "up"
    assert t.states()["C"] == "unreachable"
    t.update([_probe("c-wan", True, 32)], now=32)
    assert t.states()["C"] == "up"
    # and a commune that stays broken after the district is back is down at its next failure
    t2 = _chain(tmp_path / "2")
    t2.update([_probe("d-wan", False, 20), _probe("c-wan", False, 21)], now=21)
    t2.update([_probe("d-wan", True, 30)], now=30)
    t2.update([_probe("c-wan", False, 32)], now=32)
    assert t2.states()["C"] == "down"


def test_collect_follows_state_changes(tracker: SiteTracker) -> None:
    reg = _registry(tracker)
    tracker.update(_round(100), now=100)
    assert reg.get_sample_value("giamsat_site_state", {"site": "D1", "state": "up"}) == 1
    tracker.update(_round(110, down={"d1-wan"}), now=110)
    assert reg.get_sample_value("giamsat_site_state", {"site": "D1", "state": "up"}) == 0
    assert reg.get_sample_value("giamsat_site_state", {"site": "D1", "state": "down"}) == 1
    assert reg.get_sample_value("giamsat_sites", {"ancestor": "P", "level": "district", "state": "down"}) == 1
    tracker.update(_round(120), now=120)
    assert reg.get_sample_value("giamsat_site_last_up_timestamp_seconds", {"site": "D1"}) == 120
    assert reg.get_sample_value("giamsat_site_state", {"site": "D1", "state": "up"}) == 1


def test_exposition_is_promtool_clean(tracker: SiteTracker) -> None:
    import subprocess

    from prometheus_client.exposition import generate_latest

    tracker.update(_round(100), now=100)
    tracker.update(_round(110, down={"d1-wan", "c1-wan", "c2-wan"}), now=110)
    body = generate_latest(_registry(tracker)).decode()
    assert "giamsat_site_last_up_timestamp_seconds" in body
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_uplinks_of_different_kinds_with_one_name_are_two_uplinks(tmp_path: Path) -> None:
    """An ICMP target and a TCP target both named ``wan``: the newer TCP failure must not overwrite the
    working ICMP link (they were one key), and the site is down only when both fail."""
    inv = Inventory([Site("D", "D", Level.district, None, ("wan",))])
    t = SiteTracker(inv, tmp_path)
    t.update([_probe("wan", True, 10, kind="icmp"), _probe("wan", False, 11, kind="tcp")], now=11)
    assert t.states()["D"] == "up"
    assert t.details()["D"].failing == (("tcp/wan", "down"),)
    t.update([_probe("wan", False, 20, kind="tcp")], now=20)
    assert t.states()["D"] == "up"  # the ICMP result of t=10 is still fresh and up
    t.update([_probe("wan", False, 21, kind="icmp")], now=21)
    assert t.states()["D"] == "down"
    assert {job for job, _ in t.details()["D"].failing} == {"icmp/wan", "tcp/wan"}


def test_state_reason_and_change_time_are_exported(tracker: SiteTracker) -> None:
    tracker.update(_round(100), now=100)
    tracker.update([_result("icmp", "d1-wan", (), 110, success=False, reason="timeout")], now=110.5)
    tracker.update(_round(111, down={"d1-wan", "c1-wan", "c2-wan"}, ok=["c1-wan", "c2-wan"]), now=111)
    g = _registry(tracker).get_sample_value
    assert g("giamsat_site_state_change_timestamp_seconds", {"site": "D1"}) == 110.5
    assert g("giamsat_site_state_change_timestamp_seconds", {"site": "D2"}) == 100
    assert g("giamsat_site_state_reason", {"site": "D1", "state": "down", "reason": "timeout"}) == 1
    assert g("giamsat_site_state_reason", {"site": "C1", "state": "unreachable", "reason": "upstream"}) == 1
    assert g("giamsat_site_state_reason", {"site": "C5", "state": "gap", "reason": "never_up"}) == 1
    assert g("giamsat_site_state_reason", {"site": "C6", "state": "unknown", "reason": "no_uplinks"}) == 1
    assert g("giamsat_site_state_reason", {"site": "D2", "state": "up", "reason": ""}) is None
    d = tracker.details()["D1"]
    assert (d.state, d.since, d.reason, d.failing) == (
        "down",
        110.5,
        "timeout",
        (("icmp/d1-wan", "timeout"),),
    )
    # unchanged state keeps its since-time; recovery sets a new one
    tracker.update([_probe("d1-wan", False, 120)], now=120)
    assert tracker.details()["D1"].since == 110.5
    tracker.update([_probe("d1-wan", True, 130)], now=130)
    assert tracker.details()["D1"] == tracker.details()["D1"].__class__("up", 130, "", ())


def test_restart_serves_the_saved_state_until_the_first_round(tmp_path: Path) -> None:
    """An agent restarted during an outage: until its uplinks have a first result, the site is still
    down (since the original time), never unknown, so a scrape then cannot resolve the alert."""
    t = SiteTracker(_inventory(), tmp_path)
    t.update(_round(100), now=100)
    t.update(_round(110, down={"d1-wan", "c1-wan", "c2-wan"}), now=110)
    t.save(force=True)

    t2 = SiteTracker(_inventory(), tmp_path)
    t2.load()
    before = t2.details()
    assert (before["D1"].state, before["D1"].since) == ("down", 110)
    assert before["C1"].state == "unreachable" and before["D2"].state == "up" and before["C5"].state == "gap"
    assert before["C6"].state == "unknown"  # never known: nothing to carry over
    g = _registry(t2).get_sample_value
    assert g("giamsat_site_state", {"site": "D1", "state": "down"}) == 1
    assert g("giamsat_site_state", {"site": "D1", "state": "unknown"}) == 0
    # results arrive for some uplinks: those sites follow them, the others keep their saved state
    t2.update([_probe("d2-wan", False, 200), _probe("d2-backup", False, 200)], now=200)
    assert t2.states()["D2"] == "down" and t2.states()["D1"] == "down"
    # the first round is over: a site still without a result is unknown, as it would be without a file
    t2.end_warmup()
    assert t2.states()["D1"] == "unknown"


def test_commune_failing_while_its_district_answered_in_the_same_round_is_down(tmp_path: Path) -> None:
    """Both are probed at the same moment (one ICMP batch); the district's reply comes back while the
    commune's confirmation burst is still going, so its result is recorded first. The district was
    up while the commune failed: the commune is down at once, not one interval later."""
    t = _chain(tmp_path)
    d = _probe("d-wan", True, 20.05)
    c = _probe("c-wan", False, 26.0)
    c_run = JobResult(c.job_id, c.kind, c.target, None, c.families, 26.0, 6.0, True, link=c.link)
    t.update([d, c_run], now=26.0)
    assert t.states()["C"] == "down"
