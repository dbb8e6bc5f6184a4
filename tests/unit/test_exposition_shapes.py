"""Shaped families (agent.kernel.families) render exactly as the same samples read one by one."""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from agent.kernel.collector import BlockingRunner, CollectorContext
from agent.kernel.families import FamilyShape, ShapedFamily
from agent.kernel.results import JobResult
from collectors.probes.common import current_probe
from collectors.probes.icmp import IcmpCollector, IcmpSettings
from collectors.probes.icmp_engine import EchoResult
from exporters.exposition import ResultRenderCache, render_openmetrics, render_text


def plain(fam: Metric) -> Metric:
    """The same family as an ordinary one: its samples copied, so the renderer walks them."""
    out = Metric(fam.name, fam.documentation, fam.type)
    out.samples = [Sample(s.name, dict(s.labels), s.value) for s in fam.samples]
    return out


def result(job: str, fams: Sequence[Metric], site: str = "xa-1", target: str = "wan") -> JobResult:
    return JobResult(job, "icmp", target, site, tuple(fams), time.time(), 0.01, True)


def icmp_families(
    tmp_path: Path, rtts: list[float], errors: dict[str, int] | None = None
) -> tuple[Metric, ...]:
    ctx = CollectorContext("icmp", tmp_path, BlockingRunner("t", 1), logging.getLogger("t"))
    col = IcmpCollector(IcmpSettings(), ctx)
    current_probe.set("icmp")
    return col._metrics(
        "wan", EchoResult(3, rtts, errors or {}, 61), 0.2, 0.001, socket.AF_INET, "127.0.0.1", 0.0003
    )


def test_icmp_result_renders_byte_for_byte_as_its_samples(tmp_path: Path) -> None:
    fams = icmp_families(tmp_path, [0.000123456789, 0.0031, 1.5])
    assert sum(isinstance(f, ShapedFamily) for f in fams) >= 10  # the fast path is what is tested
    for labels in (("a-1", "wan"), ('x"\\\n', "t,}=1")):  # label values that need escaping
        shaped = [result(f"icmp/{i}", fams, *labels) for i in range(3)]
        walked = [result(f"icmp/{i}", [plain(f) for f in fams], *labels) for i in range(3)]
        assert render_text(shaped, [], 200) == render_text(walked, [], 200)
        assert render_openmetrics(shaped, [], 200) == render_openmetrics(walked, [], 200)


def test_a_failed_probe_and_icmp_errors_render_as_their_samples(tmp_path: Path) -> None:
    fams = icmp_families(tmp_path, [], {"host_unreachable": 3})
    shaped, walked = result("icmp/a", fams), result("icmp/a", [plain(f) for f in fams])
    text, _ = render_text([shaped], [], 200)
    assert text == render_text([walked], [], 200)[0]
    assert b'probe_icmp_errors{reason="host_unreachable",probe="icmp",site="xa-1",target="wan"} 3.0' in text


class _Pair(ShapedFamily):
    """A test family with two samples whose values are given."""

    name, documentation, type, unit = "test_pair", "two values", "gauge", ""

    def __init__(self, a: float, b: float, shape: object | None = None, labels: dict[str, str] | None = None):
        self.a, self.b = a, b
        self._labels = labels or {"side": "a"}
        if shape is not None:
            self.shape = shape

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        return [Sample(self.name, self._labels, self.a), Sample(self.name, {"side": "b"}, self.b)]

    def sample_values(self) -> tuple[float, ...]:
        return (self.a, self.b)


def test_special_values_are_spelled_as_the_format_wants() -> None:
    for a, b in ((math.nan, 1.0), (math.inf, -math.inf), (1e308, 1e308), (-0.0, 5e-324), (3, True)):
        fam = _Pair(a, b)
        got = render_text([result("icmp/a", [fam])], [], 200)
        assert got == render_text([result("icmp/a", [plain(fam)])], [], 200), (a, b)
    text = render_text([result("icmp/a", [_Pair(math.nan, math.inf)])], [], 200)[0].decode()
    assert 'test_pair{side="a",site="xa-1",target="wan"} NaN' in text
    assert 'test_pair{side="b",site="xa-1",target="wan"} +Inf' in text


def test_families_that_break_the_contract_are_rendered_sample_by_sample() -> None:
    # own site/target labels: the sample's win, as for any family
    own = _Pair(1.0, 2.0, FamilyShape("own site"), {"site": "elsewhere"})
    text = render_text([result("icmp/a", [own])], [], 200)[0].decode()
    assert 'test_pair{site="elsewhere",target="wan"} 1.0' in text

    # more values than samples: read as its samples say, never a crash or a wrong line
    class Liar(_Pair):
        def sample_values(self) -> tuple[float, float, float]:
            return (self.a, self.b, 9.0)

    liar = Liar(1.0, 2.0)
    assert render_text([result("icmp/a", [liar])], [], 200) == render_text(
        [result("icmp/a", [plain(liar)])], [], 200
    )
    # no site or target to add: the usual path
    bare = JobResult("host", "host", None, None, (_Pair(1.0, 2.0),), time.time(), 0.0, True)
    assert b'test_pair{side="a"} 1.0' in render_text([bare], [], 200)[0]


def test_long_label_values_of_a_shape_are_cut_per_limit() -> None:
    shape = FamilyShape("long")
    fam = _Pair(1.0, 2.0, shape, {"side": "x" * 50})
    short = render_text([result("icmp/a", [fam])], [], 10)[0].decode()
    long = render_text([result("icmp/a", [fam])], [], 100)[0].decode()
    assert 'side="xxxxxxxxxx",' in short and f'side="{"x" * 50}"' in long


def test_the_render_cache_takes_new_values_of_the_same_shape(tmp_path: Path) -> None:
    cache = ResultRenderCache()
    first = render_text([result("icmp/a", [_Pair(1.0, 2.0)])], [], 200, result_cache=cache)[0]
    second = render_text([result("icmp/a", [_Pair(3.0, 4.0)])], [], 200, result_cache=cache)[0]
    assert b"} 1.0" in first and b"} 3.0" in second and b"} 1.0" not in second


def test_job_results_cannot_be_changed() -> None:
    r = result("icmp/a", [])
    try:
        r.success = False  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("a stored result was changed")
    assert r.success is True


def test_probe_gauges_of_every_kind_render_as_their_samples() -> None:
    from collectors.probes.common import ProbeGauge, result_metrics

    for kind in ("tcp", "http", "dns"):
        token = current_probe.set(kind)
        try:
            fams = result_metrics(True, 0.0123, lookup=0.0, family=socket.AF_INET, ip="127.0.0.1")
        finally:
            current_probe.reset(token)
        assert all(isinstance(f, ProbeGauge) for f in fams)
        shaped = [result(f"{kind}/{i}", fams, target=f"t{i}") for i in range(3)]
        walked = [result(f"{kind}/{i}", [plain(f) for f in fams], target=f"t{i}") for i in range(3)]
        text = render_text(shaped, [], 200)
        assert text == render_text(walked, [], 200)
        assert f'probe_success{{probe="{kind}",site="xa-1",target="t2"}} 1.0'.encode() in text[0]


def test_a_secret_registered_later_is_masked_in_a_spelled_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from agent.kernel import redact as redact_module
    from agent.kernel.redact import MASK, register_secret

    monkeypatch.setattr(redact_module, "_forms", set())
    monkeypatch.setattr(redact_module, "_secret_pattern", None)
    monkeypatch.setattr(redact_module, "_pattern", re.compile(redact_module._SCHEME))
    shape = FamilyShape("a label that turns out to be secret")
    first = render_text([result("icmp/a", [_Pair(1.0, 2.0, shape, {"side": "s3cret-label-x"})])], [], 200)[0]
    assert b"s3cret-label-x" in first
    register_secret("s3cret-label-x")
    again = render_text([result("icmp/a", [_Pair(1.0, 2.0, shape, {"side": "s3cret-label-x"})])], [], 200)[0]
    assert b"s3cret-label-x" not in again and MASK.encode() in again
