"""Polling and rendering of snmp_exporter modules, with snmp_exporter's semantics (collector.go).

What to ask: the module's ``get`` OIDs (in batches of ``max_repetitions``) and ``walk`` subtrees, after
its dynamic filters narrowed them. What to make of the answer: each varbind goes to the metric whose OID
is its shortest prefix; the rest of its OID is the index, turned into labels by the index types;
lookups add labels from other varbinds (chained through the looked-up value); the metric type says how
the value is rendered (numbers, strings as a label, enums, bits, dates). Values are computed as
snmp_exporter does, so a dashboard reads the same numbers from either.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import weakref
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from collectors.snmp.client import SnmpClient, SnmpClientError, Value
from collectors.snmp.exporter_config import ExLookup, ExMetric, ExModule, go_regex

#: snmp_exporter --snmp.wrap-large-counters (default on): Counter64 values wrap at 2^53
FLOAT64_MANTISSA = 1 << 53

#: types whose real type is given by the preceding column (collector.go combinedTypeMapping)
COMBINED: dict[str, dict[int, str]] = {
    "InetAddress": {1: "InetAddressIPv4", 2: "InetAddressIPv6"},
    "InetAddressMissingSize": {1: "InetAddressIPv4", 2: "InetAddressIPv6"},
    "LldpPortId": {
        1: "DisplayString",
        2: "DisplayString",
        3: "PhysAddress48",
        5: "DisplayString",
        7: "DisplayString",
    },
}
_INVALID_RUN = re.compile("[\udc80-\udcff]+")


def to_valid_utf8(raw: bytes) -> str:
    """Go's ``strings.ToValidUTF8(s, "\ufffd")``: each run of invalid bytes becomes one U+FFFD."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _INVALID_RUN.sub("\ufffd", raw.decode("utf-8", errors="surrogateescape"))


def pdu_value(v: Value) -> float:
    """collector.go getPduValue: numbers as they are (Counter64 wrapped at 2^53), anything else 0."""
    if type(v) is int:
        return float(v % FLOAT64_MANTISSA) if v >= FLOAT64_MANTISSA else float(v)
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        try:
            return float(int(v))
        except ValueError:
            return 0.0
    return 0.0


def _split(oids: list[int], count: int) -> tuple[list[int], list[int]]:
    """Right-pad with zeros and split (some agents leave trailing zeros out)."""
    head = oids[:count]
    if len(head) < count:
        head = head + [0] * (count - len(head))
    return head, oids[count:]


def index_as_string(
    oids: list[int], typ: str, fixed: int, implied: bool, enums: dict[int, str] | None
) -> tuple[str, list[int], list[int]]:
    """collector.go indexOidsAsString: (label value, sub-identifiers used, sub-identifiers left)."""
    mapping = COMBINED.get(typ)
    if mapping is not None:
        sub, rest = _split(oids, 2)
        if typ == "InetAddressMissingSize":
            sub, rest = _split(oids, 1)
        real = mapping.get(sub[0])
        if real is not None:
            s, used, left = index_as_string(rest, real, 0, False, enums)
            return s, sub + used, left
        if typ == "InetAddressMissingSize":
            return index_as_string(oids, "OctetString", 0, True, enums)
        return index_as_string(oids, "OctetString", sub[1] + 2, False, enums)
    if typ in ("Integer32", "Integer", "gauge", "counter"):
        sub, rest = _split(oids, 1)
        return str(sub[0]), sub, rest
    if typ == "PhysAddress48":
        sub, rest = _split(oids, 6)
        return ":".join(f"{o:02X}" for o in sub), sub, rest
    if typ in ("OctetString", "DisplayString"):
        length = len(oids) if implied else fixed
        taken: list[int] = []
        if length == 0:
            taken, oids = _split(oids, 1)
            length = taken[0]
        content, rest = _split(oids, length)
        taken = taken + content
        raw = bytes(o & 0xFF for o in content)
        if typ == "DisplayString":
            return to_valid_utf8(raw), taken, rest
        return ("0x" + raw.hex().upper()) if raw else "", taken, rest
    if typ == "InetAddressIPv4":
        sub, rest = _split(oids, 4)
        return ".".join(str(o) for o in sub), sub, rest
    if typ == "InetAddressIPv6":
        sub, rest = _split(oids, 16)
        return ":".join(f"{sub[i]:02X}{sub[i + 1]:02X}" for i in range(0, 16, 2)), sub, rest
    if typ == "EnumAsInfo":
        sub, rest = _split(oids, 1)
        return (enums or {}).get(sub[0], str(sub[0])), sub, rest
    raise ValueError(f"unknown index type {typ}")  # refused when the module file is read


def value_as_string(v: Value, typ: str) -> str:
    """collector.go pduValueAsString."""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return v[1:] if v.startswith(".") else v
    if typ in ("", "Bits"):
        typ = "OctetString"
    parts = list(v)
    if typ in ("OctetString", "DisplayString"):
        parts = [len(v), *parts]
    try:
        return index_as_string(parts, typ, 0, False, None)[0]
    except ValueError:
        return index_as_string(parts, "OctetString", 0, False, None)[0]


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year, as Go's time.Date takes)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _date_and_time(v: Value) -> float | None:
    """RFC 2579 DateAndTime as a Unix time, out-of-range fields carried over as Go's time.Date does
    (net-snmp's "never" is year 0)."""
    if not isinstance(v, bytes) or len(v) not in (8, 11):
        return None
    offset = 0
    if len(v) == 11:
        if chr(v[8]) not in "+-" or v[9] > 24 or v[10] > 60:
            return None
        offset = (v[9] * 3600 + v[10] * 60) * (1 if chr(v[8]) == "+" else -1)
    year = struct.unpack(">H", v[:2])[0]
    month0 = v[2] - 1
    year += month0 // 12
    days = _days_from_civil(year, month0 % 12 + 1, 1) + v[3] - 1
    secs = days * 86400 + v[4] * 3600 + v[5] * 60 + v[6] + v[7] // 10 - offset
    return float(secs)


def _ntp(v: Value) -> float | None:
    if not isinstance(v, bytes) or len(v) < 8:
        return None
    return float(struct.unpack(">I", v[:4])[0] - 2208988800)


def _parse_datetime(v: Value, pattern: str) -> float | None:
    s = v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
    try:
        t = dt.datetime.strptime(
            s,
            pattern.replace("%e", "%d")
            .replace("%T", "%H:%M:%S")
            .replace("%D", "%m/%d/%y")
            .replace("%F", "%Y-%m-%d")
            .replace("%R", "%H:%M"),
        )
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return float(int(t.timestamp()))


def _prev_oid(oid: str) -> str:
    head, _, last = oid.rpartition(".")
    return f"{head}.{int(last) - 1}"


@dataclass
class _Compiled:
    """A module ready to render: metrics by OID and what each needs, computed once."""

    metrics: dict[str, ExMetric]
    help: dict[str, str]
    regexes: dict[str, list[tuple[str, list[tuple[re.Pattern[str], str]]]]]
    #: metric OID -> id of its (indexes, lookups): metrics with the same one share a row's labels
    sigs: dict[str, int] = field(default_factory=dict)
    resolve_cache: dict[str, ExMetric | None] = field(default_factory=dict)
    index_cache: dict[tuple[str, str], tuple[dict[str, str], dict[str, list[int]]]] = field(
        default_factory=dict
    )


_COMPILED: dict[int, tuple[weakref.ref[ExModule], _Compiled]] = {}  # by id: pydantic models hash their fields


def compiled(mod: ExModule) -> _Compiled:
    got = _COMPILED.get(id(mod))
    if got is not None and got[0]() is mod:
        return got[1]
    metrics: dict[str, ExMetric] = {}
    for m in mod.metrics:
        metrics.setdefault(m.oid, m)
    c = _Compiled(
        metrics=metrics,
        help={m.name: m.help for m in mod.metrics},
        regexes={
            m.oid: [
                (suffix, [(re.compile(go_regex(x.regex)), x.value) for x in extracts])
                for suffix, extracts in m.regex_extracts.items()
            ]
            for m in mod.metrics
            if m.regex_extracts
        },
    )
    seen: dict[str, int] = {}
    for m in mod.metrics:
        sig = repr(([i.model_dump() for i in m.indexes], [lk.model_dump() for lk in m.lookups]))
        c.sigs[m.oid] = seen.setdefault(sig, len(seen))
    _COMPILED[id(mod)] = (weakref.ref(mod), c)
    # dropped with the module (a reload reads module files anew)
    weakref.finalize(mod, _COMPILED.pop, id(mod), None)
    return c


def _resolve(c: _Compiled, oid: str) -> tuple[ExMetric, str] | None:
    """The metric whose OID is the shortest prefix of ``oid`` (whole arcs), and the index suffix."""
    head = oid.rpartition(".")[0]
    if head in c.resolve_cache:
        m = c.resolve_cache[head]
    else:
        m = None
        pos = 0
        while True:
            pos = oid.find(".", pos + 1)
            if pos < 0 or pos > len(head):
                break
            m = c.metrics.get(oid[:pos])
            if m is not None:
                break
        c.resolve_cache[head] = m
    if m is None:
        m = c.metrics.get(oid)
        if m is None:
            return None
        return m, ""
    return m, oid[len(m.oid) + 1 :]


def _go_expand(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.ExpandString: $1, ${1}, $name, ${name}; $$ is a dollar."""

    def sub(mo: re.Match[str]) -> str:
        if mo.group(0) == "$$":
            return "$"
        name = mo.group(1) or mo.group(2)
        try:
            got = match.group(int(name)) if name.isdigit() else match.group(name)
        except IndexError:
            return ""
        return got or ""

    return re.sub(r"\$\$|\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)", sub, template)


def _go_float(s: str) -> float | None:
    try:
        return float(s.strip() if s != s.strip() else s)
    except ValueError:
        return None


class Rendered:
    """Samples by family, in first-seen order."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}

    def add(self, name: str, help_text: str, typ: str, labels: dict[str, str], value: float) -> None:
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = Metric(name, help_text, typ)
        fam.samples.append(Sample(name, labels, value))


def render(mod: ExModule, pdus: dict[str, Value]) -> list[Metric]:
    """Families from a module's varbinds (OID without leading dot -> value)."""
    c = compiled(mod)
    if len(c.index_cache) > 200_000:  # index values that keep changing (process tables)
        c.index_cache.clear()
    out = Rendered()
    families = out.families
    lookup_cache: dict[tuple[str, str], tuple[str, int]] = {}
    rows: dict[tuple[int, str], dict[str, str]] = {}  # one label dict per row, shared by its samples
    sigs, resolved = c.sigs, c.resolve_cache
    for oid, v in pdus.items():
        head, _, last = oid.rpartition(".")
        m = resolved.get(head)
        if m is not None and len(m.oid) == len(head):  # a column's row with a one-arc index
            suffix = last
        else:
            hit = _resolve(c, oid)
            if hit is None:
                continue
            m, suffix = hit
        key = (sigs[m.oid], suffix)
        labels = rows.get(key)
        if labels is None:
            labels = rows[key] = _labels(c, m, suffix, pdus, lookup_cache)[0]
        typ = m.type
        if (typ == "gauge" or typ == "counter") and type(v) is int and not m.scale and not m.offset:
            # the common case, kept tight: a 50-port if_mib poll is ~2000 of these
            fam = families.get(m.name)
            if fam is None:
                fam = families[m.name] = Metric(m.name, m.help, typ)
            fam.samples.append(
                Sample(m.name, labels, float(v % FLOAT64_MANTISSA if v >= FLOAT64_MANTISSA else v))
            )
            continue
        _samples(c, m, suffix, v, pdus, out, dict(labels))
    return list(families.values())


def _labels(
    c: _Compiled,
    m: ExMetric,
    suffix: str,
    pdus: dict[str, Value],
    lookup_cache: dict[tuple[str, str], tuple[str, int]],
) -> tuple[dict[str, str], dict[str, list[int]]]:
    key = (m.oid, suffix)
    cached = c.index_cache.get(key)
    if cached is None:
        oids = [int(x) for x in suffix.split(".")] if suffix else []
        labels: dict[str, str] = {}
        label_oids: dict[str, list[int]] = {}
        for idx in m.indexes:
            s, used, oids = index_as_string(oids, idx.type, idx.fixed_size, idx.implied, idx.enum_values)
            labels[idx.labelname] = s
            label_oids[idx.labelname] = used
        cached = c.index_cache[key] = (labels, label_oids)
    if not m.lookups:
        return dict(cached[0]), cached[1]
    labels = dict(cached[0])
    label_oids = dict(cached[1])
    for lk in m.lookups:
        _lookup(lk, labels, label_oids, pdus, lookup_cache)
    return labels, label_oids


def _lookup(
    lk: ExLookup,
    labels: dict[str, str],
    label_oids: dict[str, list[int]],
    pdus: dict[str, Value],
    cache: dict[tuple[str, str], tuple[str, int]],
) -> None:
    if not lk.labels:
        labels.pop(lk.labelname, None)
        return
    tail = ".".join(".".join(map(str, label_oids.get(lb, []))) for lb in lk.labels)
    oid = f"{lk.oid}.{tail}"
    key = (oid, lk.type)
    got = cache.get(key)
    if got is None:
        v = pdus.get(oid)
        if v is None:
            labels[lk.labelname] = ""
            return
        typ: str = lk.type
        mapping = COMBINED.get(typ)
        if mapping is not None:
            prev = pdus.get(f"{_prev_oid(lk.oid)}.{tail}")
            if prev is not None and int(pdu_value(prev)) in mapping:
                typ = mapping[int(pdu_value(prev))]
        got = cache[key] = (value_as_string(v, typ), int(pdu_value(v)))
    labels[lk.labelname] = got[0]
    label_oids[lk.labelname] = [got[1]]


def _samples(
    c: _Compiled,
    m: ExMetric,
    suffix: str,
    v: Value,
    pdus: dict[str, Value],
    out: Rendered,
    labels: dict[str, str],
) -> None:
    value = pdu_value(v)
    typ: str = m.type
    family_type = "gauge"
    got: float | None
    if typ == "counter":
        family_type = "counter"
    elif typ in ("gauge", "Float", "Double"):
        pass
    elif typ == "DateAndTime":
        got = _date_and_time(v)
        if got is None:
            return
        value = got
    elif typ == "ParseDateAndTime":
        got = _parse_datetime(v, m.datetime_pattern)
        if got is None:
            return
        value = got
    elif typ == "NTPTimeStamp":
        got = _ntp(v)
        if got is None:
            return
        value = got
    elif typ == "EnumAsInfo":
        state = m.enum_values.get(int(value), str(int(value)))
        out.add(m.name + "_info", m.help + " (EnumAsInfo)", "gauge", {**labels, m.name: state}, 1.0)
        return
    elif typ == "EnumAsStateSet":
        cur = int(value)
        help_text = m.help + " (EnumAsStateSet)"
        out.add(m.name, help_text, "gauge", {**labels, m.name: m.enum_values.get(cur, str(cur))}, 1.0)
        for k, state in m.enum_values.items():
            if k != cur:
                out.add(m.name, help_text, "gauge", {**labels, m.name: state}, 0.0)
        return
    elif typ == "Bits":
        if not isinstance(v, bytes):
            return
        help_text = m.help + " (Bits)"
        for k, state in m.enum_values.items():
            bit = 1.0 if k < len(v) * 8 and v[k // 8] & (128 >> (k % 8)) else 0.0
            out.add(m.name, help_text, "gauge", {**labels, m.name: state}, bit)
        return
    else:
        value = 1.0
        mapping = COMBINED.get(typ)
        if mapping is not None:
            prev = pdus.get(f"{_prev_oid(m.oid)}.{suffix}")
            typ = mapping.get(int(pdu_value(prev)), "OctetString") if prev is not None else "OctetString"
        text = value_as_string(v, typ)
        extracts = c.regexes.get(m.oid)
        if extracts:
            for name_suffix, rules in extracts:
                for rx, template in rules:
                    mo = rx.match(text)
                    if mo is None:
                        continue
                    num = _go_float(_go_expand(template, mo))
                    if num is None:
                        continue
                    out.add(m.name + name_suffix, m.help + " (regex extracted)", "gauge", labels, num)
                    break
            return
        if m.name not in labels:
            labels[m.name] = text
    if m.scale != 0.0:
        value *= m.scale
    value += m.offset
    out.add(m.name, m.help, family_type, labels, value)


@dataclass
class Fetched:
    pdus: dict[str, Value]
    count: int


async def fetch(client: SnmpClient, mod: ExModule, version: int) -> Fetched:
    """The module's varbinds, as snmp_exporter's ScrapeTarget asks for them."""
    walk, get = mod.resolved()
    for flt in mod.dynamic_filters:
        try:
            rows = await client.walk(flt.oid)
        except SnmpClientError:  # snmp_exporter: no filtering on this OID when its walk fails
            continue
        rx = [re.compile(go_regex(x, anchored=False)) for x in flt.values]
        allowed = []
        for o, val in rows:
            text = value_as_string(val, "DisplayString")
            if any(r.search(text) for r in rx):
                allowed.append(o.rpartition(".")[2])
        walk = [w for w in walk if w not in flt.targets]
        get = [g for g in get if not any(g.startswith(t) for t in flt.targets)]
        get += [f"{t}.{i}" for t in flt.targets for i in allowed]
    pdus: dict[str, Value] = {}
    count = 0
    batch = mod.max_repetitions if mod.max_repetitions and version != 1 else 1
    for i in range(0, len(get), batch):
        got = await client.get(get[i : i + batch])
        count += len(got)
        pdus.update({k.lstrip("."): val for k, val in got.items()})
    if walk:
        for root, rows in zip(walk, await client.walk_many(walk), strict=True):
            if not rows:
                # gosnmp's walk: nothing under the root, so the root may be a leaf: GET it
                rows = list((await client.get([root])).items())
            count += len(rows)
            for o, val in rows:
                pdus[o.lstrip(".")] = val
    return Fetched(pdus, count)


def module_metric_names(mod: ExModule) -> set[str]:
    """Every family name the module can produce (for serving one module of a cached result)."""
    names: set[str] = set()
    for m in mod.metrics:
        if m.type == "EnumAsInfo":
            names.add(m.name + "_info")
        elif m.regex_extracts:
            names.update(m.name + s for s in m.regex_extracts)
        else:
            names.add(m.name)
    return names
