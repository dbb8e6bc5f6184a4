"""Rendering the store: merged families, site/target labels, bounded labels, conflicts never break a scrape."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.samples import Sample

from agent.kernel.results import JobResult
from agent.kernel.store import Store
from exporters.exposition import ResultRenderCache, render_openmetrics, render_text
from tests.helpers import parse_exposition


def result(
    job: str, fams: list[Metric], site: str | None = "xa-1", target: str | None = "wan", **kw: object
) -> JobResult:
    kind = job.split("/")[0]
    return JobResult(job, kind, target, site, tuple(fams), time.time(), 0.01, True, **kw)  # type: ignore[arg-type]


def gauge(name: str, value: float, **labels: str) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, f"help for {name}", labels=list(labels))
    g.add_metric(list(labels.values()), value)
    return g


def promtool_check(text: str) -> str:
    p = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    return p.stdout + p.stderr


def test_families_from_many_jobs_are_merged_under_one_header_with_site_and_target() -> None:
    a = result("icmp/wan", [gauge("probe_success", 1)], site="xa-1", target="wan")
    b = result("icmp/backup", [gauge("probe_success", 0)], site="xa-2", target="backup")
    body, conflicts = render_text([a, b], [], 256)
    text = body.decode()
    assert text.count("# TYPE probe_success gauge") == 1
    samples = parse_exposition(text)
    assert samples['probe_success{site="xa-1",target="wan"}'] == 1
    assert samples['probe_success{site="xa-2",target="backup"}'] == 0
    assert conflicts == 0
    assert promtool_check(text) == ""


def test_counter_and_info_names_follow_the_text_format() -> None:
    c = CounterMetricFamily("ifHCInOctets", "in octets", labels=["ifIndex"])
    c.add_metric(["1"], 12345)
    i = InfoMetricFamily("snmp_system", "system", labels=[])
    i.add_metric([], {"sysName": "router-xa-1"})
    text = render_text([result("snmp/r1", [c, i], target="r1")], [], 256)[0].decode()
    assert "# TYPE ifHCInOctets_total counter" in text
    assert 'ifHCInOctets_total{ifIndex="1",site="xa-1",target="r1"} 12345.0' in text
    assert 'snmp_system_info{sysName="router-xa-1",site="xa-1",target="r1"} 1.0' in text


def test_long_and_broken_label_values_are_bounded_not_fatal() -> None:
    g = GaugeMetricFamily("if_alias_info", "alias", labels=["alias", "odd"])
    g.add_metric(["x" * 10_000, 'bad\udcffsurrogate "quoted"\nnewline'], 1)
    text = render_text([result("snmp/r1", [g])], [], 64)[0].decode()
    line = next(ln for ln in text.splitlines() if ln.startswith("if_alias_info{"))
    assert 'alias="' + "x" * 64 + '"' in line
    assert '\\"quoted\\"\\nnewline' in line
    assert promtool_check(text) == ""


def test_duplicate_series_and_type_clash_across_jobs_are_dropped_and_counted() -> None:
    # Two jobs with the same target name at the same site would expose the same series twice, which
    # makes Prometheus reject the whole scrape; the second copy is left out instead.
    a = result("tcp/wan", [gauge("probe_success", 1)], target="wan")
    b = result("icmp/wan", [gauge("probe_success", 0)], target="wan")
    counter = result("ssh/g", [CounterMetricFamily("probe_extra", "a counter", value=3)], target="g")
    clash = result("ssh/h", [gauge("probe_extra_total", 1)], target="h")
    body, conflicts = render_text([a, b, counter, clash], [], 256)
    text = body.decode()
    assert conflicts == 2
    assert text.count('probe_success{site="xa-1",target="wan"}') == 1
    assert "# TYPE probe_extra_total counter" in text
    assert 'probe_extra_total{site="xa-1",target="h"}' not in text
    assert promtool_check(text) == ""


class _CountingFamily(Metric):
    """A family that counts how often its samples are read (a render reads them once)."""

    reads = 0

    def __init__(self) -> None:
        super().__init__("probe_success", "", "gauge")
        self._samples = [Sample("probe_success", {}, 1.0)]

    @property
    def samples(self) -> list[Sample]:
        type(self).reads += 1
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        pass


def test_render_is_cached_per_result_and_own_metrics_are_fresh() -> None:
    fam = _CountingFamily()
    r = result("icmp/wan", [fam])
    cache = ResultRenderCache()
    render_text([r], [], 256, result_cache=cache)
    reads = _CountingFamily.reads
    own = [gauge("giamsat_build_info", 1, version="x")]
    text = render_text([r], own, 256, result_cache=cache)[0].decode()
    assert _CountingFamily.reads == reads  # cached after the first scrape
    assert text.index("giamsat_build_info") < text.index("probe_success")
    # A new result of the same job: a family object it shares with the previous result is the same
    # (immutable) family, whose lines are taken as they are; a new family object is rendered anew.
    same = result("icmp/wan", [fam])
    assert (
        render_text([same], [], 256, result_cache=cache)[0].decode() == render_text([r], [], 256)[0].decode()
    )
    reads = _CountingFamily.reads
    render_text([same], [], 256, result_cache=cache)
    assert _CountingFamily.reads == reads
    newer = result("icmp/wan", [_CountingFamily()])
    render_text([newer], [], 256, result_cache=cache)
    assert _CountingFamily.reads > reads
    moved = result("icmp/wan", [fam], site="xa-2")  # other labels: rendered anew
    assert 'site="xa-2"' in render_text([moved], [], 256, result_cache=cache)[0].decode()


def test_openmetrics_output() -> None:
    c = CounterMetricFamily("node_network_receive_bytes", "rx", labels=["device"])
    c.add_metric(["lo"], 10)
    text = render_openmetrics([result("host", [c], target=None)], [], 256)[0].decode()
    assert text.endswith("# EOF\n")
    assert 'node_network_receive_bytes_total{device="lo",site="xa-1"} 10.0' in text


def test_store_drops_stale_results() -> None:
    store = Store(stale_after_intervals=3)
    old = JobResult("icmp/a", "icmp", "a", "s", (), time.time() - 100, 0.1, True, interval=10, timeout=5)
    fresh = JobResult("icmp/b", "icmp", "b", "s", (), time.time() - 20, 0.1, True, interval=10, timeout=5)
    store.put(old)
    store.put(fresh)
    assert [r.job_id for r in store.snapshot()] == ["icmp/b"]
    assert store.get("icmp/a") is None
    assert store.get("icmp/b") is fresh


def test_snmp_exporter_style_counter_keeps_its_name_in_both_formats() -> None:
    fam = Metric("ifHCInOctets", "The total number of octets received - 1.3.6.1.2.1.31.1.1.1.6", "counter")
    fam.add_sample("ifHCInOctets", {"ifIndex": "2", "ifName": "eth0"}, 987654321.0)
    r = result("snmp/r1", [fam], target="r1")
    text = render_text([r], [], 256)[0].decode()
    assert "# TYPE ifHCInOctets counter" in text
    assert 'ifHCInOctets{ifIndex="2",ifName="eth0",site="xa-1",target="r1"} 987654321.0' in text
    findings = [f for f in promtool_check(text).splitlines() if f]
    # Only the lints promtool also gives snmp_exporter's own output for MIB-named counters.
    assert findings and all("camelCase" in f or 'should have "_total" suffix' in f for f in findings), (
        findings
    )
    om = render_openmetrics([r], [], 256)[0].decode()
    assert "# TYPE ifHCInOctets unknown" in om and om.endswith("# EOF\n")


def test_own_family_cache_renders_an_unchanged_family_once() -> None:
    from exporters.exposition import OwnFamilyCache

    cache = OwnFamilyCache()
    same = gauge("giamsat_site_up", 1, site="xa-1")
    first = render_text([], [same], 256, cache)[0]
    rf = cache.render([same], 256)[0]
    assert cache.render([same], 256)[0] is rf  # not rendered again
    assert render_text([], [same], 256, cache)[0] == first
    changed = gauge("giamsat_site_up", 0, site="xa-1")  # a new object: rendered afresh
    assert b'giamsat_site_up{site="xa-1"} 0.0' in render_text([], [changed], 256, cache)[0]


def test_label_dicts_shared_across_families_render_like_separate_ones() -> None:
    """The collectors share one label dict per table row across a table's families (SNMP does); the
    renderer reuses the rendered labels, which must give exactly what separate dicts give: the site and
    target added, a ``site`` the sample already carries kept, values cut and escaped, duplicates dropped."""
    rows = [
        {"ifIndex": "1", "ifName": 'ge-0/0/1 "uplink"\\x', "ifAlias": "Cáp quang " + "x" * 300},
        {"ifIndex": "2", "ifName": "ge-0/0/2", "ifAlias": "", "site": "own-site"},
    ]

    def families(shared: bool) -> list[Metric]:
        out: list[Metric] = []
        for name, kind in (("ifHCInOctets", "counter"), ("ifOperStatus", "gauge"), ("ifHighSpeed", "gauge")):
            fam = Metric(name, f"{name} help", kind)
            for i, labels in enumerate(rows):
                for _ in range(2):  # the same series twice: the second is a duplicate
                    fam.add_sample(name, labels if shared else dict(labels), 10.0 * i + 0.5)
            out.append(fam)
        return out

    shared, separate = (render_text([result("snmp/sw1", families(s))], [], 64) for s in (True, False))
    assert shared == separate
    text = shared[0].decode()
    assert 'ifHCInOctets{ifIndex="1",ifName="ge-0/0/1 \\"uplink\\"\\\\x",' in text
    assert 'site="own-site",target="wan"} 10.5' in text
    assert text.count("ifHighSpeed{") == 2
    assert 'ifAlias="Cáp quang ' + "x" * 54 + '",site="xa-1"' in text  # cut at 64 characters
    assert shared[1] == 0


def mixed_results() -> tuple[list[JobResult], list[Metric]]:
    from prometheus_client.core import (
        HistogramMetricFamily,
        StateSetMetricFamily,
        SummaryMetricFamily,
        UnknownMetricFamily,
    )

    def families(rtt: float) -> list[Metric]:
        c = CounterMetricFamily("probe_sent_packets", 'Packets sent ("echo" requests).', labels=["probe"])
        c.add_metric(["icmp"], 10 * rtt, created=1.7e9)  # _created: left out of both formats
        h = HistogramMetricFamily("probe_rtt_seconds", "Round-trip times.\nSecond line \\ backslash.")
        h.add_metric([], [("0.01", 1), ("0.1", 3), ("+Inf", 4)], sum_value=rtt)
        i = InfoMetricFamily("probe_device", "Device identity.", labels=[])
        i.add_metric([], {"vendor": 'Cisco "IOS"', "model": "ISR\n4331"})
        s = SummaryMetricFamily("probe_jitter_seconds", "Jitter.", count_value=4, sum_value=rtt / 2)
        st = StateSetMetricFamily("probe_link_state", "Link state.", labels=["link"])
        st.add_metric(["wan"], {"up": True, "down": False})
        bare = Metric("ifHCInOctets", "Octets in - 1.3.6.1.2.1.31.1.1.1.6", "counter")
        bare.add_sample("ifHCInOctets", {"ifIndex": "1"}, 2.0**53)
        u = UnknownMetricFamily("probe_raw_value", "A value of unknown type.", value=float("nan"))
        return [gauge("probe_success", 1.0, probe="icmp"), c, h, i, s, st, bare, u]

    results = [
        result("icmp/a", families(0.25), site="xa-1", target="a"),
        result("icmp/b", families(float("inf")), site="xa-2", target="b"),
        # A duplicate series (same site/target as icmp/a) and a family whose type clashes: both left out.
        result("tcp/a", [gauge("probe_success", 0.0, probe="icmp")], site="xa-1", target="a"),
        result("tcp/z", [gauge("probe_sent_packets_total", 1.0)], site="xa-1", target="z"),
        # Gauge "probe_device_info" would merge with info "probe_device" in text, not in OpenMetrics.
        result("tcp/y", [gauge("probe_device_info", 0.5)], site="xa-1", target="y"),
    ]
    own: list[Metric] = [gauge("giamsat_build_info", 1.0, version="1.0"), gauge("giamsat_sites", 2.0)]
    return results, own


def sample_lines(exposition: str) -> list[str]:
    return sorted(ln for ln in exposition.splitlines() if ln and not ln.startswith("#"))


def _samples(families: Iterable[Metric]) -> set[tuple[str, tuple[tuple[str, str], ...], str]]:
    return {(s.name, tuple(sorted(s.labels.items())), repr(s.value)) for f in families for s in f.samples}


def test_openmetrics_and_text_carry_the_same_samples_and_conflicts() -> None:
    """OpenMetrics (what Prometheus 2.x asks for) is rendered from the same cached lines as text: each
    parsed by prometheus_client's own parser for that format (the OpenMetrics one is strict: it refuses
    a missing # EOF, a blank line, a counter family named with _total, an info value other than 1), the
    two must give the same samples, and conflicts must be counted on both paths."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
    from prometheus_client.parser import text_string_to_metric_families as parse_text

    results, own = mixed_results()
    text, text_conflicts = render_text(results, own, 256)
    om, om_conflicts = render_openmetrics(results, own, 256)
    assert text_conflicts == om_conflicts == 3
    # raises on anything OpenMetrics forbids
    om_samples = _samples(parse_om(om.decode()))  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
    assert len(om_samples) == 2 + 2 * 14  # per result: 1+1+5+1+2+2+1+1
    # prometheus_client's text parser renames a counter's samples to _total; compare those as it does.
    assert {(n.removesuffix("_total"), ls, v) for n, ls, v in _samples(parse_text(text.decode()))} == {
        (n.removesuffix("_total"), ls, v) for n, ls, v in om_samples
    }
    # and the sample lines themselves are spelled the same in both formats
    assert sample_lines(text.decode()) == sample_lines(om.decode())
    om_text = om.decode()
    assert om_text.endswith("\n# EOF\n") and "\n\n" not in om_text
    assert "# TYPE probe_sent_packets counter\n" in om_text
    assert '# HELP probe_sent_packets Packets sent (\\"echo\\" requests).\n' in om_text
    assert "# TYPE probe_device info\n" in om_text and "# TYPE probe_link_state stateset\n" in om_text
    assert "# TYPE ifHCInOctets unknown\n" in om_text and "# TYPE probe_raw_value unknown\n" in om_text
    assert "_created" not in om_text and "_created" not in text.decode()
    assert 'probe_device_info{site="xa-1",target="y"}' not in om_text + text.decode()
    findings = [f for f in promtool_check(text.decode()).splitlines() if f]
    assert all("ifHCInOctets" in f for f in findings), findings


def test_openmetrics_spells_timestamps_in_seconds_text_in_milliseconds() -> None:
    g = Metric("probe_last_change", "Last change.", "gauge")
    g.add_sample("probe_last_change", {"port": "1"}, 5.0)
    g.add_sample("probe_last_change", {"port": "2"}, 6.0, timestamp=1700000000.5)
    r = result("snmp/r1", [g], target="r1")
    text = render_text([r], [], 256)[0].decode()
    om = render_openmetrics([r], [], 256)[0].decode()
    assert 'probe_last_change{port="2",site="xa-1",target="r1"} 6.0 1700000000500\n' in text
    assert 'probe_last_change{port="2",site="xa-1",target="r1"} 6.0 1700000000.5\n' in om
    assert 'probe_last_change{port="1",site="xa-1",target="r1"} 5.0\n' in om


def test_openmetrics_reuses_the_lines_cached_for_text() -> None:
    """The cost fix: a result is rendered once, whichever format asks first, and both formats use it."""
    fam = _CountingFamily()
    r = result("icmp/wan", [fam])
    cache = ResultRenderCache()
    render_openmetrics([r], [], 256, result_cache=cache)
    reads = _CountingFamily.reads
    assert reads
    render_text([r], [], 256, result_cache=cache)
    render_openmetrics([r], [], 256, result_cache=cache)
    assert _CountingFamily.reads == reads
