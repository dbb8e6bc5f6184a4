"""SNMP collector: polls one device per job with its modules, the snmp_exporter way.

A device that does not answer is data (``snmp_up 0`` plus ``snmp_failure_reason{reason}``); one failing
module is reported by ``snmp_module_success{module} 0`` while the others are still served. The whole
device poll runs under the job's deadline, so a dead device never delays the others, and concurrent
polls are bounded by ``max_concurrent_devices``.

Modules come in two formats: snmp_exporter's (``snmp.yml``, rendered by ``exporter_render``) and
giamsat's own (``collectors.snmp.modules``, rendered here). ``/snmp`` answers snmp_exporter's request
(``target=HOST[:PORT]&module=a,b&auth=NAME``): from the background poll for a device in the inventory,
by polling on demand only for a device inside ``on_demand.allow``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from agent.kernel.collector import (
    Collector,
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
from agent.kernel.errors import CollectError
from agent.kernel.resolver import Resolver
from collectors.snmp import exporter_render
from collectors.snmp.client import (
    GufoClient,
    PysnmpClient,
    PysnmpEngines,
    SnmpClient,
    SnmpClientError,
    SnmpEndpoint,
    Value,
)
from collectors.snmp.config import Auth, MetricDef, Module, SnmpSettings, SnmpTarget
from collectors.snmp.exporter_config import ExModule
from collectors.snmp.modules import SHIPPED

#: snmp_exporter's per-module meta metrics (a ``module`` label on /metrics and for several modules on
#: /snmp; none for one module on /snmp, as snmp_exporter 0.21 writes them)
META_FAMILIES = (
    ("snmp_scrape_walk_duration_seconds", "Time SNMP walk/bulkwalk took."),
    ("snmp_scrape_packets_sent", "Packets sent for get, bulkget, and walk; including retries."),
    ("snmp_scrape_packets_retried", "Packets retried for get, bulkget, and walk."),
    ("snmp_scrape_pdus_returned", "PDUs returned from get, bulkget, and walk."),
    ("snmp_scrape_duration_seconds", "Total SNMP time scrape took (walk and processing)."),
)
META_NAMES = frozenset(name for name, _ in META_FAMILIES)
#: snmp_exporter's request parameters it defaults when absent
DEFAULT_MODULE = "if_mib"
DEFAULT_AUTH = "public_v2"
TIMEOUT_HEADER = "x-prometheus-scrape-timeout-seconds"
#: OIDs per GET request: keeps responses well under a 1500-byte MTU for typical scalars
GET_BATCH = 20
#: label values are cut here (a sysDescr can be kilobytes)
MAX_LABEL_LENGTH = 256


@dataclass
class ModuleResult:
    name: str
    families: list[Metric]
    duration: float
    varbinds: int
    reason: str = ""
    message: str = ""
    walk_duration: float = 0.0
    packets: int = 0
    retried: int = 0


class SnmpCollector(Collector):
    kind = "snmp"
    settings_model = SnmpSettings
    target_model = SnmpTarget
    blocking_threads = 1
    link_metric = "snmp_up"
    link_reason_metric = "snmp_failure_reason"

    def __init__(self, settings: CollectorSettings, ctx: CollectorContext) -> None:
        super().__init__(settings, ctx)
        assert isinstance(settings, SnmpSettings)
        self.cfg: SnmpSettings = settings
        self.modules: dict[str, Module] = {**SHIPPED, **settings.modules}
        self.ex_modules: dict[str, ExModule] = settings.exporter_modules
        self.auths: dict[str, Auth] = settings.all_auths
        self._clients: dict[tuple[str, object], tuple[tuple[object, ...], SnmpClient]] = {}
        self._engines = PysnmpEngines()
        self._sem = asyncio.Semaphore(settings.max_concurrent_devices)
        self._last_state: dict[tuple[str, str], str] = {}
        self._checked: dict[str, tuple[SnmpTarget, list[tuple[int, str, str]]]] = {}
        self._resolver = Resolver(ctx.log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_demand_slots = threading.BoundedSemaphore(settings.on_demand.max_concurrent)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------------------ config checks

    @classmethod
    def check_targets(
        cls, settings: CollectorSettings, targets: Sequence[TargetConfig]
    ) -> list[tuple[int, str, str]]:
        """Cross-checks the config models cannot do alone: (target index, key, problem)."""
        assert isinstance(settings, SnmpSettings)
        known: dict[str, object] = {**SHIPPED, **settings.modules, **settings.exporter_modules}
        auths = settings.all_auths
        problems: list[tuple[int, str, str]] = []
        for i, t in enumerate(targets):
            assert isinstance(t, SnmpTarget)
            if t.auth not in auths:
                problems.append((i, "auth", f"unknown auth {t.auth!r}; known: {sorted(auths)}"))
            else:
                a = auths[t.auth]
                if (t.engine or settings.engine) == "gufo" and a.version == 3 and a.context_name:
                    problems.append(
                        (i, "engine", "gufo-snmp has no SNMPv3 context support; use engine: pysnmp")
                    )
            for j, m in enumerate(t.modules):
                if m not in known:
                    problems.append((i, f"modules[{j}]", f"unknown module {m!r}; known: {sorted(known)}"))
            seen: dict[str, str] = {}
            for m in t.modules:
                legacy = known.get(m)
                for md in legacy.metrics if isinstance(legacy, Module) else []:
                    if md.name in seen and seen[md.name] != m:
                        problems.append(
                            (i, "modules", f"modules {seen[md.name]!r} and {m!r} both define {md.name!r}")
                        )
                    seen.setdefault(md.name, m)
        return problems

    # ------------------------------------------------------------------------------ polling

    def _client(
        self, t: SnmpTarget, auth: Auth, mod: ExModule | None = None, cache: bool = True
    ) -> SnmpClient:
        """The device's client for giamsat modules (the collector's walk settings) or for an
        snmp_exporter module (its walk_params); settings given in the config (target first, then
        ``collectors.snmp``) win over a module's."""
        cfg = self.cfg
        timeout, retries, max_rep = cfg.request_timeout, cfg.retries, cfg.max_repetitions
        if mod is not None:  # the module's walk_params, unless this config sets its own
            given = cfg.model_fields_set
            timeout = timeout if "request_timeout" in given else mod.timeout
            retries = retries if "retries" in given else mod.retries
            max_rep = max_rep if "max_repetitions" in given else mod.max_repetitions or 1
        ep = SnmpEndpoint(
            host=t.address,
            port=t.port,
            auth=auth,
            auth_name=t.auth,
            timeout=t.request_timeout or timeout,
            retries=t.retries if t.retries is not None else retries,
            max_repetitions=t.max_repetitions or max_rep,
            max_varbinds=cfg.max_varbinds_per_walk,
            allow_nonincreasing_oids=mod is not None and mod.allow_nonincreasing_oids,
            resolver=self._resolver,
        )
        # gufo's sockets are connected; pysnmp's are not (replies from another address are read)
        engine = "pysnmp" if mod is not None and mod.use_unconnected_udp_socket else t.engine or cfg.engine
        key = (ep, engine)
        slot = (t.name, (ep.timeout, ep.retries, ep.max_repetitions, ep.allow_nonincreasing_oids, engine))
        cached = self._clients.get(slot) if cache else None
        if cached is not None and cached[0] == key:
            return cached[1]
        client: SnmpClient = (
            GufoClient(ep) if engine == "gufo" else PysnmpClient(ep, self._engines.get(t.auth))
        )
        if cache:
            self._clients[slot] = (key, client)
        return client

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, SnmpTarget)
        checked = self._checked.get(target.name)
        if checked is None or checked[0] is not target:  # once per target (config is immutable)
            checked = self._checked[target.name] = (target, self.check_targets(self.cfg, [target]))
        problems = checked[1]
        if problems:
            raise CollectError("config", "; ".join(f"{key}: {msg}" for _, key, msg in problems))
        # Finish inside the job's deadline so a dead device is reported as data, not as a killed job.
        results = await self.poll(target, target.modules, deadline.left(margin=0.2), cache=True)
        out = self._device_families(target, results)
        for r in results:
            out.extend(r.families)
        return out

    async def poll(
        self, target: SnmpTarget, modules: Sequence[str], budget: float, cache: bool
    ) -> list[ModuleResult]:
        """Poll ``modules`` of one device within ``budget`` seconds."""
        auth = self.auths[target.auth]
        start = time.monotonic()
        results: list[ModuleResult] = []
        async with self._sem:
            device_deadline = start + budget
            for name in modules:
                ex = self.ex_modules.get(name)
                try:
                    client = self._client(target, auth, ex, cache)
                except SnmpClientError as exc:
                    results.append(ModuleResult(name, [], 0.0, 0, exc.reason, exc.message))
                    continue
                try:
                    results.append(await self._poll_module(client, name, ex, auth.version, device_deadline))
                finally:
                    if not cache:
                        await client.close()
        return results

    async def _poll_module(
        self, client: SnmpClient, name: str, ex: ExModule | None, version: int, deadline: float
    ) -> ModuleResult:
        start = time.monotonic()
        remaining = deadline - start
        sent, retried = client.stats.sent, client.stats.retried
        r: ModuleResult
        try:
            if remaining <= 0:
                raise SnmpClientError("timeout", "no time left in the device's deadline")
            async with asyncio.timeout(remaining):
                if ex is not None:
                    got = await exporter_render.fetch(client, ex, version)
                    walked = time.monotonic()
                    families = exporter_render.render(ex, got.pdus)
                    n = got.count
                else:
                    mod = self.modules[name]
                    scalars, tables, n = await fetch_module(client, mod)
                    walked = time.monotonic()
                    families = build_families(mod, scalars, tables)
            r = ModuleResult(name, families, time.monotonic() - start, n, walk_duration=walked - start)
        except TimeoutError:
            # Cut off mid-request: a late reply must not be read as the answer to the next request.
            await client.close()
            r = ModuleResult(
                name, [], time.monotonic() - start, 0, "timeout", "device deadline reached during the module"
            )
        except SnmpClientError as exc:
            r = ModuleResult(name, [], time.monotonic() - start, 0, exc.reason, exc.message)
        r.packets, r.retried = client.stats.sent - sent, client.stats.retried - retried
        return r

    def _device_families(self, t: SnmpTarget, results: list[ModuleResult]) -> list[Metric]:
        out = device_families(results)
        self._log_changes(t, results)
        return out

    def _log_changes(self, t: SnmpTarget, results: list[ModuleResult]) -> None:
        """One log line when a device's module starts failing, changes reason, or recovers."""
        for r in results:
            key = (t.name, r.name)
            before = self._last_state.get(key)
            if r.reason and before != r.reason:
                self.ctx.log.warning(
                    "snmp module failing",
                    extra={
                        "target": t.name,
                        "address": f"{t.address}:{t.port}",
                        "snmp_module": r.name,
                        "reason": r.reason,
                        "detail": r.message,
                    },
                )
            elif not r.reason and before:
                self.ctx.log.info("snmp module recovered", extra={"target": t.name, "snmp_module": r.name})
            self._last_state[key] = r.reason

    # ------------------------------------------------------------------------------ /snmp

    def routes(self) -> Sequence[Route]:
        """``/probe?module=snmp`` as every target kind, and snmp_exporter's ``/snmp``."""
        return (*super().routes(), Route("/snmp", self._snmp_route))

    def _inventory_target(self, target: str) -> SnmpTarget | None:
        """The configured device a request names: by target name, or by address[:port]."""
        by_name = self._checked.get(target)
        if by_name is not None:
            return by_name[0]
        hp = split_target(target)
        if hp is None:
            return None
        host, port = hp
        for t, _ in list(self._checked.values()):  # the poller may add to it meanwhile (list() is atomic)
            if t.port == port and t.address.lower() == host.lower():
                return t
        return None

    def _snmp_route(self, request: RouteRequest, ctx: RouteContext) -> Reply:
        q, every = request.query, request.query_all
        target = q.get("target", "")
        if not target or len(every.get("target", ())) > 1:
            return Reply(400, "'target' parameter must be specified once")
        for once in ("auth", "snmp_context", "snmp_engineid"):
            if len(every.get(once, ())) > 1:
                return Reply(400, f"'{once}' parameter must only be specified once")
        if q.get("snmp_context") or q.get("snmp_engineid"):
            return Reply(
                400, "snmp_context and snmp_engineid are not supported; set context_name in the auth"
            )
        asked = every.get("module") or [q.get("module", "")]
        modules = list(dict.fromkeys(m for v in asked for m in v.split(",") if m)) or [DEFAULT_MODULE]
        for m in modules:
            if m not in self.ex_modules and m not in self.modules:
                return Reply(400, f"Unknown module {m[:50]!r}")
        auth_name = q.get("auth", "")
        if auth_name and auth_name not in self.auths:
            return Reply(400, f"Unknown auth {auth_name[:50]!r}")
        t = self._inventory_target(target)
        if t is None and ctx.has_job(f"{self.kind}/{target}"):  # configured, not polled yet
            return cached_target_reply(self.kind, target, ctx)
        if t is not None and set(modules) <= set(t.modules) and auth_name in ("", t.auth):
            reply = cached_target_reply(self.kind, t.name, ctx)
            if reply.families is None:
                return reply
            return Reply(200, families=self.families_for_modules(reply.families, modules))
        return self._on_demand(target, modules, auth_name, request)

    def _on_demand(self, target: str, modules: list[str], auth_name: str, request: RouteRequest) -> Reply:
        hp = split_target(target)
        if hp is None:
            return Reply(400, f"target {target[:100]!r} is not HOST, HOST:PORT or [IPv6]:PORT over UDP")
        host, port = hp
        if not self.cfg.on_demand.allows(host):
            return Reply(
                403,
                f"target {target[:100]!r} with these modules and auth is not in targets.snmp, and "
                "collectors.snmp.on_demand.allow does not list it: the agent polls only devices its "
                "configuration names",
            )
        if not auth_name:
            auth_name = self.cfg.module_auth(modules[0]) or DEFAULT_AUTH
            if auth_name not in self.auths:
                return Reply(400, f"Unknown auth {auth_name!r} (give auth=NAME)")
        budget = 30.0
        with contextlib.suppress(ValueError):
            budget = float(request.headers.get(TIMEOUT_HEADER, "")) - 0.25
        budget = min(max(budget, 0.5), 120.0)
        loop = self._loop
        if loop is None or loop.is_closed():
            return Reply(503, "the SNMP collector is not running")
        if not self._on_demand_slots.acquire(blocking=False):
            return Reply(503, "too many on-demand SNMP polls at once; try again")
        try:
            t = SnmpTarget(
                name=f"{host}:{port}", site="", address=host, port=port, auth=auth_name, modules=modules
            )
            fut = asyncio.run_coroutine_threadsafe(self.poll(t, modules, budget, cache=False), loop)
            try:
                results = fut.result(budget + 5.0)
            except concurrent.futures.TimeoutError:
                fut.cancel()
                return Reply(503, "on-demand poll did not finish in time")
        finally:
            self._on_demand_slots.release()
        families = device_families(results)
        for r in results:
            families.extend(r.families)
        return Reply(200, families=self.families_for_modules(families, modules))

    def families_for_modules(self, families: Sequence[Metric], modules: Sequence[str]) -> list[Metric]:
        """What ``/snmp?module=`` serves of one device's result: the modules' own families, snmp_up
        and the reason for the modules asked, and the meta metrics (a ``module`` label only when
        several modules were asked, as snmp_exporter 0.21 writes one module's)."""
        wanted = set(modules)
        names: set[str] = set()
        for m in modules:
            ex = self.ex_modules.get(m)
            if ex is not None:
                names |= exporter_render.module_metric_names(ex)
            elif m in self.modules:
                names |= {md.name for md in self.modules[m].metrics}
        single = len(modules) == 1
        ok: dict[str, float] = {}
        reasons: dict[str, str] = {}
        for f in families:
            for s in f.samples:
                if f.name == "snmp_module_success":
                    ok[s.labels.get("module", "")] = s.value
                elif f.name == "snmp_module_failure_reason" and s.value == 1:
                    reasons[s.labels.get("module", "")] = s.labels.get("reason", "")
        up = any(ok.get(m) == 1 for m in modules)
        up_f = GaugeMetricFamily("snmp_up", "Whether the device answered SNMP for the modules asked.")
        up_f.add_metric([], 1.0 if up else 0.0)
        out: list[Metric] = [up_f]
        if not up:
            why = GaugeMetricFamily(
                "snmp_failure_reason",
                "Why the device could not be polled (1 for the reason).",
                labels=["reason"],
            )
            why.add_metric([next((reasons[m] for m in modules if m in reasons), "error")], 1.0)
            out.append(why)
        for f in families:
            if f.name in META_NAMES:
                g = Metric(f.name, f.documentation, f.type, f.unit)
                for s in f.samples:
                    if s.labels.get("module") in wanted:
                        labels = {} if single else s.labels
                        g.samples.append(Sample(s.name, labels, s.value))
                out.append(g)
            elif f.name in names:
                out.append(f)
        return out

    async def close(self) -> None:
        for _, client in self._clients.values():
            await client.close()
        self._clients.clear()
        self._engines.close()


def split_target(target: str) -> tuple[str, int] | None:
    """snmp_exporter's target: ``HOST``, ``HOST:PORT``, ``[IPv6]:PORT``, a bare IPv6 address, with an
    optional ``udp://``; None for anything else."""
    if "://" in target:
        scheme, _, target = target.partition("://")
        if scheme != "udp":
            return None
    host, port = target, 161
    if target.startswith("["):
        end = target.find("]")
        if end < 0:
            return None
        host, rest = target[1:end], target[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    elif target.count(":") == 1:
        host, _, p = target.partition(":")
        if not p.isdigit():
            return None
        port = int(p)
    if not host or not 0 < port < 65536 or any(c in host for c in "/?#@ "):
        return None
    return host, port


def device_families(results: list[ModuleResult]) -> list[Metric]:
    """snmp_up and its reason, per-module success, and snmp_exporter's meta metrics per module."""
    up = any(not r.reason for r in results)
    up_f = GaugeMetricFamily("snmp_up", "Whether the device answered SNMP (at least one module succeeded).")
    up_f.add_metric([], 1.0 if up else 0.0)
    ok = GaugeMetricFamily(
        "snmp_module_success", "Whether the module was polled successfully.", labels=["module"]
    )
    why = GaugeMetricFamily(
        "snmp_module_failure_reason",
        "Why the module failed (1 for the reason of the last poll).",
        labels=["module", "reason"],
    )
    meta = {name: GaugeMetricFamily(name, help_text, labels=["module"]) for name, help_text in META_FAMILIES}
    for r in results:
        ok.add_metric([r.name], 0.0 if r.reason else 1.0)
        if r.reason:
            why.add_metric([r.name, r.reason], 1.0)
            continue
        meta["snmp_scrape_walk_duration_seconds"].add_metric([r.name], r.walk_duration)
        meta["snmp_scrape_packets_sent"].add_metric([r.name], float(r.packets))
        meta["snmp_scrape_packets_retried"].add_metric([r.name], float(r.retried))
        meta["snmp_scrape_pdus_returned"].add_metric([r.name], float(r.varbinds))
        meta["snmp_scrape_duration_seconds"].add_metric([r.name], r.duration)
    out: list[Metric] = [up_f, ok, why, *meta.values()]
    if not up:
        fail = GaugeMetricFamily(
            "snmp_failure_reason", "Why the device could not be polled (1 for the reason).", labels=["reason"]
        )
        fail.add_metric([results[0].reason if results else "config"], 1.0)
        out.append(fail)
    return out


# ---------------------------------------------------------------------------------- pure parts


async def fetch_module(
    client: SnmpClient, mod: Module
) -> tuple[dict[str, Value], dict[str, dict[str, Value]], int]:
    """GET the module's scalars and walk its columns: (scalars by OID, rows by column and index, count)."""
    get_oids: list[str] = []
    columns: list[str] = []
    for m in mod.metrics:
        if m.scalar:
            get_oids += [m.oid + ".0", *(lk.oid + ".0" for lk in m.lookups)]
        else:
            columns += [m.oid, *(lk.oid for lk in m.lookups)]
            if m.multiply_by:
                columns.append(m.multiply_by)
    scalars: dict[str, Value] = {}
    uniq_get = list(dict.fromkeys(get_oids))
    for i in range(0, len(uniq_get), GET_BATCH):
        scalars.update(await client.get(uniq_get[i : i + GET_BATCH]))
    tables: dict[str, dict[str, Value]] = {}
    n = len(scalars)
    wanted = list(dict.fromkeys(columns))
    # Subtrees that hold wanted columns are walked whole; the other wanted columns one by one. All in
    # one call: the same requests as walking them in turn, with less event-loop work per request.
    subtrees = [(t, {c for c in wanted if c.startswith(t + ".")}) for t in mod.walk]
    subtrees = [(t, inside) for t, inside in subtrees if inside]
    covered = set().union(*(inside for _, inside in subtrees))
    alone = [c for c in wanted if c not in covered]
    walked = await client.walk_many([t for t, _ in subtrees] + alone)
    for (subtree, inside), rows in zip(subtrees, walked, strict=False):
        n += len(rows)
        for col in inside:
            tables[col] = {}
        for oid, v in rows:
            # Find the wanted column this OID is under: try each arc boundary below the subtree.
            pos = len(subtree)
            while (pos := oid.find(".", pos + 1)) > 0:
                rows_of = tables.get(oid[:pos])
                if rows_of is not None and oid[:pos] in inside:
                    rows_of[oid[pos + 1 :]] = v
                    break
    for col, rows in zip(alone, walked[len(subtrees) :], strict=True):
        cut = len(col) + 1
        tables[col] = {oid[cut:]: v for oid, v in rows}
        n += len(rows)
    return scalars, tables, n


def format_string(raw: Value, fmt: str) -> str:
    """A label value from an SNMP value; octet strings as text, hex, MAC or IPv4 address."""
    if isinstance(raw, bytes):
        if fmt == "hex":
            s = "0x" + raw.hex().upper() if raw else ""
        elif fmt == "mac":
            s = ":".join(f"{b:02X}" for b in raw)
        elif fmt == "ip" and len(raw) in (4, 16):
            s = str(ipaddress.ip_address(raw))
        else:
            s = raw.decode("utf-8", errors="replace").replace("\x00", "").strip()
    elif isinstance(raw, float):
        s = repr(raw)
    else:
        s = str(raw)
    return s[:MAX_LABEL_LENGTH]


def _number(raw: Value | None) -> float | None:
    if raw is None or isinstance(raw, str):
        return None
    if isinstance(raw, bytes):  # some UPS and vendor MIBs send numbers as DisplayString
        try:
            return float(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return None
    return float(raw)


def parse_index(suffix: str, metric: MetricDef) -> list[str] | None:
    """Label values from a row's index; None when the index does not fit the declared types."""
    try:
        parts = [int(p) for p in suffix.split(".")]
    except ValueError:
        return None
    out: list[str] = []
    for idx in metric.indexes:
        if not parts:
            return None
        if idx.type == "integer":
            out.append(str(parts.pop(0)))
        elif idx.type == "ipv4":
            if len(parts) < 4:
                return None
            out.append(".".join(str(p) for p in parts[:4]))
            parts = parts[4:]
        elif idx.type == "string":
            n = parts.pop(0)
            if len(parts) < n or any(not 0 <= p < 256 for p in parts[:n]):
                return None
            out.append(bytes(parts[:n]).decode("utf-8", errors="replace")[:MAX_LABEL_LENGTH])
            parts = parts[n:]
        else:  # rest
            out.append(".".join(str(p) for p in parts))
            parts = []
    return out


def _family(m: MetricDef, labelnames: list[str]) -> Metric:
    help_text = f"{m.help or m.name} - {m.oid}"
    if m.type == "counter":
        # Kept as snmp_exporter names it (ifHCInOctets, no _total) so existing dashboards work.
        return Metric(m.name, help_text, "counter")
    return GaugeMetricFamily(m.name, help_text, labels=labelnames)


def _add(fam: Metric, name: str, labelnames: list[str], values: list[str], value: float) -> None:
    fam.samples.append(Sample(name, dict(zip(labelnames, values, strict=True)), value))


def _emit(
    fam: Metric, m: MetricDef, labelnames: list[str], labels: list[str], raw: Value, factor: float | None
) -> None:
    if m.type == "info":
        _add(fam, m.name, [*labelnames, m.value_label], [*labels, format_string(raw, m.format)], 1.0)
        return
    num = _number(raw)
    if num is None:
        return
    if m.type == "enum":
        cur = int(num)
        states = dict(m.enum_values)
        if cur not in states:
            states[cur] = str(cur)
        for k, state in states.items():
            _add(fam, m.name, [*labelnames, m.value_label], [*labels, state], 1.0 if k == cur else 0.0)
        return
    value = num * m.scale
    if m.type == "timeticks":
        value /= 100.0
    if factor is not None:
        value *= factor
    _add(fam, m.name, labelnames, labels, value)


def build_families(
    mod: Module, scalars: dict[str, Value], tables: dict[str, dict[str, Value]]
) -> list[Metric]:
    """Metric families from fetched values; rows with an unparsable index or a non-numeric value are
    left out rather than failing the module."""
    out: list[Metric] = []
    # Row labels depend only on (indexes, lookups), shared by most columns of a table: compute once.
    row_labels: dict[tuple[str, ...], dict[str, list[str] | None]] = {}
    # Samples of one row share one (read-only) label dict.
    label_dicts: dict[tuple[str, ...], dict[str, dict[str, str]]] = {}
    for m in mod.metrics:
        labelnames = [i.labelname for i in m.indexes] + [lk.labelname for lk in m.lookups]
        fam = _family(m, labelnames)
        if m.scalar:
            raw = scalars.get(m.oid + ".0")
            if raw is not None:
                labels = [
                    format_string(scalars[lk.oid + ".0"], lk.format) if lk.oid + ".0" in scalars else ""
                    for lk in m.lookups
                ]
                _emit(fam, m, labelnames, labels, raw, None)
        else:
            # plain strings: hashing the pydantic models themselves costs more than the whole build
            key = (
                *(f"{i.labelname}:{i.type}" for i in m.indexes),
                "|",
                *(f"{lk.labelname}:{lk.oid}:{lk.format}" for lk in m.lookups),
            )
            cache = row_labels.setdefault(key, {})
            dicts = label_dicts.setdefault(key, {})
            lookups = [(lk, tables.get(lk.oid, {})) for lk in m.lookups]
            factors = tables.get(m.multiply_by, {}) if m.multiply_by else None
            plain = m.type in ("gauge", "counter", "timeticks") and factors is None
            mult = m.scale / 100.0 if m.type == "timeticks" else m.scale
            samples = fam.samples
            for suffix, raw in tables.get(m.oid, {}).items():
                if suffix in cache:
                    labels_or_none = cache[suffix]
                else:
                    idx = parse_index(suffix, m)
                    labels_or_none = cache[suffix] = (
                        None
                        if idx is None
                        else idx
                        + [
                            format_string(rows[suffix], lk.format) if suffix in rows else ""
                            for lk, rows in lookups
                        ]
                    )
                if labels_or_none is None:
                    continue
                if plain and type(raw) is int:
                    # The common case (counters and gauges of a table), kept tight: one poll of a
                    # 50-port switch builds ~550 samples, a full ifTable+ifXTable ~2000.
                    ldict = dicts.get(suffix)
                    if ldict is None:
                        ldict = dicts[suffix] = dict(zip(labelnames, labels_or_none, strict=True))
                    samples.append(Sample(m.name, ldict, raw * mult))
                    continue
                factor: float | None = None
                if factors is not None:
                    factor = _number(factors.get(suffix))
                    if factor is None:
                        continue
                _emit(fam, m, labelnames, labels_or_none, raw, factor)
        if fam.samples:
            out.append(fam)
    return out
