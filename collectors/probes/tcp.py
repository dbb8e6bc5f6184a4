"""TCP connect probe, optionally with TLS and a send/expect exchange (e.g. an SSH banner on port 22).

Plain asyncio streams: a connect is one non-blocking socket, so thousands of targets need no threads.
Metric names follow blackbox_exporter's ``tcp`` prober.
"""

from __future__ import annotations

import asyncio
import re
import time

from prometheus_client.core import Metric
from pydantic import Field, field_validator, model_validator

from agent.kernel.collector import Deadline, TargetConfig
from agent.kernel.model import Model
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
    resolve_failed,
    result_metrics,
    tls_metrics,
)

#: Every value the ``reason`` label can take for a TCP probe.
REASONS = (
    *CONNECT_REASONS,
    "expect_mismatch",
)


class QueryStep(Model):
    """One step of a dialogue (blackbox_exporter's ``query_response``): wait for a line matching
    ``expect``, then send ``send`` (with ``${1}``-style groups of that match) plus a newline, then
    upgrade to TLS if ``starttls``."""

    expect: str | None = None
    send: str | None = None
    starttls: bool = False

    @field_validator("expect")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        return v if v is None else check_regexes([v])[0]


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
    query_response: list[QueryStep] = Field(
        default_factory=list, description="a line-based dialogue, blackbox_exporter style (see QueryStep)"
    )

    @field_validator("expect")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        return v if v is None else check_regexes([v])[0]

    @model_validator(mode="after")
    def _one_dialogue(self) -> TcpTarget:
        if self.query_response and (self.send is not None or self.expect is not None):
            raise ValueError("give either send/expect or query_response, not both")
        return self


class TcpCollector(ProbeCollector):
    kind = "tcp"
    target_model = TcpTarget

    async def probe(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, TcpTarget)
        start = time.perf_counter()
        budget = probe_budget(deadline)
        regex = gauge("probe_failed_due_to_regex", "Indicates if probe failed due to regex", 0)
        try:
            ip, family, lookup = await resolve(
                self.resolver, target.address, target.ip_protocol, budget, target.ip_protocol_fallback
            )
        except ResolveError:
            elapsed = time.perf_counter() - start
            return [*resolve_failed(elapsed, elapsed), regex]
        extra: list[Metric] = [regex]
        reason = ""
        writer: asyncio.StreamWriter | None = None
        opts = target.tls_config
        try:
            async with asyncio.timeout(max(0.01, budget - (time.perf_counter() - start))):
                reader, writer = await asyncio.open_connection(ip, target.port)
                if target.tls:
                    await writer.start_tls(opts.context(), server_hostname=opts.server_name or target.address)
                    extra += tls_metrics(writer.get_extra_info("ssl_object"), opts)
                if target.send is not None:
                    writer.write(target.send.encode())
                    await writer.drain()
                matched = True
                if target.expect is not None:
                    matched = await _expect(reader, re.compile(target.expect.encode()), target.read_bytes)
                for step in target.query_response:
                    if not matched:
                        break
                    matched = await _step(reader, writer, step, target, extra)
                if not matched:
                    regex = extra[0] = gauge(
                        "probe_failed_due_to_regex", "Indicates if probe failed due to regex", 1
                    )
                    reason = "expect_mismatch"
        except Exception as exc:
            reason = connect_error_reason(exc)
        finally:
            if writer is not None:
                writer.transport.abort()  # no lingering close handshakes with thousands of targets
        return [
            *result_metrics(
                not reason, time.perf_counter() - start, reason, lookup=lookup, family=family, ip=ip
            ),
            *extra,
        ]


async def _step(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    step: QueryStep,
    target: TcpTarget,
    extra: list[Metric],
) -> bool:
    """One ``query_response`` step; False when the peer closed before a line matched ``expect``.

    Lines are read as blackbox_exporter's scanner reads them: up to 64 KiB (the stream's limit), without
    the newline and a carriage return before it; a last line without a newline counts too."""
    send = step.send
    if step.expect is not None:
        pattern = re.compile(step.expect.encode())
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                line = exc.partial
                if not line:
                    return False
            except asyncio.LimitOverrunError:
                return False
            m = pattern.search(line.rstrip(b"\n").removesuffix(b"\r"))
            if m is not None:
                break
        if send is not None:
            send = _expand(send, m)
    if send:
        writer.write(send.encode() + b"\n")
        await writer.drain()
    if step.starttls:
        opts = target.tls_config
        await writer.start_tls(opts.context(), server_hostname=opts.server_name or target.address)
        extra += tls_metrics(writer.get_extra_info("ssl_object"), opts)
    return True


def _expand(template: str, m: re.Match[bytes]) -> str:
    """Go's ``Regexp.Expand``: ``$1``/``${1}``/``${name}`` become the groups of the match (empty when
    there is no such group)."""

    def group(g: re.Match[str]) -> str:
        key = g.group(1) or g.group(2)
        try:
            value = m.group(int(key) if key.isdigit() else key)
        except (IndexError, re.error):
            return ""
        return (value or b"").decode("utf-8", "replace")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", group, template.replace("$$", "\0")).replace("\0", "$")


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
