"""The ``ntp`` collector: asks each configured NTP server for its time (SNTP) and reports this host's offset.

Names follow node_exporter's ``ntp`` collector and sapcc's ntp_exporter without the ``node_`` prefix. A
server that does not answer, or answers unusably, is data: ``ntp_up 0`` and ``ntp_failure_reason{reason}``,
one log line when that starts or its reason changes, another when it recovers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.kernel.collector import Collector, CollectorContext, CollectorSettings, Deadline, TargetConfig
from agent.kernel.resolver import ResolveError, Resolver
from collectors.ntp.exchange import ExchangeError, Measurement, exchange
from collectors.ntp.settings import NtpSettings, NtpTarget

_FAMILIES = {"auto": socket.AF_UNSPEC, "ip4": socket.AF_INET, "ip6": socket.AF_INET6}

#: Finish this much before the scheduler's deadline (at most a tenth of it), so a dead server is reported
#: as ``ntp_up 0`` rather than as a run cancelled at its deadline.
_MARGIN = 0.2


class NtpCollector(Collector):
    kind = "ntp"
    settings_model = NtpSettings
    target_model = NtpTarget
    blocking_threads = 1  # nothing blocks: name lookups have their own threads, the exchange is async
    link_metric = "ntp_up"
    link_reason_metric = "ntp_failure_reason"
    doctor_fixes = (
        ("kod", "the server sent a kiss-o'-death: it refuses this host (its allow/restrict rules) or asks "
         "for a longer interval"),
        ("unsynchronised", "the server has no good time itself: check its own sources (chronyc sources)"),
        ("bad_root_distance", "the server's time is too far from a reference to trust: check its sources"),
        ("bad_", "the server's answer is malformed or not ours: check that an NTP server listens there"),
        ("resolve", "the server's name does not resolve from this machine: check the name and the DNS"),
        ("timeout", "no answer: check that UDP port 123 (or the target's port) is open from this machine to "
         "the server and that it serves NTP to this address"),
    )  # fmt: skip

    def __init__(self, settings: CollectorSettings, ctx: CollectorContext) -> None:
        super().__init__(settings, ctx)
        self.resolver = Resolver(ctx.log)
        self._failing: dict[str, str] = {}  # target name -> reason, while it fails

    def max_series(self) -> int:
        return 9  # up, duration, and either one failure reason or the seven values of an answer

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, NtpTarget) and isinstance(self.settings, NtpSettings)
        start = time.monotonic()
        margin = min(_MARGIN, deadline.timeout * 0.1)
        try:
            addrs = await self.resolver.resolve(
                target.address,
                target.port,
                deadline.left(margin),
                family=_FAMILIES[target.ip_protocol],
                socktype=socket.SOCK_DGRAM,
            )
            family, sockaddr = addrs[0]
            found = await exchange(family, sockaddr, self.settings.version, deadline.left(margin))
        except ResolveError as exc:
            return self._down(target, "resolve", exc.message, time.monotonic() - start)
        except ExchangeError as exc:
            return self._down(target, exc.reason, exc.message, time.monotonic() - start)
        if self._failing.pop(target.name, None) is not None:
            self.ctx.log.info("ntp server answers again", extra={"target": target.name})
        return [*_status(True, time.monotonic() - start), *_answer(found)]

    def _down(self, target: NtpTarget, reason: str, message: str, duration: float) -> list[Metric]:
        if self._failing.get(target.name) != reason:
            self.ctx.log.warning(
                "ntp server failing",
                extra={
                    "target": target.name,
                    "address": f"{target.address}:{target.port}",
                    "reason": reason,
                    "detail": message,
                },
            )
        self._failing[target.name] = reason
        reasons = GaugeMetricFamily(
            "ntp_failure_reason",
            "Why the server gave no usable time, from a bounded set of reasons (1 while failing).",
            labels=["reason"],
        )
        reasons.add_metric([reason], 1.0)
        return [*_status(False, duration), reasons]


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _status(up: bool, duration: float) -> list[Metric]:
    return [
        _gauge("ntp_up", "Whether the server answered with a usable time (1) or not (0).", float(up)),
        _gauge("ntp_duration_seconds", "How long the query took, name resolution included.", duration),
    ]


def _answer(m: Measurement) -> Sequence[Metric]:
    a = m.answer
    return (
        _gauge("ntp_offset_seconds", "The server's clock minus this host's (add it to this host's time to "
               "get the server's).", m.offset),
        _gauge("ntp_rtt_seconds", "Round trip of the query, the server's processing time excluded.", m.rtt),
        _gauge("ntp_stratum", "The server's stratum (1 for a reference clock, 2 for its clients...).",
               a.stratum),
        _gauge("ntp_leap", "The server's leap indicator (0 none, 1 a second added, 2 a second removed "
               "at the end of the day).", a.leap),
        _gauge("ntp_root_delay_seconds", "Round trip from the server to its reference clock.", a.root_delay),
        _gauge("ntp_root_dispersion_seconds", "The server's estimate of its error against its reference "
               "clock.", a.root_dispersion),
        _gauge("ntp_reference_timestamp_seconds", "When the server's clock was last set or corrected "
               "(Unix time).", a.reference),
    )  # fmt: skip
