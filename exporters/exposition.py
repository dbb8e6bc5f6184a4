"""Render stored results as Prometheus text (0.0.4) or OpenMetrics, merged across jobs.

Each job's families are rendered once per result (cached on the immutable result) with its ``site`` and
``target`` labels added, so a scrape only concatenates. Label values are length-bounded and made valid
UTF-8, and a series or name that another job already exposed is left out (and counted) rather than
letting one odd device break the whole scrape, as a duplicate series would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as om_generate

from agent.store import JobResult

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def clean_label_value(value: object, max_len: int) -> str:
    s = str(value)
    if len(s) > max_len:
        s = s[:max_len]
    # Strings decoded from devices may carry lone surrogates; they cannot be encoded as UTF-8.
    return s.encode("utf-8", "replace").decode("utf-8")


def format_value(v: float) -> str:
    r = repr(float(v))
    # repr() spells the special values nan, inf and -inf; the exposition format wants NaN, +Inf, -Inf.
    return _SPECIAL.get(r, r) if r[-1] in "nf" else r


_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def _escape_label(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n")


def exposed_name_and_type(fam: Metric) -> tuple[str, str]:
    name, typ = fam.name, fam.type
    if typ == "counter":
        # snmp_exporter-style counters (ifHCInOctets) have samples without _total: keep the name as is.
        if fam.samples and all(s.name == name for s in fam.samples):
            return name, "counter"
        return name + "_total", "counter"
    if typ == "info":
        return name + "_info", "gauge"
    if typ == "stateset":
        return name, "gauge"
    if typ == "gaugehistogram":
        return name, "histogram"
    if typ == "unknown":
        return name, "untyped"
    return name, typ


@dataclass
class RenderedFamily:
    name: str
    help: str
    type: str
    lines: list[str] = field(default_factory=list)
    #: length of each line's series key (``name{labels}``), the prefix that identifies the series: kept
    #: as a length, not a second string, since rendered results stay cached (10 000 ICMP targets are
    #: ~370 000 lines)
    key_lens: list[int] = field(default_factory=list)


#: Rendered label pairs of a label dict (without the result's site/target), keyed by the dict's id;
#: the entry keeps the dict so an id is never reused while it is in the map.
LabelMemo = dict[int, tuple[dict[str, str], str, frozenset[str]]]


def render_families(
    families: Iterable[Metric],
    extra: Sequence[tuple[str, str]],
    max_label_length: int,
    memo: LabelMemo | None = None,
) -> list[RenderedFamily]:
    """Exposition lines of ``families`` with the ``extra`` labels (site, target) added.

    Collectors share one label dict between samples (a table row's samples, every target's
    ``{"probe": "icmp"}``, the histogram's ``le`` dicts), so a dict's labels are rendered once per
    ``memo`` (pass one memo to many calls, e.g. all results of one scrape) and only the result's own
    labels are appended per sample.
    """
    if memo is None:
        memo = {}
    extra_keys = frozenset(k for k, _ in extra)
    extra_body = ",".join(f'{k}="{_escape_label(v)}"' for k, v in extra)
    out: list[RenderedFamily] = []
    for fam in families:
        name, typ = exposed_name_and_type(fam)
        rf = RenderedFamily(name, fam.documentation, typ)
        lines, key_lens = rf.lines, rf.key_lens
        seen: set[str] = set()
        for s in fam.samples:
            sname = s.name
            if sname.endswith("_created"):
                continue
            labels = s.labels
            hit = memo.get(id(labels))
            if hit is None or hit[0] is not labels:
                own = ",".join(
                    f'{k}="{_escape_label(clean_label_value(v, max_label_length))}"'
                    for k, v in labels.items()
                )
                hit = memo[id(labels)] = (labels, own, frozenset(labels))
            own, present = hit[1], hit[2]
            if present.isdisjoint(extra_keys):
                tail = extra_body
            else:  # the sample's own site/target win
                tail = ",".join(f'{k}="{_escape_label(v)}"' for k, v in extra if k not in present)
            body = f"{own},{tail}" if own and tail else own or tail
            key = f"{sname}{{{body}}}" if body else sname
            if key in seen:
                continue
            seen.add(key)
            line = f"{key} {format_value(s.value)}"
            if s.timestamp is not None:
                line += f" {int(float(s.timestamp) * 1000)}"
            lines.append(line)
            key_lens.append(len(key))
        out.append(rf)
    return out


def result_labels(r: JobResult, max_label_length: int) -> list[tuple[str, str]]:
    extra: list[tuple[str, str]] = []
    if r.site:
        extra.append(("site", clean_label_value(r.site, max_label_length)))
    if r.target:
        extra.append(("target", clean_label_value(r.target, max_label_length)))
    return extra


def _cached_render(
    r: JobResult, max_label_length: int, memo: LabelMemo | None = None
) -> list[RenderedFamily]:
    cache_key = f"text:{max_label_length}"
    cached = r.rendered.get(cache_key)
    if cached is None:
        cached = render_families(r.families, result_labels(r, max_label_length), max_label_length, memo)
        r.rendered[cache_key] = cached
    assert isinstance(cached, list)
    return cached


class OwnFamilyCache:
    """Rendered self-metric families kept by object identity.

    Sources that return the *same* family objects while nothing changed (the site tracker, with
    thousands of sites) are then rendered once, not on every scrape. Entries of families not seen in a
    scrape are dropped, so the cache never outgrows one scrape's families.
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Metric, int, RenderedFamily]] = {}
        self._lock = threading.Lock()

    def render(self, own: Sequence[Metric], max_label_length: int) -> list[RenderedFamily]:
        out: list[RenderedFamily] = []
        fresh: dict[int, tuple[Metric, int, RenderedFamily]] = {}
        with self._lock:
            for fam in own:
                hit = self._entries.get(id(fam))
                if hit is not None and hit[0] is fam and hit[1] == len(fam.samples):
                    rf = hit[2]
                else:
                    rf = render_families([fam], (), max_label_length)[0]
                fresh[id(fam)] = (fam, len(fam.samples), rf)
                out.append(rf)
            self._entries = fresh
        return out


def render_text(
    results: Sequence[JobResult],
    own: Sequence[Metric],
    max_label_length: int,
    own_cache: OwnFamilyCache | None = None,
) -> tuple[bytes, int]:
    """The merged text exposition and the number of series/families left out as conflicts."""
    merged: dict[str, RenderedFamily] = {}
    contributors: dict[str, int] = {}
    conflicts = 0
    if own_cache is not None:
        groups = [own_cache.render(own, max_label_length)]
    else:
        groups = [render_families(own, (), max_label_length)]
    memo: LabelMemo = {}  # shared by the results rendered in this scrape (their label dicts often are)
    groups += [_cached_render(r, max_label_length, memo) for r in sorted(results, key=lambda r: r.job_id)]
    seen_keys: dict[str, set[str]] = {}
    for rendered in groups:
        for rf in rendered:
            cur = merged.get(rf.name)
            if cur is None:
                merged[rf.name] = RenderedFamily(rf.name, rf.help, rf.type, list(rf.lines), list(rf.key_lens))
                contributors[rf.name] = 1
                continue
            if cur.type != rf.type:
                conflicts += len(rf.lines)
                continue
            if contributors[rf.name] == 1:
                seen_keys[rf.name] = {line[:n] for line, n in zip(cur.lines, cur.key_lens, strict=True)}
            contributors[rf.name] += 1
            keys = seen_keys[rf.name]
            for n, line in zip(rf.key_lens, rf.lines, strict=True):
                key = line[:n]
                if key in keys:
                    conflicts += 1
                    continue
                keys.add(key)
                cur.lines.append(line)
    parts: list[str] = []
    for rf in merged.values():
        if not rf.lines:
            continue
        parts.append(f"# HELP {rf.name} {_escape_help(rf.help)}\n# TYPE {rf.name} {rf.type}\n")
        parts.append("\n".join(rf.lines))
        parts.append("\n")
    return "".join(parts).encode("utf-8"), conflicts


def _om_type(fam: Metric) -> str:
    # OpenMetrics requires _total on counter samples; snmp_exporter-style counters go out as unknown.
    if fam.type == "counter" and fam.samples and all(s.name == fam.name for s in fam.samples):
        return "unknown"
    return str(fam.type)


def _relabel(fam: Metric, extra: Sequence[tuple[str, str]], max_label_length: int) -> Metric:
    new = Metric(fam.name, fam.documentation, _om_type(fam), fam.unit)
    for s in fam.samples:
        labels = {k: clean_label_value(v, max_label_length) for k, v in s.labels.items()}
        for k, v in extra:
            labels.setdefault(k, v)
        new.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar)
    return new


class _Families:
    def __init__(self, fams: list[Metric]) -> None:
        self._fams = fams

    def collect(self) -> Iterable[Metric]:
        return self._fams


def render_openmetrics(results: Sequence[JobResult], own: Sequence[Metric], max_label_length: int) -> bytes:
    """OpenMetrics for scrapers that ask for it; slower than text, so not cached."""
    merged: dict[str, Metric] = {}
    seen: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]] = {}
    items: list[tuple[Metric, list[tuple[str, str]]]] = [(f, []) for f in own]
    for r in sorted(results, key=lambda r: r.job_id):
        items += [(f, result_labels(r, max_label_length)) for f in r.families]
    for fam, extra in items:
        rel = _relabel(fam, extra, max_label_length)
        cur = merged.get(fam.name)
        if cur is None:
            cur = merged[fam.name] = Metric(fam.name, fam.documentation, rel.type, fam.unit)
            seen[fam.name] = set()
        elif cur.type != rel.type:
            continue
        for s in rel.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in seen[fam.name]:
                continue
            seen[fam.name].add(key)
            cur.samples.append(s)
    data: bytes = om_generate(_Families(list(merged.values())))  # type: ignore[no-untyped-call]
    return data
