"""TCP connect probe, optionally with TLS and a send/expect exchange (e.g. an SSH banner on port 22).

Plain asyncio streams: a connect is one non-blocking socket, so thousands of targets need no threads.
Metric names follow blackbox_exporter's ``tcp`` prober.
"""

from __future__ import annotations

import asyncio
import re
import time

from prometheus_client.core import Metric
from pydantic import Field, field_validator

from agent.kernel.collector import Deadline, TargetConfig
from collectors.probes.common import (
    CONNECT_REASONS,
    ProbeCollector,
    ProbeTarget,
    ResolveError,
    TlsOptions,
    check_regexes,
    connect_error_reason,
    gauge,
    probe_budget,
    resolve,
    result_metrics,
    tls_metrics,
)

#: Every value the ``reason`` label can take for a TCP probe.
REASONS = (
    *CONNECT_REASONS,
    "expect_mismatch",
)


class TcpTarget(ProbeTarget):
    """``targets.tcp[]``: a host and port to connect to."""

    address: str = Field(min_length=1, description="IP address or host name")
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    tls_config: TlsOptions = Field(default_factory=TlsOptions)
    send: str | None = Field(default=None, description="text to send after connecting (\\n-terminated lines)")
    expect: str | None = Field(
        default=None, description="regex the first bytes read must match, e.g. ^SSH-2.0-"
    )
    read_bytes: int = Field(default=4096, ge=1, le=1 << 20, description="most bytes read for `expect`")

    @field_validator("expect")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        return v if v is None else check_regexes([v])[0]


class TcpCollector(ProbeCollector):
    kind = "tcp"
    target_model = TcpTarget

    async def probe(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, TcpTarget)
        start = time.perf_counter()
        budget = probe_budget(deadline)
        try:
            ip, family, lookup = await resolve(self.resolver, target.address, target.ip_protocol, budget)
        except ResolveError:
            return result_metrics(False, time.perf_counter() - start, "resolve")
        extra: list[Metric] = []
        reason = ""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(max(0.01, budget - (time.perf_counter() - start))):
                reader, writer = await asyncio.open_connection(ip, target.port)
                if target.tls:
                    opts = target.tls_config
                    await writer.start_tls(opts.context(), server_hostname=opts.server_name or target.address)
                    extra += tls_metrics(writer.get_extra_info("ssl_object"))
                if target.send is not None:
                    writer.write(target.send.encode())
                    await writer.drain()
                if target.expect is not None:
                    matched = await _expect(reader, re.compile(target.expect.encode()), target.read_bytes)
                    extra.append(
                        gauge(
                            "probe_failed_due_to_regex",
                            "Indicates if probe failed due to regex",
                            0 if matched else 1,
                        )
                    )
                    if not matched:
                        reason = "expect_mismatch"
        except Exception as exc:
            reason = connect_error_reason(exc)
        finally:
            if writer is not None:
                writer.transport.abort()  # no lingering close handshakes with thousands of targets
        return [
            *result_metrics(not reason, time.perf_counter() - start, reason, lookup=lookup, family=family),
            *extra,
        ]


async def _expect(reader: asyncio.StreamReader, pattern: re.Pattern[bytes], limit: int) -> bool:
    """Read until ``pattern`` matches what was received, the peer closes, or ``limit`` bytes."""
    buf = b""
    while len(buf) < limit:
        chunk = await reader.read(limit - len(buf))
        if not chunk:
            break
        buf += chunk
        if pattern.search(buf):
            return True
    return bool(pattern.search(buf))
