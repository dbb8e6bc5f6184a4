"""The series cap: bounded, health always kept, deterministic and order-preserving."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.kernel.limits import cap_series, count_series


def table(name: str, rows: int) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, "a table", labels=["ifIndex"])
    for i in range(rows):
        fam.add_metric([str(i)], i)
    return fam


def test_a_device_with_thousands_of_rows_is_capped_but_stays_up() -> None:
    up = GaugeMetricFamily("snmp_up", "up", value=1)
    octets = CounterMetricFamily("ifHCInOctets", "octets", labels=["ifIndex"])
    for i in range(5000):
        octets.add_metric([str(i)], i)
    fams, dropped = cap_series([table("ifOperStatus", 5000), up, octets], 1000)
    assert count_series(fams) == 1000 and dropped == 10001 - 1000
    assert [f.name for f in fams] == ["ifOperStatus", "snmp_up"]
    assert fams[0].samples[0].labels == {"ifIndex": "0"} and len(fams[0].samples) == 999
    assert fams[1].samples[0].value == 1


def test_under_the_cap_nothing_changes() -> None:
    fams = [table("a", 3), table("b", 2)]
    out, dropped = cap_series(fams, 5)
    assert out == fams and dropped == 0


def test_counter_samples_keep_their_names() -> None:
    c = CounterMetricFamily("x", "x", labels=["i"])
    for i in range(10):
        c.add_metric([str(i)], i)
    (out,), _ = cap_series([c], 4)
    assert out.type == "counter" and [s.name for s in out.samples] == ["x_total"] * 4


families = st.lists(
    st.tuples(st.sampled_from(["a", "b", "probe_success", "x_up", "snmp_failure_reason", "c"]), st.integers(0, 50)),
    max_size=8,
).map(lambda specs: [table(f"{name}_{i}" if not name.endswith(("_up", "_success", "_reason")) else name, n)
                     for i, (name, n) in enumerate(specs)])  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(families, st.integers(0, 200))
def test_cap_properties(fams: list[Metric], cap: int) -> None:
    out, dropped = cap_series(fams, cap)
    health = sum(len(f.samples) for f in fams if f.name.endswith(("_up", "_success", "_reason")))
    assert count_series(out) <= max(cap, health)
    assert count_series(out) + dropped == count_series(fams)
    for f in fams:  # every health family survives whole
        if f.name.endswith(("_up", "_success", "_reason")):
            assert f in out
    # order of families and of samples is preserved (same result every collection)
    names = [f.name for f in fams]
    assert [f.name for f in out] == [n for n in names if n in {f.name for f in out}]
    assert cap_series(fams, cap)[0] == out or [f.samples for f in cap_series(fams, cap)[0]] == [
        f.samples for f in out
    ]


def test_declared_link_families_survive_the_cap_whatever_their_names() -> None:
    """A collector's link metric is kept even when its name has none of the usual health suffixes."""
    reachable = table("device_reachable", 1)
    why = table("device_problem", 1)
    fams, dropped = cap_series([table("ifOperStatus", 50), reachable, why], 10)
    assert "device_reachable" not in [f.name for f in fams]
    fams, dropped = cap_series(
        [table("ifOperStatus", 50), reachable, why], 10, keep={"device_reachable", "device_problem"}
    )
    names = [f.name for f in fams]
    assert "device_reachable" in names and "device_problem" in names
    assert sum(len(f.samples) for f in fams) == 10 and dropped == 42
