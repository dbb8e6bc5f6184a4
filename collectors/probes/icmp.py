"""ICMP echo probe (IPv4 and IPv6): loss, round-trip times and ICMP errors of district and commune links.

All targets share one ``IcmpEngine`` (one socket per address family), so thousands of targets cost one
event-loop reader, not thousands of sockets. Besides blackbox_exporter's ``probe_*`` names it reports what
a link needs: RTT min/avg/max/stddev, packets sent/received, loss ratio, and a cumulative RTT histogram
per target (as smokeping_prober does) for Grafana latency heatmaps.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from pydantic import Field, model_validator

from agent.model import Duration
from collectors.base import CollectorSettings, TargetConfig, time_left
from collectors.probes.common import (
    ProbeCollector,
    ProbeTarget,
    ResolveError,
    add,
    family,
    gauge,
    probe_labels,
    resolve,
    result_metrics,
)
from collectors.probes.icmp_engine import EchoResult, IcmpEngine

#: smokeping_prober's default buckets: 50 µs doubling to ~26 s.
DEFAULT_BUCKETS = [0.00005 * 2**i for i in range(20)]


class IcmpSettings(CollectorSettings):
    """``collectors.icmp``: how the shared sockets are opened and paced."""

    socket_mode: Literal["auto", "dgram", "raw"] = Field(
        default="auto",
        description="dgram: unprivileged ping sockets (net.ipv4.ping_group_range); raw: CAP_NET_RAW; "
        "auto tries dgram first",
    )
    max_packets_per_second: float = Field(
        default=0.0, ge=0, description="cap on echoes sent per second across all targets (0: no cap)"
    )
    histogram_buckets: list[float] = Field(default_factory=lambda: list(DEFAULT_BUCKETS), min_length=1)

    @model_validator(mode="after")
    def _sorted_buckets(self) -> IcmpSettings:
        if any(b <= 0 for b in self.histogram_buckets) or sorted(set(self.histogram_buckets)) != list(
            self.histogram_buckets
        ):
            raise ValueError("histogram_buckets must be positive and strictly increasing")
        return self


class IcmpTarget(ProbeTarget):
    """``targets.icmp[]``: one link to ping."""

    address: str = Field(min_length=1, description="IP address or host name")
    count: int = Field(default=3, ge=1, le=1000, description="echo requests per probe")
    packet_interval: Duration = Field(default=1.0, description="time between the echoes of one probe")
    packet_timeout: Duration = Field(
        default=2.0, description="how long to wait for replies after the last echo"
    )
    payload_size: int = Field(
        default=56, ge=0, le=65000, description="ICMP payload bytes (56 = ping's default)"
    )
    dont_fragment: bool = Field(default=False, description="set DF (IPv4) / forbid fragmentation (IPv6)")
    ttl: int | None = Field(default=None, ge=1, le=255, description="IP TTL / hop limit of the echoes")

    @model_validator(mode="after")
    def _fits_timeout(self) -> IcmpTarget:
        needed = (self.count - 1) * self.packet_interval + self.packet_timeout
        if self.timeout is not None and needed >= self.timeout:
            raise ValueError(
                f"count, packet_interval and packet_timeout need {needed:g}s, more than timeout {self.timeout:g}s"
            )
        return self


@dataclass
class _Histogram:
    buckets: list[int]
    total: float = 0.0
    count: int = 0


class IcmpCollector(ProbeCollector):
    kind = "icmp"
    settings_model = IcmpSettings
    target_model = IcmpTarget

    def __init__(self, settings: CollectorSettings, ctx: object) -> None:
        super().__init__(settings, ctx)  # type: ignore[arg-type]
        self.engine: IcmpEngine | None = None
        self._hist: dict[str, _Histogram] = {}
        assert isinstance(settings, IcmpSettings)
        self._bounds = list(settings.histogram_buckets)
        self._le = [*(_fmt(b) for b in self._bounds), "+Inf"]
        self._le_labels: dict[str, list[dict[str, str]]] = {}

    async def start(self) -> None:
        s = self.settings
        assert isinstance(s, IcmpSettings)
        engine = IcmpEngine(s.socket_mode, s.max_packets_per_second)
        await engine.start()
        self.engine = engine
        self.ctx.log.info("ICMP sockets open", extra={"mode": engine.mode})

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()
            self.engine = None

    async def probe(self, target: TargetConfig | None) -> list[Metric]:
        assert isinstance(target, IcmpTarget) and self.engine is not None
        start = time.perf_counter()
        try:
            ip, family, lookup = await resolve(target.address, target.ip_protocol)
        except ResolveError:
            return result_metrics(False, time.perf_counter() - start, "resolve")
        # Shrink the reply window if the job's deadline is nearer, so the result is still reported.
        sending = (target.count - 1) * target.packet_interval
        window = min(target.packet_timeout, time_left(target.packet_timeout + sending, 0.2) - sending)
        result = await self.engine.ping(
            ip,
            count=target.count,
            interval=target.packet_interval,
            timeout=max(0.05, window),
            payload_size=target.payload_size,
            dont_fragment=target.dont_fragment,
            ttl=target.ttl,
        )
        duration = time.perf_counter() - start
        success = result.received > 0
        reason = "" if success else failure_reason(result)
        return [
            *result_metrics(success, duration, reason, lookup=lookup, family=family),
            *self._icmp_metrics(target.name, result, lookup),
        ]

    def _icmp_metrics(self, name: str, r: EchoResult, lookup: float) -> list[Metric]:
        out: list[Metric] = []
        phases = gauge("probe_icmp_duration_seconds", "Duration of icmp request by phase")
        add(phases, lookup, phase="resolve")
        rtts = r.rtts
        avg = sum(rtts) / len(rtts) if rtts else 0.0
        add(phases, avg, phase="rtt")
        out.append(phases)
        out.append(gauge("probe_icmp_packets_sent", "Echo requests sent by this probe", r.sent))
        out.append(gauge("probe_icmp_packets_received", "Echo replies received by this probe", r.received))
        loss = 1.0 - r.received / r.sent if r.sent else 1.0
        out.append(gauge("probe_icmp_packet_loss_ratio", "Share of echo requests without a reply", loss))
        if rtts:
            stddev = math.sqrt(sum((x - avg) ** 2 for x in rtts) / len(rtts))
            out.append(
                gauge("probe_icmp_rtt_min_seconds", "Smallest round-trip time of this probe", min(rtts))
            )
            out.append(gauge("probe_icmp_rtt_avg_seconds", "Mean round-trip time of this probe", avg))
            out.append(
                gauge("probe_icmp_rtt_max_seconds", "Largest round-trip time of this probe", max(rtts))
            )
            out.append(
                gauge(
                    "probe_icmp_rtt_stddev_seconds",
                    "Standard deviation of the round-trip times of this probe (jitter)",
                    stddev,
                )
            )
        if r.hop_limit is not None:
            out.append(
                gauge("probe_icmp_reply_hop_limit", "Replied packet hop limit (TTL for ipv4)", r.hop_limit)
            )
        if r.errors:
            errs = gauge("probe_icmp_errors", "ICMP errors received for this probe's echoes, by reason")
            for reason, n in sorted(r.errors.items()):
                add(errs, n, reason=reason)
            out.append(errs)
        out.append(self._histogram(name, rtts))
        return out

    def _histogram(self, name: str, rtts: list[float]) -> Metric:
        bounds = self._bounds
        h = self._hist.get(name)
        if h is None:
            h = self._hist[name] = _Histogram([0] * (len(bounds) + 1))
        for x in rtts:
            h.buckets[bisect.bisect_left(bounds, x)] += 1  # le: x <= bound; the last slot is +Inf
            h.total += x
            h.count += 1
        base = "probe_icmp_response_duration_seconds"
        fam = family(
            base,
            "Round-trip times of every echo reply since the agent started (for latency heatmaps)",
            "histogram",
        )
        probe = probe_labels()
        le_labels = self._le_labels.get(probe["probe"])
        if le_labels is None:
            le_labels = self._le_labels[probe["probe"]] = [{"le": le, **probe} for le in self._le]
        bucket = base + "_bucket"
        running = 0
        samples = fam.samples
        for labels, n in zip(le_labels, h.buckets, strict=True):
            running += n
            samples.append(Sample(bucket, labels, float(running)))
        samples.append(Sample(base + "_count", probe, float(h.count)))
        samples.append(Sample(base + "_sum", probe, h.total))
        return fam


def _fmt(b: float) -> str:
    return repr(float(f"{b:.9g}"))


def failure_reason(r: EchoResult) -> str:
    """Why a probe with no reply failed: the most frequent ICMP error, else ``timeout``."""
    if r.errors:
        return max(sorted(r.errors), key=lambda k: r.errors[k])
    return "timeout"
