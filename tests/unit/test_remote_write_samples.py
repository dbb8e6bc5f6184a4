"""Job results flattened into remote-write samples, and the sender's self metrics."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from pydantic import ValidationError

from agent.kernel.results import JobResult
from exporters.remote_write import RemoteWriter, RemoteWriteSet, samples_from_result
from exporters.remote_write_settings import RemoteWriteSettings


def result(families: list[Metric]) -> JobResult:
    return JobResult(
        job_id="snmp/sw1",
        kind="snmp",
        target="sw1",
        site="xa-01",
        families=tuple(families),
        timestamp=1_700_000_000.25,
        duration=0.1,
        success=True,
    )


def test_families_flatten_like_the_exposition() -> None:
    c = CounterMetricFamily("ifHCInOctets", "in", labels=["ifIndex"], created=1.0)
    c.add_metric(["1"], 10.0, created=1.0)
    g = GaugeMetricFamily("probe_success", "ok", value=1.0)
    i = InfoMetricFamily("giamsat_build", "build", value={"version": "1"})
    h = HistogramMetricFamily(
        "probe_dns_seconds", "dur", buckets=[("0.1", 1.0), ("+Inf", 2.0)], sum_value=0.3
    )
    got = samples_from_result(result([c, g, i, h]), {"agent": "a1", "site": "ignored"})
    names = [labels["__name__"] for labels, _, _ in got]
    assert names == [
        "ifHCInOctets_total",
        "probe_success",
        "giamsat_build_info",
        "probe_dns_seconds_bucket",
        "probe_dns_seconds_bucket",
        "probe_dns_seconds_count",
        "probe_dns_seconds_sum",
    ]
    labels, value, ts = got[0]
    assert labels == {
        "__name__": "ifHCInOctets_total",
        "ifIndex": "1",
        "site": "xa-01",
        "target": "sw1",
        "agent": "a1",
    }
    assert (value, ts) == (10.0, 1_700_000_000_250)
    assert got[3][0]["le"] == "0.1"


def test_collector_labels_win_over_added_ones() -> None:
    g = GaugeMetricFamily("x", "x", labels=["target"])
    g.add_metric(["other"], 1.0)
    ((labels, _, _),) = samples_from_result(result([g]))
    assert labels["target"] == "other" and labels["site"] == "xa-01"


def test_settings_reject_bad_combinations() -> None:
    with pytest.raises(ValidationError):
        RemoteWriteSettings.model_validate({"name": "a", "url": "ftp://x"})
    with pytest.raises(ValidationError):
        RemoteWriteSettings.model_validate(
            {
                "name": "a",
                "url": "http://x",
                "bearer_token": "t",
                "basic_auth": {"username": "u", "password": "p"},
            }
        )
    with pytest.raises(ValidationError):
        RemoteWriteSettings.model_validate({"name": "a", "url": "http://x", "external_labels": {"__x": "1"}})
    with pytest.raises(ValidationError):
        RemoteWriteSettings.model_validate({"name": "a", "url": "http://x", "unknown": 1})
    s = RemoteWriteSettings.model_validate(
        {"name": "a", "url": "http://x", "bearer_token": "s3cr3t-value", "buffer": {"max_size": "64MiB"}}
    )
    assert "s3cr3t" not in repr(s) and int(s.buffer.max_size) == 64 << 20


def test_self_metrics_of_two_receivers_pass_promtool_and_keep_the_invariant(tmp_path: Path) -> None:
    rws = RemoteWriteSet(
        [
            RemoteWriteSettings.model_validate({"name": n, "url": "http://127.0.0.1:1/api/v1/write"})
            for n in ("central", "backup")
        ],
        tmp_path,
    )
    g = GaugeMetricFamily("m", "m", labels=["series"])
    for j in range(5):
        g.add_metric([str(j)], 1.0)

    async def run() -> bytes:
        await rws.start()
        rws.on_result(result([g]))

        class C:
            def collect(self) -> list[Metric]:
                return rws.collect()

        reg = CollectorRegistry()
        reg.register(C())
        text = generate_latest(reg)
        for remote in ("central", "backup"):
            lab = {"remote": remote}
            appended = reg.get_sample_value("giamsat_remote_write_samples_appended_total", lab)
            sent = reg.get_sample_value("giamsat_remote_write_samples_sent_total", lab) or 0
            pending = reg.get_sample_value("giamsat_remote_write_samples_pending", lab) or 0
            dropped = sum(
                smp.value
                for m in reg.collect()
                if m.name == "giamsat_remote_write_samples_dropped"
                for smp in m.samples
                if smp.labels["remote"] == remote and smp.name.endswith("_total")
            )
            assert appended == 5 and appended == sent + dropped + pending
        await rws.close()
        return text

    text = asyncio.run(run())
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_example_config_validates() -> None:
    doc = yaml.safe_load((Path(__file__).parents[2] / "config" / "remote_write.example.yml").read_text())
    for entry in doc["remote_write"]:
        entry["basic_auth"] = {"username": entry["basic_auth"]["username"], "password": "x"}
        RemoteWriteSettings.model_validate(entry)


def test_a_series_twice_in_one_result_is_sent_once_and_odd_text_is_encodable(tmp_path: Path) -> None:
    settings = RemoteWriteSettings.model_validate({"name": "c", "url": "http://127.0.0.1:1/api/v1/write"})

    async def run() -> tuple[int, int]:
        w = RemoteWriter(settings, tmp_path)
        await w.start()
        n = w.append(
            [
                ({"__name__": "m", "a": "1"}, 1.0, 1000),
                ({"__name__": "m", "a": "1"}, 2.0, 1000),
                ({"__name__": "m", "a": "bad\udcff"}, 3.0, 1000),
            ]
        )
        batch = w.buffer.next_batch(w.buffer.live, 10)
        await w.close()
        assert batch is not None
        return n, batch.n_samples

    assert asyncio.run(run()) == (2, 2)
