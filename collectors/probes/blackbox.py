"""The ``blackbox`` collector: a user's ``blackbox.yml`` and blackbox_exporter's ``/probe`` request model.

``/probe?target=...&module=...`` works as against blackbox_exporter 0.23, so its Prometheus scrape jobs
(``__param_target`` relabelling) work unchanged: the module comes from the ``blackbox.yml`` named by
``collectors.blackbox.config_file``, the timeout is the module's or the scrape's
(``X-Prometheus-Scrape-Timeout-Seconds`` less 0.5 s), and the answer has exactly blackbox's series and
labels. A target listed under ``targets.blackbox`` (a module and a target) is probed in the background
like every other and answered from its latest result; any other target is probed on demand, and only
when ``collectors.blackbox.on_demand`` allows it (empty by default: an open ``/probe`` would let anyone
make the agent connect anywhere).

The probing itself is the native collectors' (``http``, ``tcp``, ``icmp``, ``dns``), fed the target
each module describes; on ``/metrics`` the series carry ``probe`` (the prober), ``site`` and ``target``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from prometheus_client.core import Metric
from pydantic import AfterValidator, Field, PrivateAttr, model_validator

from agent.kernel.allowlist import AllowList, check_entry
from agent.kernel.collector import (
    CollectorContext,
    CollectorSettings,
    Deadline,
    Reply,
    Route,
    RouteContext,
    RouteRequest,
    TargetConfig,
    cached_target_reply,
)
from agent.kernel.errors import StartupError
from agent.kernel.yamlfile import relative_to_config
from collectors.probes.blackbox_config import BlackboxModule, load_blackbox_file
from collectors.probes.common import ProbeCollector, strip_probe_label

#: The series blackbox_exporter 0.23 emits, per prober; giamsat's own (``probe_failure_reason``, the
#: ICMP loss and RTT statistics, ``probe_dns_rcode``, ``probe_tls_cipher_info``) stay on ``/metrics``.
_COMMON = {
    "probe_success",
    "probe_duration_seconds",
    "probe_dns_lookup_time_seconds",
    "probe_ip_protocol",
    "probe_ip_addr_hash",
}
_TLS = {
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_ssl_last_chain_info",
    "probe_tls_version_info",
}
BLACKBOX_SERIES: dict[str, frozenset[str]] = {
    "http": frozenset(
        {
            *_COMMON,
            *_TLS,
            "probe_http_duration_seconds",
            "probe_http_content_length",
            "probe_http_uncompressed_body_length",
            "probe_http_redirects",
            "probe_http_ssl",
            "probe_http_status_code",
            "probe_http_version",
            "probe_failed_due_to_regex",
            "probe_http_last_modified_timestamp_seconds",
        }
    ),
    "tcp": frozenset({*_COMMON, *_TLS, "probe_failed_due_to_regex"}),
    "icmp": frozenset({*_COMMON, "probe_icmp_duration_seconds", "probe_icmp_reply_hop_limit"}),
    "dns": frozenset(
        {
            *_COMMON,
            "probe_dns_duration_seconds",
            "probe_dns_answer_rrs",
            "probe_dns_authority_rrs",
            "probe_dns_additional_rrs",
            "probe_dns_query_succeeded",
            "probe_dns_serial",
        }
    ),
}

#: blackbox_exporter's ``--timeout-offset`` default: the probe ends this long before the scrape does.
TIMEOUT_OFFSET = 0.5


class BlackboxSettings(CollectorSettings):
    """``collectors.blackbox``: the module file and which targets may be probed on request."""

    config_file: Path | None = Field(
        default=None,
        description="blackbox_exporter's blackbox.yml (relative paths: from this file's directory)",
    )
    on_demand: list[Annotated[str, AfterValidator(check_entry)]] = Field(
        default_factory=list,
        description="targets /probe may probe on request: networks (CIDR), host names (*.suffix), URL "
        "prefixes; empty: only targets.blackbox",
    )
    max_on_demand: int = Field(default=8, ge=1, le=256, description="on-demand probes running at once")
    _modules: dict[str, BlackboxModule] = PrivateAttr(default_factory=dict)
    _allow: AllowList = PrivateAttr(default_factory=AllowList)
    #: (module, target) -> name of the targets.blackbox entry (set when the targets are checked)
    _by_target: dict[tuple[str, str], str] = PrivateAttr(default_factory=dict)
    _module_of: dict[str, str] = PrivateAttr(default_factory=dict)  # target name -> its module

    @model_validator(mode="after")
    def _load(self) -> BlackboxSettings:
        # A ConfigError here names the blackbox.yml's own lines; it is not a ValueError on purpose.
        if self.config_file is not None:
            self._modules = load_blackbox_file(relative_to_config(self.config_file))
        self._allow = AllowList.parse(self.on_demand)
        return self

    @property
    def modules(self) -> dict[str, BlackboxModule]:
        return self._modules

    @property
    def allow(self) -> AllowList:
        return self._allow

    @property
    def by_target(self) -> dict[tuple[str, str], str]:
        return self._by_target

    @property
    def module_of(self) -> dict[str, str]:
        return self._module_of


class BlackboxTarget(TargetConfig):
    """``targets.blackbox[]``: a target probed in the background with a module of the blackbox.yml."""

    module: str = Field(min_length=1)
    target: str = Field(min_length=1, description="as in /probe?target=: URL, host:port or host")


def allowed(module: BlackboxModule, target: str, allow: AllowList) -> bool:
    """Whether ``target`` falls inside the on-demand allow-list, read as the module's prober reads it."""
    if module.prober == "http":
        url = target if target.startswith(("http://", "https://")) else f"http://{target}"
        return allow.allows_url(url)
    from collectors.probes.blackbox_config import split_host_port

    if module.prober in ("tcp", "dns"):
        try:
            host, _ = split_host_port(target, 53 if module.prober == "dns" else None)
        except ValueError:
            return False
        return allow.allows_host(host)
    return allow.allows_host(target)


def scrape_timeout(headers: dict[str, str] | Any, module_timeout: float) -> float:
    """blackbox_exporter's timeout: the scrape's (``X-Prometheus-Scrape-Timeout-Seconds``, else 120 s)
    less 0.5 s, or the module's when that is shorter. ValueError for a header that is not a number."""
    raw = headers.get("x-prometheus-scrape-timeout-seconds", "")
    scrape = float(raw) if raw else 0.0
    if not math.isfinite(scrape):
        raise ValueError(f"not a number: {raw[:30]!r}")
    if scrape == 0:
        scrape = 120.0
    limit = scrape - TIMEOUT_OFFSET
    if (0 < module_timeout < limit) or limit < 0:
        return module_timeout
    return limit


def blackbox_families(families: Sequence[Metric], prober: str, query_type: str = "") -> list[Metric]:
    """A result as blackbox_exporter serves it: its series only, without giamsat's ``probe`` label."""
    names = BLACKBOX_SERIES[prober]
    out = []
    for fam in families:
        if fam.name not in names or (fam.name == "probe_dns_serial" and query_type != "SOA"):
            continue
        out.append(strip_probe_label(fam))
    if prober == "dns" and query_type == "SOA" and not any(f.name == "probe_dns_serial" for f in out):
        serial = Metric("probe_dns_serial", "Returns the serial number of the zone", "gauge")
        serial.add_sample("probe_dns_serial", {}, 0.0)
        out.append(serial)
    return out


class BlackboxCollector(ProbeCollector):
    """Runs blackbox.yml modules with the native probes, in the background and on request."""

    kind = "blackbox"
    settings_model = BlackboxSettings
    target_model = BlackboxTarget

    def __init__(self, settings: CollectorSettings, ctx: CollectorContext) -> None:
        super().__init__(settings, ctx)
        assert isinstance(settings, BlackboxSettings)
        self.bb = settings
        self._inner: dict[str, ProbeCollector] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = threading.BoundedSemaphore(settings.max_on_demand)

    @classmethod
    def serves_without_targets(cls, settings: CollectorSettings) -> bool:
        assert isinstance(settings, BlackboxSettings)
        return bool(settings.allow)  # on-demand probes need it running

    @classmethod
    def check_targets(
        cls, settings: CollectorSettings, targets: Sequence[TargetConfig]
    ) -> list[tuple[int, str, str]]:
        assert isinstance(settings, BlackboxSettings)
        problems = []
        for i, t in enumerate(targets):
            assert isinstance(t, BlackboxTarget)
            # /probe?module=&target= of a configured target is answered from its latest result
            settings.by_target.setdefault((t.module, t.target), t.name)
            settings.module_of[t.name] = t.module
            module = settings.modules.get(t.module)
            if module is None:
                where = settings.config_file or "collectors.blackbox.config_file (not set)"
                problems.append((i, "module", f"no module {t.module!r} in {where}"))
                continue
            try:
                module.target(t.target, t.name, t.site)
            except ValueError as exc:
                problems.append((i, "target", str(exc)))
        return problems

    def _collector(self, prober: str) -> ProbeCollector:
        inner = self._inner.get(prober)
        if inner is None:
            raise RuntimeError(f"the {prober} prober is not running")
        return inner

    async def start(self) -> None:
        from collectors.probes.dns import DnsCollector
        from collectors.probes.http import HttpCollector
        from collectors.probes.icmp import IcmpCollector, IcmpSettings
        from collectors.probes.tcp import TcpCollector

        self._loop = asyncio.get_running_loop()
        classes: dict[str, type[ProbeCollector]] = {
            "http": HttpCollector,
            "tcp": TcpCollector,
            "dns": DnsCollector,
            "icmp": IcmpCollector,
        }
        for prober in sorted({m.prober for m in self.bb.modules.values()}):
            cls = classes[prober]
            # one echo per probe as blackbox sends it; a failed background run is retried by the agent
            settings = IcmpSettings(confirm_echoes=0) if prober == "icmp" else CollectorSettings()
            inner = cls(settings, self.ctx)
            try:
                await inner.start()
            except StartupError as exc:
                # Only on-demand requests would use it: they get probe_success 0, the agent still runs.
                self.ctx.log.warning("blackbox: the %s prober cannot start: %s", prober, exc)
                continue
            self._inner[prober] = inner

    async def close(self) -> None:
        for inner in self._inner.values():
            await inner.close()
        self._inner.clear()

    async def probe(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, BlackboxTarget)
        module = self.bb.modules[target.module]
        native = module.target(target.target, target.name, target.site)
        return await self._collector(module.prober).collect(native, deadline)

    async def _probe_once(self, module: BlackboxModule, target: str, timeout: float) -> list[Metric]:
        from collectors.probes.http import redirect_guard

        native = module.target(target)
        redirect_guard.set(self.bb.allow.allows_url)  # this task's context only
        if module.prober == "icmp":
            # A fresh collector on the shared sockets: an on-demand target leaves no state behind.
            from collectors.probes.icmp import IcmpCollector

            shared = self._collector("icmp")
            assert isinstance(shared, IcmpCollector)
            once = IcmpCollector(shared.settings, self.ctx)
            once.engine = shared.engine
            return await once.collect(native, Deadline.after(timeout))
        return await self._collector(module.prober).collect(native, Deadline.after(timeout))

    # -- /probe -------------------------------------------------------------------------------------

    def routes(self) -> Sequence[Route]:
        return (Route("/probe", self._blackbox_route),)

    def _blackbox_route(self, request: RouteRequest, ctx: RouteContext) -> Reply | None:
        q = request.query
        name = q.get("module") or "http_2xx"
        target = q.get("target", "")
        if name == self.kind and name not in self.bb.modules:
            return self._by_name(request, target, ctx)  # module=blackbox&target=NAME (export-sd's form)
        module = self.bb.modules.get(name)
        if module is None:
            return None  # a native kind's module (icmp, tcp, ...), or unknown: asked further
        if not target:
            return Reply(400, "Target parameter is missing")
        if ctx.has_job(f"{name}/{target}"):
            return None  # a configured target of the native kind of that name
        query_type = str(module.keys.get("query_type", ""))
        hostname = q.get("hostname", "")
        job = None if hostname else self.bb.by_target.get((name, target))
        if job is not None and ctx.has_job(f"{self.kind}/{job}"):
            result = ctx.result(f"{self.kind}/{job}")
            if result is None:
                return Reply(503, "no fresh result for this target yet")
            return self._reply(request, module, blackbox_families(result.families, module.prober, query_type))
        if not self.bb.allow:
            return Reply(
                403,
                "target is not configured and on-demand probing is off (collectors.blackbox.on_demand is empty)",
            )
        if not allowed(module, target, self.bb.allow):
            return Reply(403, "target is not in collectors.blackbox.on_demand")
        try:
            timeout = scrape_timeout(request.headers, module.timeout)
        except ValueError as exc:
            return Reply(500, f"Failed to parse timeout from Prometheus header: {exc}")
        try:
            if hostname and module.prober == "http":
                module = module.with_hostname(hostname)
            module.target(target)
        except ValueError as exc:
            return Reply(400, str(exc))
        loop = self._loop
        if loop is None or loop.is_closed():
            return Reply(503, "the agent is not running its probes")
        if not self._slots.acquire(blocking=False):
            return Reply(503, "too many on-demand probes at once; try again")
        try:
            fut = asyncio.run_coroutine_threadsafe(self._probe_once(module, target, max(timeout, 0.01)), loop)
            try:
                families = fut.result(timeout + 5)
            except concurrent.futures.TimeoutError:
                fut.cancel()
                return Reply(503, "the probe did not finish in time")
            except Exception as exc:  # a bug or a prober that could not start: data, not a traceback
                self.ctx.log.warning("blackbox: on-demand probe failed", extra={"error": type(exc).__name__})
                families = [_failed()]
        finally:
            self._slots.release()
        return self._reply(request, module, blackbox_families(families, module.prober, query_type))

    def _by_name(self, request: RouteRequest, name: str, ctx: RouteContext) -> Reply:
        """A targets.blackbox entry by its name, as every kind answers ``module=KIND&target=NAME``."""
        reply = cached_target_reply(self.kind, name, ctx)
        module = self.bb.modules.get(self.bb.module_of.get(name, ""))
        if module is None or reply.families is None:
            return reply
        query_type = str(module.keys.get("query_type", ""))
        return self._reply(request, module, blackbox_families(reply.families, module.prober, query_type))

    def _reply(self, request: RouteRequest, module: BlackboxModule, families: list[Metric]) -> Reply:
        if request.query.get("debug") == "true":
            from prometheus_client.exposition import generate_latest

            class _Fams:
                def collect(self) -> list[Metric]:
                    return families

            text = generate_latest(_Fams()).decode()
            return Reply(
                200,
                f"Metrics that would have been returned:\n{text}\n\nModule configuration:\n"
                f"prober: {module.prober}\ntimeout: {module.timeout:g}s\n{module.prober}: {module.keys}\n",
            )
        return Reply(200, families=families)


def _failed() -> Metric:
    fam = Metric("probe_success", "Displays whether or not the probe was a success", "gauge")
    fam.add_sample("probe_success", {}, 0.0)
    return fam
