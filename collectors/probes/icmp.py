"""ICMP echo probe (IPv4 and IPv6): loss, round-trip times and ICMP errors of district and commune links.

All targets share one ``IcmpEngine`` (one socket per address family), so thousands of targets cost one
event-loop reader, not thousands of sockets. Besides blackbox_exporter's ``probe_*`` names it reports what
a link needs: RTT min/avg/max/stddev, packets sent/received, loss ratio, and a cumulative RTT histogram
per target (as smokeping_prober does) for Grafana latency heatmaps.
"""

from __future__ import annotations

import asyncio
import bisect
import ipaddress
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from typing import Literal, cast

from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from pydantic import Field, model_validator

from agent.kernel.collector import (
    FAIL,
    PASS,
    WARN,
    CollectorContext,
    CollectorSettings,
    Deadline,
    DoctorCheck,
    TargetConfig,
)
from agent.kernel.families import FamilyShape, ShapedFamily
from agent.kernel.model import Duration, Model
from agent.kernel.results import LINK_UP, LinkStatus
from collectors.probes.common import (
    ProbeCollector,
    ProbeTarget,
    ResolveError,
    current_probe,
    ip_hash,
    resolve,
    resolve_failed,
)
from collectors.probes.common import (
    family as new_family,
)
from collectors.probes.icmp_engine import REASONS, EchoResult, IcmpEngine
from collectors.probes.links import LINKS

#: A target is reported down only after this many echoes in a row were lost: at 20 % independent loss
#: per echo a working link is then declared down with a chance of 0.2**9 = 5e-7 per round.
CONFIRM_ECHOES = 9
#: Spacing of the confirmation burst's echoes (CONFIRM_ECHOES less the round's own: 6 after a default
#: round of 3, sent over 1.0 s).
CONFIRM_INTERVAL = 0.2
#: The closest spacing the burst is squeezed to when the round left little of the timeout: a burst
#: sent closer together still confirms, where no burst would report the target down on one round.
CONFIRM_MIN_INTERVAL = 0.01
#: The shortest wait for the burst's replies; with less time left the round's result is reported.
CONFIRM_MIN_WINDOW = 0.05

#: 1 ms doubling to ~4 s (13 buckets): what the shipped latency heatmap (site detail dashboard) needs
#: for district and commune links, up to the longest RTT a default probe can see ((count - 1) x
#: packet_interval + packet_timeout = 4 s). Each bucket is a series per target: smokeping_prober's
#: 20 (50 µs to ~26 s) made the histogram 22 of a target's 37 series.
DEFAULT_BUCKETS = [0.001 * 2**i for i in range(13)]


class BucketRange(Model):
    """``histogram_buckets: {min: 1ms, max: 4s, count: 13}``: ``count`` bounds from ``min`` to ``max``,
    each the same factor above the one before."""

    min: Duration = Field(gt=0, description="the first bucket's upper bound")
    max: Duration = Field(gt=0, description="the last bucket's upper bound (above it: +Inf only)")
    count: int = Field(ge=1, le=100, description="how many buckets, +Inf not counted")

    @model_validator(mode="after")
    def _ordered(self) -> BucketRange:
        if self.max < self.min or (self.count > 1 and self.max == self.min):
            raise ValueError("max must be above min")
        return self

    def bounds(self) -> list[float]:
        if self.count == 1:
            return [self.min]
        factor = (self.max / self.min) ** (1 / (self.count - 1))
        return [float(f"{self.min * factor**i:.6g}") for i in range(self.count - 1)] + [self.max]


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
    histogram_buckets: list[float] | BucketRange | Literal[False] = Field(
        default_factory=lambda: list(DEFAULT_BUCKETS),
        description="bounds of the per-target RTT histogram (probe_icmp_response_duration_seconds): a "
        "list, {min, max, count}, or false (or []) for no histogram; each bucket is a series per target",
    )
    confirm_echoes: int = Field(
        default=CONFIRM_ECHOES,
        ge=0,
        le=100,
        description="echoes that must all be lost before a target is reported down: a round that lost "
        "all of its own is followed at once by a burst of the rest (0: no confirmation)",
    )

    @model_validator(mode="after")
    def _sorted_buckets(self) -> IcmpSettings:
        b = self.bucket_bounds()
        if any(x <= 0 for x in b) or sorted(set(b)) != b:
            raise ValueError("histogram_buckets must be positive and strictly increasing")
        return self

    def bucket_bounds(self) -> list[float]:
        """The histogram's upper bounds (+Inf not included); empty: no histogram."""
        buckets = self.histogram_buckets
        if buckets is False:
            return []
        if isinstance(buckets, BucketRange):
            return buckets.bounds()
        return list(buckets)


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
class _RttCounts:
    """A target's RTT histogram state since the agent started."""

    buckets: list[float]  # per bucket, not cumulative; the last one is +Inf
    total: float = 0.0
    count: float = 0.0
    family: Metric | None = None  # the latest family, reused while no reply comes in


#: What must be equal for targets to share one ``IcmpEngine.ping_many`` call.
_GroupKey = tuple[int, float, float, int, bool, "int | None"]

_PROBE = {"probe": "icmp"}
_RESOLVE_LABELS = {"phase": "resolve", "probe": "icmp"}
_SETUP_LABELS = {"phase": "setup", "probe": "icmp"}
_RTT_LABELS = {"phase": "rtt", "probe": "icmp"}
_HISTOGRAM = "probe_icmp_response_duration_seconds"
_new_tuple = tuple.__new__
#: Sample's fields after (name, labels, value), all None here: timestamp, exemplar and, in newer
#: prometheus_client releases, native_histogram (a Sample built short breaks repr() and field access).
_TAIL = (None,) * (len(Sample._fields) - 3)


# -- compact result families ---------------------------------------------------------------------------
#
# Every family a collector returns lives in the store for a whole interval. With thousands of targets,
# the cyclic garbage collector's passes over those long-lived objects cost more than the probing itself
# (bench/icmp.py: ~0.4 s per round at 10 000 targets). A plain family is three or more tracked objects
# (family, sample list, samples); these keep only their values and build the sample list when a reader
# asks for ``samples`` (a renderer, once per result: the exposition is cached on the result). Results
# are never mutated once stored, so a family whose value is the same for every target and round
# (``probe_success 1``) is one shared object.


class _Value(ShapedFamily):
    """A gauge family with one sample labelled ``probe="icmp"``; name and help are class attributes (each
    subclass is its own shape)."""

    __slots__ = ("value",)
    type = "gauge"
    unit = ""

    def __init__(self, value: float) -> None:  # no Metric.__init__: nothing to validate per result
        self.value = value

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        return [_new_tuple(Sample, (self.name, _PROBE, self.value, *_TAIL))]

    def sample_values(self) -> tuple[float]:
        return (self.value,)


def _value_family(name: str, doc: str) -> type[_Value]:
    return type(f"{name}_family", (_Value,), {"__slots__": (), "name": name, "documentation": doc})


_Success = _value_family("probe_success", "Displays whether or not the probe was a success")
_Duration = _value_family("probe_duration_seconds", "Returns how long the probe took to complete in seconds")
_Lookup = _value_family(
    "probe_dns_lookup_time_seconds", "Returns the time taken for probe dns lookup in seconds"
)
_IpProtocol = _value_family("probe_ip_protocol", "Specifies whether probe ip protocol is IP4 or IP6")
_Sent = _value_family("probe_icmp_packets_sent", "Echo requests sent by this probe")
_Received = _value_family("probe_icmp_packets_received", "Echo replies received by this probe")
_Loss = _value_family("probe_icmp_packet_loss_ratio", "Share of echo requests without a reply")
_RttMin = _value_family("probe_icmp_rtt_min_seconds", "Smallest round-trip time of this probe")
_RttAvg = _value_family("probe_icmp_rtt_avg_seconds", "Mean round-trip time of this probe")
_RttMax = _value_family("probe_icmp_rtt_max_seconds", "Largest round-trip time of this probe")
_RttStddev = _value_family(
    "probe_icmp_rtt_stddev_seconds", "Standard deviation of the round-trip times of this probe (jitter)"
)
_HopLimit = _value_family("probe_icmp_reply_hop_limit", "Replied packet hop limit (TTL for ipv4)")
_IpHash = _value_family(
    "probe_ip_addr_hash", "Specifies the hash of IP address. It's useful to detect if the IP address changes."
)

_SHARED_MAX = 4096
_HASHES_MAX = 65536
_shared: dict[tuple[type[_Value], float], _Value] = {}
_NO_LOOKUP = _Lookup(0.0)  # an IP literal: nothing was looked up


def _shared_value(cls: type[_Value], value: float) -> _Value:
    """One object per (family, value) for the small discrete values many results have in common."""
    key = (cls, value)
    fam = _shared.get(key)
    if fam is None:
        fam = cls(value)
        if len(_shared) < _SHARED_MAX:
            _shared[key] = fam
    return fam


def _shared_families(
    received: int, sent: int, hop_limit: int | None, family: int
) -> tuple[_Value, _Value, _Value, _Value, _Value, _Value | None]:
    """The families a result's counts decide: success, ip protocol, sent, received, loss, hop limit."""
    return (
        _shared_value(_Success, 1.0 if received else 0.0),
        _shared_value(_IpProtocol, 6.0 if family == socket.AF_INET6 else 4.0),
        _shared_value(_Sent, float(sent)),
        _shared_value(_Received, float(received)),
        _shared_value(_Loss, 1.0 - received / sent if sent else 1.0),
        None if hop_limit is None else _shared_value(_HopLimit, float(hop_limit)),
    )


class _Phases(ShapedFamily):
    """``probe_icmp_duration_seconds{phase}``: resolve, setup (from the end of resolution to the echoes
    being handed to the shared engine: its sockets are opened once, at start) and rtt."""

    __slots__ = ("resolve", "rtt", "setup")
    name = "probe_icmp_duration_seconds"
    documentation = "Duration of icmp request by phase"
    type = "gauge"
    unit = ""

    def __init__(self, resolve: float, setup: float, rtt: float) -> None:
        self.resolve, self.setup, self.rtt = resolve, setup, rtt

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        return [
            _new_tuple(Sample, (self.name, _RESOLVE_LABELS, self.resolve, *_TAIL)),
            _new_tuple(Sample, (self.name, _SETUP_LABELS, self.setup, *_TAIL)),
            _new_tuple(Sample, (self.name, _RTT_LABELS, self.rtt, *_TAIL)),
        ]

    def sample_values(self) -> tuple[float, float, float]:
        return (self.resolve, self.setup, self.rtt)


class _RttHistogram(ShapedFamily):
    """The cumulative RTT histogram of one target (smokeping_prober style), as of one round; its shape
    is the collector's (its buckets)."""

    __slots__ = ("bucket_labels", "buckets", "count", "shape", "total")
    name = _HISTOGRAM
    documentation = "Round-trip times of every echo reply since the agent started (for latency heatmaps)"
    type = "histogram"
    unit = ""

    def __init__(
        self,
        shape: FamilyShape,
        bucket_labels: list[dict[str, str]],
        buckets: tuple[float, ...],
        count: float,
        total: float,
    ) -> None:
        # per-bucket counts (a snapshot: made cumulative when read, so a round allocates no floats)
        self.shape, self.bucket_labels, self.buckets = shape, bucket_labels, buckets
        self.count, self.total = count, total

    def sample_values(self) -> tuple[float, ...]:
        return (*accumulate(self.buckets), self.count, self.total)

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        # Cumulative buckets in one C-level pass: no Python frame per sample.
        out = list(
            map(
                _new_tuple,
                repeat(Sample),
                zip(
                    repeat(_HISTOGRAM + "_bucket"),
                    self.bucket_labels,
                    accumulate(self.buckets),
                    *[repeat(None)] * len(_TAIL),
                ),
            )
        )
        out.append(_new_tuple(Sample, (_HISTOGRAM + "_count", _PROBE, self.count, *_TAIL)))
        out.append(_new_tuple(Sample, (_HISTOGRAM + "_sum", _PROBE, self.total, *_TAIL)))
        return out


class _Group:
    """Targets with the same echo settings (one ``ping_many`` call) and what is known of their
    addresses: ``live``/``addrs``/``families`` for the literal ones, ``names`` (indexes) for those to
    resolve every round; None until prepared."""

    __slots__ = ("addrs", "families", "live", "names", "slots", "target_names", "targets")

    def __init__(self, targets: list[IcmpTarget], slots: list[int]) -> None:
        self.targets, self.slots = targets, slots
        self.target_names = [t.name for t in targets]
        self.live: list[int] | None = None
        self.addrs: list[str] | None = None
        self.families: list[int] | None = None
        self.names: list[int] = []


class IcmpCollector(ProbeCollector):
    """Probes run in batches: every target sharing an interval and timeout goes out in one
    ``ping_many`` per echo settings, and each target's result is reported as soon as it is complete."""

    kind = "icmp"
    settings_model = IcmpSettings
    target_model = IcmpTarget
    batched = True
    site_shorthand = LINKS
    confirm_failures = False  # confirmed within the run: a burst of further echoes (``_confirm``)

    def __init__(self, settings: CollectorSettings, ctx: CollectorContext) -> None:
        super().__init__(settings, ctx)
        self.engine: IcmpEngine | None = None
        self._hist: dict[str, _RttCounts] = {}
        assert isinstance(settings, IcmpSettings)
        self._bounds = settings.bucket_bounds()
        self._bucket_labels = [
            {"le": le, "probe": "icmp"} for le in (*(_fmt(b) for b in self._bounds), "+Inf")
        ]
        self._hist_shape = FamilyShape(f"icmp RTT histogram {self._bounds}")
        self._literals: dict[tuple[str, str, bool], tuple[str, int]] = {}
        #: each batch's targets (by identity) grouped by echo settings
        self._plans: dict[int, tuple[Sequence[TargetConfig], list[_Group]]] = {}
        self._hashes: dict[str, _Value] = {}  # address -> its probe_ip_addr_hash family
        self._reasons: dict[str, Metric] = {}
        # (received, sent, hop limit, address family) -> the families those decide (bounded like _shared)
        self._shared: dict[
            tuple[int, int, int | None, int], tuple[_Value, _Value, _Value, _Value, _Value, _Value | None]
        ] = {}

    def link_status(self, families: Sequence[Metric]) -> LinkStatus | None:
        # Thousands of results a round: a success is read off the compact family without building its
        # samples (``_metrics`` puts ``probe_success`` first); anything else the general way.
        first = families[0] if families else None
        if isinstance(first, _Success) and first.value == 1:
            return LINK_UP
        return super().link_status(families)

    @classmethod
    def check_targets(
        cls, settings: CollectorSettings, targets: Sequence[TargetConfig]
    ) -> list[tuple[int, str, str]]:
        """The echoes must fit in the timeout the target gets, wherever it comes from: its own, the
        collector's, ``agent.timeout``, each capped at the interval (the target's own is also checked
        by its model). ``settings`` carries the effective defaults (agent.config fills them in)."""
        problems: list[tuple[int, str, str]] = []
        for i, t in enumerate(targets):
            assert isinstance(t, IcmpTarget)
            needed = (t.count - 1) * t.packet_interval + t.packet_timeout
            timeout, source = (t.timeout, "timeout") if t.timeout is not None else (settings.timeout, "")
            interval = t.interval or settings.interval
            if timeout is None:
                continue
            if interval is not None and interval < timeout:
                timeout, source = interval, "interval (a run never outlasts its interval)"
            elif not source:
                source = "collectors.icmp.timeout or agent.timeout"
            if t.timeout is not None and source == "timeout":
                continue  # the target's own timeout: IcmpTarget reports it
            if needed >= timeout:
                problems.append(
                    (
                        i,
                        "timeout",
                        f"count, packet_interval and packet_timeout need {needed:g}s, which does not fit "
                        f"in the {timeout:g}s timeout this target gets from {source}; every probe would "
                        "time out",
                    )
                )
        return problems

    @classmethod
    def doctor_checks(cls, settings: CollectorSettings, targets: Sequence[TargetConfig]) -> list[DoctorCheck]:
        """Can this process send ICMP echo (a failure only when ICMP targets are configured)?"""
        return [check_icmp_permission(needed=bool(targets))]

    def max_series(self) -> int:
        # success, duration, lookup, ip protocol, ip hash, failure reason; 3 phases; sent, received, loss;
        # min/avg/max/stddev; hop limit; errors by reason; histogram buckets, +Inf, count and sum
        return 6 + 3 + 3 + 4 + 1 + len(REASONS) + (len(self._bounds) + 3 if self._bounds else 0)

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

    async def probe(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, IcmpTarget)
        out: list[Sequence[Metric] | BaseException] = []
        await self._probe_group(_Group([target], [0]), lambda _i, fams: out.append(fams), deadline)
        if isinstance(out[0], BaseException):
            raise out[0]
        return list(out[0])

    async def collect_batch(
        self,
        targets: Sequence[TargetConfig],
        report: Callable[[int, Sequence[Metric] | BaseException], None],
        deadline: Deadline,
    ) -> None:
        # A batch hands the same targets every round: they are grouped (and their literal addresses
        # looked up) once, not for every target and round.
        plan = self._plans.get(id(targets))
        if plan is None or plan[0] is not targets:
            groups: dict[_GroupKey, list[int]] = {}
            for i, t in enumerate(targets):
                assert isinstance(t, IcmpTarget)
                key = (t.count, t.packet_interval, t.packet_timeout, t.payload_size, t.dont_fragment, t.ttl)
                groups.setdefault(key, []).append(i)
            if len(self._plans) >= 64:  # batches of a replaced configuration
                self._plans.clear()
            plan = self._plans[id(targets)] = (
                targets,
                [_Group([cast(IcmpTarget, targets[i]) for i in idx], idx) for idx in groups.values()],
            )
        token = current_probe.set(self.kind)
        try:
            await asyncio.gather(*(self._probe_group(group, report, deadline) for group in plan[1]))
        finally:
            current_probe.reset(token)

    def _prepare(self, group: _Group) -> None:
        """Split a group into the targets whose address is a known literal (pinged as they are) and the
        ones to resolve first."""
        live: list[int] = []
        addrs: list[str] = []
        families: list[int] = []
        names: list[int] = []
        for i, t in enumerate(group.targets):
            hit = self._literals.get((t.address, t.ip_protocol, t.ip_protocol_fallback))
            if hit is None:
                names.append(i)
                continue
            live.append(i)
            addrs.append(hit[0])
            families.append(hit[1])
        group.live, group.addrs, group.families, group.names = live, addrs, families, names

    async def _probe_group(
        self,
        group: _Group,
        report: Callable[[int, Sequence[Metric] | BaseException], None],
        deadline: Deadline,
    ) -> None:
        """Probe targets with the same echo settings; ``report(slots[i], families)`` for ``targets[i]``
        as soon as it is done."""
        assert self.engine is not None
        start = time.perf_counter()
        targets, slots, target_names = group.targets, group.slots, group.target_names
        if group.live is None:
            self._prepare(group)
        assert group.live is not None and group.addrs is not None and group.families is not None
        live, addrs, families, names = group.live, group.addrs, group.families, group.names
        lookups = [0.0] * len(live)
        if names:
            live, addrs, families = list(live), list(addrs), list(families)  # the group's stay as they are
            resolved = await asyncio.gather(
                *(
                    resolve(
                        self.resolver,
                        targets[i].address,
                        targets[i].ip_protocol,
                        deadline.left(0.2),
                        targets[i].ip_protocol_fallback,
                    )
                    for i in names
                ),
                return_exceptions=True,
            )
            for i, r in zip(names, resolved, strict=True):
                if isinstance(r, ResolveError):
                    elapsed = time.perf_counter() - start
                    report(slots[i], [*resolve_failed(elapsed, elapsed), _Phases(elapsed, 0.0, 0.0)])
                elif isinstance(r, BaseException):
                    report(slots[i], r)
                else:
                    ip, family, lookup = r
                    if _is_literal(targets[i].address):  # nothing to look up next time
                        t = targets[i]
                        self._literals[(t.address, t.ip_protocol, t.ip_protocol_fallback)] = (ip, family)
                        group.live = None  # prepared again next round, with this literal known
                    live.append(i)
                    addrs.append(ip)
                    families.append(family)
                    lookups.append(lookup)
        if not live:
            return
        setup_start = time.perf_counter()
        t0 = targets[0]
        # Shrink the reply window if the job's deadline is nearer, so the result is still reported.
        sending = (t0.count - 1) * t0.packet_interval
        window = min(t0.packet_timeout, deadline.left(0.2) - sending)
        settings = self.settings
        assert isinstance(settings, IcmpSettings)
        burst = max(0, settings.confirm_echoes - t0.count)
        unconfirmed: list[tuple[int, EchoResult]] = []

        def done(j: int, result: EchoResult) -> None:
            if burst and not result.rtts:
                unconfirmed.append((j, result))  # every echo lost: confirmed (or not) below
                return
            report_one(j, result)

        def report_one(j: int, result: EchoResult) -> None:
            i = live[j]
            try:
                fams = self._metrics(
                    target_names[i],
                    result,
                    time.perf_counter() - start,
                    lookups[j],
                    families[j],
                    addrs[j],
                    setup,
                )
            except Exception as exc:  # a bug here must not lose the other targets' results
                report(slots[i], exc)
                return
            report(slots[i], fams)

        setup = time.perf_counter() - setup_start
        await self.engine.ping_many(
            addrs,
            count=t0.count,
            interval=t0.packet_interval,
            timeout=max(0.05, window),
            payload_size=t0.payload_size,
            dont_fragment=t0.dont_fragment,
            ttl=t0.ttl,
            on_result=done,
        )
        if unconfirmed:
            await self._confirm(
                t0, burst, [addrs[j] for j, _ in unconfirmed], unconfirmed, report_one, deadline
            )

    async def _confirm(
        self,
        t0: IcmpTarget,
        burst: int,
        addrs: list[str],
        first: list[tuple[int, EchoResult]],
        report_one: Callable[[int, EchoResult], None],
        deadline: Deadline,
    ) -> None:
        """A round that lost every echo is not yet an outage: send ``burst`` more echoes at once, quickly,
        to the targets that lost theirs. One reply and the link works (recovery needs no confirmation);
        the result a target reports counts the echoes of both."""
        assert self.engine is not None
        interval, window = confirm_schedule(burst, t0.packet_timeout, deadline.left(0.2))
        if window < CONFIRM_MIN_WINDOW:  # no time left before the deadline: report what the round saw
            for j, r in first:
                report_one(j, r)
            return

        def merged(k: int, second: EchoResult) -> None:
            j, r = first[k]
            errors = dict(r.errors)
            for reason, n in second.errors.items():
                errors[reason] = errors.get(reason, 0) + n
            hop = second.hop_limit if second.hop_limit is not None else r.hop_limit
            report_one(j, EchoResult(r.sent + second.sent, r.rtts + second.rtts, errors, hop))

        await self.engine.ping_many(
            addrs,
            count=burst,
            interval=interval,
            timeout=window,
            payload_size=t0.payload_size,
            dont_fragment=t0.dont_fragment,
            ttl=t0.ttl,
            on_result=merged,
        )

    def _metrics(
        self, name: str, r: EchoResult, duration: float, lookup: float, family: int, ip: str, setup: float
    ) -> tuple[Metric, ...]:
        """Every family of one target's result (blackbox names first, then the ICMP ones), as the tuple
        the result keeps (this runs for every target and round: nothing here is built twice)."""
        rtts = r.rtts
        n = len(rtts)
        hop = r.hop_limit
        key = (n, r.sent, hop, family)
        shared = self._shared.get(key)
        if shared is None:
            shared = _shared_families(*key)
            if len(self._shared) < _SHARED_MAX:
                self._shared[key] = shared
        success, proto, sent, received, loss, hop_limit = shared
        lookup_fam = _NO_LOOKUP if lookup == 0.0 else _Lookup(lookup)
        ip_hash_fam = self._hashes.get(ip)
        if ip_hash_fam is None:
            ip_hash_fam = _IpHash(ip_hash(ip))
            if len(self._hashes) < _HASHES_MAX:
                self._hashes[ip] = ip_hash_fam
        tail: tuple[Metric, ...] = () if hop_limit is None else (hop_limit,)
        if r.errors:
            # Built in the engine's reader callback, outside the batch's context: labels given here.
            errs = new_family("probe_icmp_errors", "ICMP errors received for this probe's echoes, by reason")
            for reason_, count in sorted(r.errors.items()):
                errs.samples.append(Sample(errs.name, {"reason": reason_, "probe": "icmp"}, float(count)))
            tail += (errs,)
        if self._bounds:
            tail += (self._histogram(name, rtts),)
        head = (success, _Duration(duration), lookup_fam, proto, ip_hash_fam)
        if n:
            avg = sum(rtts) / n
            # population standard deviation, in C: the distance to the mean over sqrt(n)
            stddev = math.dist(rtts, [avg] * n) / math.sqrt(n)
            return (
                *head,
                _Phases(lookup, setup, avg),
                sent,
                received,
                loss,
                _RttMin(min(rtts)),
                _RttAvg(avg),
                _RttMax(max(rtts)),
                _RttStddev(stddev),
                *tail,
            )
        reason = self._failure_reason(failure_reason(r))
        return (*head, reason, _Phases(lookup, setup, 0.0), sent, received, loss, *tail)

    def _failure_reason(self, reason: str) -> Metric:
        fam = self._reasons.get(reason)  # bounded: REASONS
        if fam is None:
            fam = self._reasons[reason] = new_family(
                "probe_failure_reason",
                "Why the probe failed, from a bounded set of reasons (1 while failing; absent on success)",
            )
            fam.samples.append(Sample(fam.name, {"reason": reason, "probe": "icmp"}, 1.0))
        return fam

    def _histogram(self, name: str, rtts: list[float]) -> Metric:
        bounds = self._bounds
        h = self._hist.get(name)
        if h is None:
            h = self._hist[name] = _RttCounts([0.0] * (len(bounds) + 1))
        if rtts or h.family is None:
            buckets, bisect_left = h.buckets, bisect.bisect_left
            for x in rtts:
                buckets[bisect_left(bounds, x)] += 1.0  # le: x <= bound; the last slot is +Inf
            h.total += sum(rtts)
            h.count += len(rtts)
            h.family = _RttHistogram(
                self._hist_shape, self._bucket_labels, tuple(h.buckets), h.count, h.total
            )
        return h.family


def _is_literal(address: str) -> bool:
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return True


def _fmt(b: float) -> str:
    return repr(float(f"{b:.9g}"))


def failure_reason(r: EchoResult) -> str:
    """Why a probe with no reply failed: the most frequent ICMP error, else ``timeout``."""
    if r.errors:
        return max(sorted(r.errors), key=lambda k: r.errors[k])
    return "timeout"


def confirm_schedule(burst: int, packet_timeout: float, left: float) -> tuple[float, float]:
    """Spacing of the confirmation burst's echoes and the wait for their replies, in ``left`` seconds.

    ``CONFIRM_INTERVAL`` apart while sending takes at most half of what is left; closer (down to
    ``CONFIRM_MIN_INTERVAL``) when the round used most of the timeout, so the other half stays for
    the replies. A window under ``CONFIRM_MIN_WINDOW`` means there is no time for a burst."""
    interval = CONFIRM_INTERVAL
    if burst > 1:
        interval = max(CONFIRM_MIN_INTERVAL, min(CONFIRM_INTERVAL, left / 2 / (burst - 1)))
    return interval, min(packet_timeout, left - (burst - 1) * interval)


def check_icmp_permission(needed: bool) -> DoctorCheck:
    """Unprivileged datagram sockets (net.ipv4.ping_group_range) or raw sockets (CAP_NET_RAW)?"""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
        return DoctorCheck(
            "icmp permission", PASS, "unprivileged ICMP sockets allowed (net.ipv4.ping_group_range)"
        )
    except OSError:
        pass
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        return DoctorCheck("icmp permission", PASS, "raw ICMP sockets allowed (CAP_NET_RAW)")
    except OSError as exc:
        why = exc.strerror or str(exc)
    gid = os.getgid()
    return DoctorCheck(
        "icmp permission",
        FAIL if needed else WARN,
        f"cannot open an ICMP socket ({why})" + ("" if needed else "; no ICMP probes configured"),
        "the systemd unit grants CAP_NET_RAW (AmbientCapabilities=CAP_NET_RAW); when running outside "
        f"it, allow ping sockets for this group: sysctl -w net.ipv4.ping_group_range='{gid} {gid}' "
        "(persist it in /etc/sysctl.d/)",
    )
