"""Pure parts of the probes: ICMP error classification, checksum, failure reason, config validation,
and the cumulative RTT histogram."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.kernel.collector import BlockingRunner, CollectorContext
from collectors.probes.common import current_probe
from collectors.probes.dns import DnsTarget
from collectors.probes.http import HttpTarget
from collectors.probes.icmp import IcmpCollector, IcmpSettings, IcmpTarget, failure_reason
from collectors.probes.icmp_engine import REASONS, EchoResult, checksum, icmp_reason
from collectors.probes.tcp import TcpTarget


@pytest.mark.parametrize(
    ("family", "itype", "code", "reason"),
    [
        (socket.AF_INET, 3, 0, "net_unreachable"),
        (socket.AF_INET, 3, 1, "host_unreachable"),
        (socket.AF_INET, 3, 3, "port_unreachable"),
        (socket.AF_INET, 3, 4, "frag_needed"),
        (socket.AF_INET, 3, 13, "admin_prohibited"),
        (socket.AF_INET, 3, 15, "unreachable"),
        (socket.AF_INET, 11, 0, "ttl_exceeded"),
        (socket.AF_INET, 0, 0, None),
        (socket.AF_INET6, 1, 0, "net_unreachable"),
        (socket.AF_INET6, 1, 1, "admin_prohibited"),
        (socket.AF_INET6, 1, 3, "host_unreachable"),
        (socket.AF_INET6, 2, 0, "frag_needed"),
        (socket.AF_INET6, 3, 0, "ttl_exceeded"),
        (socket.AF_INET6, 129, 0, None),
    ],
)
def test_icmp_errors_map_to_bounded_reasons(family: int, itype: int, code: int, reason: str | None) -> None:
    assert icmp_reason(family, itype, code) == reason
    assert reason is None or reason in REASONS


def test_checksum_matches_rfc1071_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement: 220d)
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert checksum(b"\x01") == ~0x0100 & 0xFFFF  # odd length is padded with a zero byte


def test_failure_reason_prefers_the_most_frequent_icmp_error() -> None:
    assert failure_reason(EchoResult(sent=3)) == "timeout"
    assert failure_reason(EchoResult(sent=3, errors={"ttl_exceeded": 1, "host_unreachable": 2})) == (
        "host_unreachable"
    )


def test_target_models_reject_what_would_misbehave() -> None:
    with pytest.raises(ValidationError, match="more than timeout"):
        IcmpTarget(name="x", site="s", address="198.18.30.2", count=5, packet_interval=1, timeout=3)
    with pytest.raises(ValidationError):
        IcmpTarget(name="x", site="s", address="198.18.30.2", bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="http:// or https://"):
        HttpTarget(name="x", site="s", url="ftp://example.invalid/")
    with pytest.raises(ValidationError):
        HttpTarget(name="x", site="s", url="http://127.0.0.1/", fail_if_body_matches_regexp=["("])
    with pytest.raises(ValidationError):
        TcpTarget(name="x", site="s", address="127.0.0.1", port=70000)
    with pytest.raises(ValidationError):
        DnsTarget(name="x", site="s", server="127.0.0.1", query_name="a.test", query_type="NOPE")
    assert DnsTarget(
        name="x", site="s", server="127.0.0.1", query_name="a.test", valid_rcodes=["nxdomain"]
    ).valid_rcodes == ["NXDOMAIN"]
    with pytest.raises(ValidationError, match="strictly increasing"):
        IcmpSettings(histogram_buckets=[0.1, 0.05])


def test_rtt_histogram_is_cumulative_per_target(tmp_path: Path) -> None:
    settings = IcmpSettings(histogram_buckets=[0.001, 0.01, 0.1])
    ctx = CollectorContext("icmp", tmp_path, BlockingRunner("t", 1), logging.getLogger("t"))
    col = IcmpCollector(settings, ctx)
    current_probe.set("icmp")
    col._histogram("a", [0.0005, 0.005])
    fam = col._histogram("a", [0.05, 0.5, 0.001])
    other = col._histogram("b", [0.0005])
    got = {(s.name, s.labels.get("le")): s.value for s in fam.samples}
    assert got[("probe_icmp_response_duration_seconds_bucket", "0.001")] == 2  # 0.0005 and 0.001 (le)
    assert got[("probe_icmp_response_duration_seconds_bucket", "0.01")] == 3
    assert got[("probe_icmp_response_duration_seconds_bucket", "0.1")] == 4
    assert got[("probe_icmp_response_duration_seconds_bucket", "+Inf")] == 5
    assert got[("probe_icmp_response_duration_seconds_count", None)] == 5
    assert got[("probe_icmp_response_duration_seconds_sum", None)] == pytest.approx(0.5565)
    assert all(s.labels["probe"] == "icmp" for s in fam.samples)
    assert {s.name: s.value for s in other.samples}["probe_icmp_response_duration_seconds_count"] == 1
    # built without Sample's constructor for speed, yet whole samples: every field there, repr works
    from prometheus_client.samples import Sample

    for s in fam.samples:
        assert len(s) == len(Sample._fields) and s.timestamp is None and s.exemplar is None
        assert repr(s).startswith("Sample(")


def test_the_example_probe_config_is_valid() -> None:
    from agent.config import load_config

    loaded = load_config(Path(__file__).resolve().parents[2] / "config" / "probes.example.yml")
    kinds = {k: len(loaded.config.targets_of(k)) for k in ("icmp", "tcp", "http", "dns")}
    assert kinds == {"icmp": 3, "tcp": 2, "http": 1, "dns": 1}


def test_site_links_shorthand_expands_to_ordinary_targets() -> None:
    from collectors.probes.links import LinkConfig, expand_links

    links = [
        LinkConfig(
            name="wan", address="198.18.31.2", probes=["icmp", "tcp:22", "https:8443"], icmp={"count": 5}
        ),
        LinkConfig(name="backup", address="::1"),
    ]
    got = expand_links("xa-1", links)
    assert got["icmp"] == [
        {"count": 5, "name": "xa-1/wan", "site": "xa-1", "address": "198.18.31.2"},
        {"name": "xa-1/backup", "site": "xa-1", "address": "::1"},
    ]
    assert got["tcp"] == [{"name": "xa-1/wan:22", "site": "xa-1", "address": "198.18.31.2", "port": 22}]
    assert got["http"] == [{"name": "xa-1/wan:8443", "site": "xa-1", "url": "https://198.18.31.2:8443/"}]
    # and the generated dicts are valid targets
    IcmpTarget.model_validate(got["icmp"][0])
    TcpTarget.model_validate(got["tcp"][0])
    HttpTarget.model_validate(got["http"][0])
    for bad in (["tcp"], ["ftp:21"], ["icmp", "icmp"], ["tcp:70000"]):
        with pytest.raises(ValidationError):
            LinkConfig(name="wan", address="198.18.31.2", probes=bad)


def test_histogram_buckets_as_a_list_a_range_or_off(tmp_path: Path) -> None:
    from collectors.probes.icmp import DEFAULT_BUCKETS

    assert IcmpSettings().bucket_bounds() == DEFAULT_BUCKETS
    ranged = IcmpSettings.model_validate({"histogram_buckets": {"min": "1ms", "max": "4.096s", "count": 13}})
    assert ranged.bucket_bounds() == DEFAULT_BUCKETS
    assert IcmpSettings.model_validate(
        {"histogram_buckets": {"min": "1ms", "max": "1s", "count": 4}}
    ).bucket_bounds() == [
        0.001,
        0.01,
        0.1,
        1.0,
    ]
    with pytest.raises(ValidationError, match="max must be above min"):
        IcmpSettings.model_validate({"histogram_buckets": {"min": "1s", "max": "1ms", "count": 4}})
    with pytest.raises(ValidationError):
        IcmpSettings.model_validate({"histogram_buckets": {"min": "1ms", "max": "1s", "count": 4, "x": 1}})
    ctx = CollectorContext("icmp", tmp_path, BlockingRunner("t", 1), logging.getLogger("t"))
    off: bool | list[float]
    for off in (False, []):
        col = IcmpCollector(IcmpSettings.model_validate({"histogram_buckets": off}), ctx)
        current_probe.set("icmp")
        fams = col._metrics(
            "a", EchoResult(3, [0.01, 0.02], {}, 64), 0.2, 0.0, socket.AF_INET, "127.0.0.1", 0.0
        )
        assert "probe_icmp_response_duration_seconds" not in {f.name for f in fams}
        assert "probe_icmp_rtt_avg_seconds" in {f.name for f in fams}
        assert col.max_series() == IcmpCollector(IcmpSettings(), ctx).max_series() - len(DEFAULT_BUCKETS) - 3
