"""SNMP collector: polls one device per job with its modules, the snmp_exporter way.

A device that does not answer is data (``snmp_up 0`` plus ``snmp_failure_reason{reason}``); one failing
module is reported by ``snmp_module_success{module} 0`` while the others are still served. The whole
device poll runs under the job's deadline, so a dead device never delays the others, and concurrent
polls are bounded by ``max_concurrent_devices``.
"""

from __future__ import annotations

import asyncio
import ipaddress
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
from collectors.snmp.modules import SHIPPED

#: families every poll carries, served with any module on /snmp
DEVICE_FAMILIES = frozenset(
    {"snmp_up", "snmp_failure_reason", "snmp_scrape_duration_seconds", "snmp_scrape_pdus_returned"}
)
#: families with a ``module`` label, filtered to the module on /snmp
MODULE_FAMILIES = frozenset(
    {"snmp_module_success", "snmp_scrape_walk_duration_seconds", "snmp_module_failure_reason"}
)
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
        self._clients: dict[str, tuple[tuple[object, ...], SnmpClient]] = {}
        self._engines = PysnmpEngines()
        self._sem = asyncio.Semaphore(settings.max_concurrent_devices)
        self._last_state: dict[tuple[str, str], str] = {}
        self._checked: dict[str, tuple[SnmpTarget, list[tuple[int, str, str]]]] = {}
        self._resolver = Resolver(ctx.log)

    # ------------------------------------------------------------------------------ config checks

    @classmethod
    def check_targets(
        cls, settings: CollectorSettings, targets: Sequence[TargetConfig]
    ) -> list[tuple[int, str, str]]:
        """Cross-checks the config models cannot do alone: (target index, key, problem)."""
        assert isinstance(settings, SnmpSettings)
        known = {**SHIPPED, **settings.modules}
        problems: list[tuple[int, str, str]] = []
        for i, t in enumerate(targets):
            assert isinstance(t, SnmpTarget)
            if t.auth not in settings.auths:
                problems.append((i, "auth", f"unknown auth {t.auth!r}; known: {sorted(settings.auths)}"))
            else:
                a = settings.auths[t.auth]
                if (t.engine or settings.engine) == "gufo" and a.version == 3 and a.context_name:
                    problems.append(
                        (i, "engine", "gufo-snmp has no SNMPv3 context support; use engine: pysnmp")
                    )
            for j, m in enumerate(t.modules):
                if m not in known:
                    problems.append((i, f"modules[{j}]", f"unknown module {m!r}; known: {sorted(known)}"))
            seen: dict[str, str] = {}
            for m in t.modules:
                for md in known[m].metrics if m in known else []:
                    if md.name in seen and seen[md.name] != m:
                        problems.append(
                            (i, "modules", f"modules {seen[md.name]!r} and {m!r} both define {md.name!r}")
                        )
                    seen.setdefault(md.name, m)
        return problems

    # ------------------------------------------------------------------------------ polling

    def _client(self, t: SnmpTarget, auth: Auth) -> SnmpClient:
        cfg = self.cfg
        ep = SnmpEndpoint(
            host=t.address,
            port=t.port,
            auth=auth,
            auth_name=t.auth,
            timeout=t.request_timeout or cfg.request_timeout,
            retries=t.retries if t.retries is not None else cfg.retries,
            max_repetitions=t.max_repetitions or cfg.max_repetitions,
            max_varbinds=cfg.max_varbinds_per_walk,
            resolver=self._resolver,
        )
        engine = t.engine or cfg.engine
        key = (ep, engine)
        cached = self._clients.get(t.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        client: SnmpClient = (
            GufoClient(ep) if engine == "gufo" else PysnmpClient(ep, self._engines.get(t.auth))
        )
        self._clients[t.name] = (key, client)
        return client

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, SnmpTarget)
        checked = self._checked.get(target.name)
        if checked is None or checked[0] is not target:  # once per target (config is immutable)
            checked = self._checked[target.name] = (target, self.check_targets(self.cfg, [target]))
        problems = checked[1]
        if problems:
            raise CollectError("config", "; ".join(f"{key}: {msg}" for _, key, msg in problems))
        auth = self.cfg.auths[target.auth]
        # Finish inside the job's deadline so a dead device is reported as data, not as a killed job.
        start = time.monotonic()
        budget = deadline.left(margin=0.2)
        results: list[ModuleResult] = []
        async with self._sem:
            try:
                client = self._client(target, auth)
            except SnmpClientError as exc:
                raise CollectError(exc.reason, exc.message) from None
            device_deadline = start + budget
            for name in target.modules:
                results.append(await self._poll_module(client, name, device_deadline))
        duration = time.monotonic() - start
        out = self._device_families(target, results, duration)
        for r in results:
            out.extend(r.families)
        return out

    async def _poll_module(self, client: SnmpClient, name: str, deadline: float) -> ModuleResult:
        mod = self.modules[name]
        start = time.monotonic()
        remaining = deadline - start
        try:
            if remaining <= 0:
                raise SnmpClientError("timeout", "no time left in the device's deadline")
            async with asyncio.timeout(remaining):
                scalars, tables, n = await fetch_module(client, mod)
            families = build_families(mod, scalars, tables)
            return ModuleResult(name, families, time.monotonic() - start, n)
        except TimeoutError:
            # Cut off mid-request: a late reply must not be read as the answer to the next request.
            await client.close()
            return ModuleResult(
                name, [], time.monotonic() - start, 0, "timeout", "device deadline reached during the module"
            )
        except SnmpClientError as exc:
            return ModuleResult(name, [], time.monotonic() - start, 0, exc.reason, exc.message)

    def _device_families(self, t: SnmpTarget, results: list[ModuleResult], duration: float) -> list[Metric]:
        up = any(not r.reason for r in results)
        up_f = GaugeMetricFamily(
            "snmp_up", "Whether the device answered SNMP (at least one module succeeded)."
        )
        up_f.add_metric([], 1.0 if up else 0.0)
        dur = GaugeMetricFamily("snmp_scrape_duration_seconds", "Total SNMP time taken for the device.")
        dur.add_metric([], duration)
        pdus = GaugeMetricFamily(
            "snmp_scrape_pdus_returned", "Varbinds received from the device in this poll."
        )
        pdus.add_metric([], float(sum(r.varbinds for r in results)))
        ok = GaugeMetricFamily(
            "snmp_module_success", "Whether the module was polled successfully.", labels=["module"]
        )
        walk = GaugeMetricFamily(
            "snmp_scrape_walk_duration_seconds", "Time SNMP took for the module.", labels=["module"]
        )
        why = GaugeMetricFamily(
            "snmp_module_failure_reason",
            "Why the module failed (1 for the reason of the last poll).",
            labels=["module", "reason"],
        )
        for r in results:
            ok.add_metric([r.name], 0.0 if r.reason else 1.0)
            walk.add_metric([r.name], r.duration)
            if r.reason:
                why.add_metric([r.name, r.reason], 1.0)
        out: list[Metric] = [up_f, dur, pdus, ok, walk, why]
        if not up:
            fail = GaugeMetricFamily(
                "snmp_failure_reason",
                "Why the device could not be polled (1 for the reason).",
                labels=["reason"],
            )
            fail.add_metric([results[0].reason], 1.0)
            out.append(fail)
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
        """``/probe?module=snmp`` as every target kind, and snmp_exporter's ``/snmp?target=&module=``."""
        return (*super().routes(), Route("/snmp", self._snmp_route))

    def _snmp_route(self, request: RouteRequest, ctx: RouteContext) -> Reply:
        target, module = request.query.get("target", ""), request.query.get("module", "")
        if not target:
            return Reply(400, "target parameter is missing")
        reply = cached_target_reply(self.kind, target, ctx)
        if reply.families is None or not module:
            return reply
        chosen = self.families_for_module(reply.families, module)
        if chosen is None:
            return Reply(404, f"unknown module {module[:50]!r}")
        return Reply(200, families=chosen)

    def families_for_module(self, families: Sequence[Metric], module: str) -> list[Metric] | None:
        """The part of one device's cached result that ``/snmp?module=`` serves; None = unknown module."""
        mod = self.modules.get(module)
        if mod is None:
            return None
        polled = any(
            s.labels.get("module") == module
            for f in families
            if f.name == "snmp_module_success"
            for s in f.samples
        )
        if not polled:
            return None
        names = {m.name for m in mod.metrics}
        out: list[Metric] = []
        for f in families:
            if f.name in names or f.name in DEVICE_FAMILIES:
                out.append(f)
            elif f.name in MODULE_FAMILIES:
                g = Metric(f.name, f.documentation, f.type, f.unit)
                g.samples = [s for s in f.samples if s.labels.get("module") == module]
                out.append(g)
        return out

    async def close(self) -> None:
        for _, client in self._clients.values():
            await client.close()
        self._clients.clear()
        self._engines.close()


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
