"""HTTP(S) probe: status, body regexes, redirects, per-phase timings, certificate expiry and TLS version.

A small HTTP/1.1 client on asyncio streams rather than httpx/aiohttp: a probe sends one request with
``Connection: close`` and must time each phase (resolve, connect, tls, processing, transfer) itself,
which a pooled client hides; it also keeps the dependency list short. Names follow blackbox_exporter's
``http`` prober, phase durations summed over redirects as it does.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import SplitResult, urljoin, urlsplit

from prometheus_client.core import Metric
from pydantic import Field, field_validator

from agent.kernel.collector import Deadline, TargetConfig
from agent.kernel.model import Model
from agent.kernel.resolver import Resolver
from agent.kernel.version import __version__
from collectors.probes.common import (
    CONNECT_REASONS,
    ProbeCollector,
    ProbeTarget,
    ResolveError,
    TlsOptions,
    add,
    check_regexes,
    connect_error_reason,
    gauge,
    probe_budget,
    resolve,
    result_metrics,
    tls_metrics,
)

#: Every value the ``reason`` label can take for an HTTP probe.
REASONS = (
    *CONNECT_REASONS,
    "http_protocol",  # not an HTTP/1.x response
    "status_code",  # status not in valid_status_codes
    "body_regex",
    "too_many_redirects",
    "not_tls",  # fail_if_not_ssl and the final response came over plain HTTP
    "tls",  # fail_if_ssl and the final response came over TLS
    "header_regex",  # a fail_if_header_matches / fail_if_header_not_matches rule
    "http_version",  # not one of valid_http_versions
    "redirect_refused",  # an on-demand probe was redirected outside the allow-list
)

#: Where a redirect may lead, for probes a remote client asked for (``/probe`` on demand): None follows
#: every redirect; otherwise a location it refuses ends the probe (``redirect_refused``), so an allowed
#: site's redirect cannot take the agent where the configuration did not say.
redirect_guard: contextvars.ContextVar[Callable[[str], bool] | None] = contextvars.ContextVar(
    "redirect_guard", default=None
)

PHASES = ("resolve", "connect", "tls", "processing", "transfer")
_REDIRECTS = {301, 302, 303, 307, 308}


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as we can read it."""


class HeaderMatch(Model):
    """A rule on a response header (blackbox_exporter's ``fail_if_header_matches`` entries)."""

    header: str = Field(min_length=1)
    regexp: str
    allow_missing: bool = False

    @field_validator("regexp")
    @classmethod
    def _compiles(cls, v: str) -> str:
        return check_regexes([v])[0]


class HttpTarget(ProbeTarget):
    """``targets.http[]``: a URL and what a good answer looks like."""

    url: str = Field(description="http:// or https:// URL")
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    valid_status_codes: list[int] = Field(default_factory=list, description="default: any 2xx")
    fail_if_body_matches_regexp: list[str] = Field(default_factory=list)
    fail_if_body_not_matches_regexp: list[str] = Field(default_factory=list)
    follow_redirects: bool = True
    max_redirects: int = Field(default=10, ge=0, le=50)
    fail_if_not_ssl: bool = False
    fail_if_ssl: bool = False
    fail_if_header_matches: list[HeaderMatch] = Field(
        default_factory=list, description="fail if a value of the header matches"
    )
    fail_if_header_not_matches: list[HeaderMatch] = Field(
        default_factory=list, description="fail if no value of the header matches"
    )
    valid_http_versions: list[str] = Field(
        default_factory=list, description='e.g. ["HTTP/1.1"]; default: any'
    )
    tls_config: TlsOptions = Field(default_factory=TlsOptions)
    max_body_bytes: int = Field(default=1 << 20, ge=0, description="body bytes kept for the regexes")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v

    @field_validator("fail_if_body_matches_regexp", "fail_if_body_not_matches_regexp")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        return check_regexes(v)


@dataclass
class _Response:
    status: int = 0
    version: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    values: dict[str, list[str]] = field(default_factory=dict)  # every value of each header
    proto: str = ""
    body: bytes = b""
    body_length: int = 0


@dataclass
class _State:
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    redirects: int = 0
    tls: list[Metric] = field(default_factory=list)
    final_tls: bool = False
    family: int | None = None
    lookup: float | None = None
    ip: str | None = None


class HttpCollector(ProbeCollector):
    kind = "http"
    target_model = HttpTarget

    async def probe(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, HttpTarget)
        start = time.perf_counter()
        st = _State()
        resp = _Response()
        reason = ""
        try:
            budget = probe_budget(deadline)
            async with asyncio.timeout(budget):
                resp, reason = await self._follow(target, st, budget)
        except ResolveError:
            reason = "resolve"
        except ProtocolError:
            reason = "http_protocol"
        except Exception as exc:
            reason = connect_error_reason(exc)
        regex_failed = False
        if not reason:
            if not _status_ok(resp.status, target.valid_status_codes):
                reason = "status_code"
            elif _headers_fail(resp.values, target):
                reason, regex_failed = "header_regex", True
            elif _body_fails(resp.body, target):
                reason, regex_failed = "body_regex", True
            elif target.valid_http_versions and resp.proto not in target.valid_http_versions:
                reason = "http_version"
            elif target.fail_if_ssl and st.final_tls:
                reason = "tls"
            elif target.fail_if_not_ssl and not st.final_tls:
                reason = "not_tls"
        duration = time.perf_counter() - start
        unresolved = st.ip is None and reason == "resolve"  # the first host did not resolve
        out = result_metrics(
            not reason,
            duration,
            reason,
            lookup=st.lookup,
            family=0 if unresolved else st.family,
            ip="" if unresolved else st.ip,
        )
        phases = gauge(
            "probe_http_duration_seconds", "Duration of http request by phase, summed over all redirects"
        )
        for p in ("resolve",) if unresolved else PHASES:  # as blackbox: other phases only once resolved
            add(phases, st.phases[p], phase=p)
        length = resp.headers.get("content-length", "")
        out += [
            phases,
            gauge("probe_http_status_code", "Response HTTP status code", resp.status),
            gauge(
                "probe_http_content_length",
                "Length of http content response",
                int(length) if length.isdigit() else -1 if resp.status else 0,
            ),
            gauge(
                "probe_http_uncompressed_body_length",
                "Length of uncompressed response body",
                resp.body_length,
            ),
            gauge("probe_http_redirects", "The number of redirects", st.redirects),
            gauge(
                "probe_http_ssl", "Indicates if SSL was used for the final redirect", 1 if st.final_tls else 0
            ),
            gauge("probe_http_version", "Returns the version of HTTP of the probe response", resp.version),
            gauge(
                "probe_failed_due_to_regex",
                "Indicates if probe failed due to regex",
                1 if regex_failed else 0,
            ),
        ]
        modified = resp.headers.get("last-modified")
        if modified:
            try:
                ts = email.utils.parsedate_to_datetime(modified).timestamp()
            except (TypeError, ValueError):
                pass
            else:
                out.append(
                    gauge(
                        "probe_http_last_modified_timestamp_seconds",
                        "Returns the Last-Modified HTTP response header in unixtime",
                        ts,
                    )
                )
        out += st.tls
        return out

    async def _follow(self, target: HttpTarget, st: _State, budget: float) -> tuple[_Response, str]:
        url, method, body = target.url, target.method, target.body
        while True:
            resp = await _request(self.resolver, url, method, body, target, st, budget)
            location = resp.headers.get("location")
            if not (resp.status in _REDIRECTS and location):
                return resp, ""
            if not target.follow_redirects:
                st.redirects += 1  # a redirect received, if not followed, counts (as in blackbox_exporter)
                return resp, ""
            if st.redirects >= target.max_redirects:
                st.redirects += 1
                return resp, "too_many_redirects"
            st.redirects += 1
            url = urljoin(url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise ProtocolError(f"redirect to {url!r}")
            guard = redirect_guard.get()
            if guard is not None and not guard(url):
                return resp, "redirect_refused"
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, body = "GET", None


async def _request(
    resolver: Resolver, url: str, method: str, body: str | None, target: HttpTarget, st: _State, budget: float
) -> _Response:
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    t0 = time.perf_counter()
    try:
        ip, family, _ = await resolve(resolver, host, target.ip_protocol, budget, target.ip_protocol_fallback)
    finally:
        t1 = time.perf_counter()
        st.phases["resolve"] += t1 - t0
        if st.lookup is None:
            st.lookup = t1 - t0
    if st.ip is None:
        st.family, st.ip = family, ip
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        t2 = time.perf_counter()
        st.phases["connect"] += t2 - t1
        if tls:
            opts = target.tls_config
            await writer.start_tls(opts.context(), server_hostname=opts.server_name or host)
            st.tls = tls_metrics(writer.get_extra_info("ssl_object"), opts)
            t3 = time.perf_counter()
            st.phases["tls"] += t3 - t2
            t2 = t3
        st.final_tls = tls
        writer.write(_encode_request(method, parts, host, port, tls, body, target.headers))
        await writer.drain()
        resp = _Response()
        status_line = await reader.readline()
        t4 = time.perf_counter()
        st.phases["processing"] += t4 - t2
        m = re.match(rb"HTTP/(\d)\.(\d) (\d{3})", status_line)
        if not m:
            raise ProtocolError("no HTTP/1.x status line")
        resp.version = float(f"{int(m[1])}.{int(m[2])}")
        resp.proto = f"HTTP/{int(m[1])}.{int(m[2])}"
        resp.status = int(m[3])
        for _ in range(200):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                key = name.strip().lower()
                resp.headers[key] = value.strip()
                resp.values.setdefault(key, []).append(value.strip())
        else:
            raise ProtocolError("too many header lines")
        if method != "HEAD" and resp.status not in (204, 304) and not 100 <= resp.status < 200:
            await _read_body(reader, resp, target.max_body_bytes)
        st.phases["transfer"] += time.perf_counter() - t4
        return resp
    finally:
        writer.transport.abort()


def _encode_request(
    method: str,
    parts: SplitResult,
    host: str,
    port: int,
    tls: bool,
    body: str | None,
    headers: dict[str, str],
) -> bytes:
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if tls else 80
    host_hdr = (f"[{host}]" if ":" in host else host) + ("" if port == default_port else f":{port}")
    hdrs = {
        "Host": host_hdr,
        "User-Agent": f"giamsat/{__version__}",
        "Accept": "*/*",
        "Connection": "close",
    }
    hdrs.update(headers)
    data = body.encode() if body is not None else b""
    if body is not None or method in ("POST", "PUT"):
        hdrs["Content-Length"] = str(len(data))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode("latin-1") + data


async def _read_body(reader: asyncio.StreamReader, resp: _Response, keep: int) -> None:
    chunks: list[bytes] = []
    kept = 0

    def take(data: bytes) -> None:
        nonlocal kept
        resp.body_length += len(data)
        if kept < keep:
            chunks.append(data[: keep - kept])
            kept += len(chunks[-1])

    if "chunked" in resp.headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError("bad chunk size") from None
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            take(await reader.readexactly(size))
            await reader.readexactly(2)
    elif resp.headers.get("content-length", "").isdigit():
        remaining = int(resp.headers["content-length"])
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            take(data)
            remaining -= len(data)
    else:
        while data := await reader.read(65536):
            take(data)
    resp.body = b"".join(chunks)


def _status_ok(status: int, valid: list[int]) -> bool:
    return status in valid if valid else 200 <= status < 300


def _headers_fail(values: dict[str, list[str]], target: HttpTarget) -> bool:
    """blackbox_exporter's header rules: a missing header fails unless ``allow_missing``."""
    for rule in target.fail_if_header_matches:
        found = values.get(rule.header.lower(), [])
        if not found and not rule.allow_missing:
            return True
        if any(re.search(rule.regexp, v) for v in found):
            return True
    for rule in target.fail_if_header_not_matches:
        found = values.get(rule.header.lower(), [])
        if not found:
            if rule.allow_missing:
                continue
            return True
        if not any(re.search(rule.regexp, v) for v in found):
            return True
    return False


def _body_fails(body: bytes, target: HttpTarget) -> bool:
    text = body.decode("utf-8", "replace")
    if any(re.search(r, text) for r in target.fail_if_body_matches_regexp):
        return True
    return any(not re.search(r, text) for r in target.fail_if_body_not_matches_regexp)
