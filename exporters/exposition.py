"""Render stored results as Prometheus text (0.0.4) or OpenMetrics 1.0, merged across jobs.

Each job's families are rendered once per result (``ResultRenderCache``, kept by the exporter) with its ``site`` and
``target`` labels added, so a scrape only concatenates. Label values are length-bounded and made valid
UTF-8, and a series or name that another job already exposed is left out (and counted) rather than
letting one odd device break the whole scrape, as a duplicate series would.

Both formats come from the same cached lines: a sample line is spelled the same in both (only a
timestamp differs: milliseconds in text, seconds in OpenMetrics), and what differs is per family
metadata (OpenMetrics names a counter family without ``_total``, has ``info`` and ``stateset`` types,
escapes ``"`` in HELP, ends with ``# EOF``). Prometheus 2.x asks for OpenMetrics first on every scrape,
so that path must cost what the text path costs. Which series are kept is decided once, the same for
both formats, so what Prometheus stores does not depend on the ``Accept`` header.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from math import isfinite

from prometheus_client.core import Metric

from agent.kernel.families import LabelRows, ShapedFamily
from agent.kernel.redact import generation, redact_value
from agent.kernel.results import JobResult

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def clean_label_value(value: object, max_len: int) -> str:
    # A device may echo a configured secret (a community in sysDescr...): masked before it is cut short.
    s = redact_value(str(value))
    if len(s) > max_len:
        s = s[:max_len]
    # Strings decoded from devices may carry lone surrogates; they cannot be encoded as UTF-8.
    return s.encode("utf-8", "replace").decode("utf-8")


def format_value(v: float) -> str:
    r = repr(float(v))
    # repr() spells the special values nan, inf and -inf; the exposition format wants NaN, +Inf, -Inf.
    return _SPECIAL.get(r, r) if r[-1] in "nf" else r


_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}
_UNSEEN = object()


def _escape_label(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_om_help(s: str) -> str:
    return _escape_help(s).replace('"', '\\"')


def _spell_labels(items: Iterable[tuple[str, object]], max_len: int) -> str:
    """``k="v",...`` of a sample's own labels: values redacted, cut to ``max_len``, escaped."""
    return ",".join(f'{k}="{_escape_label(clean_label_value(v, max_len))}"' for k, v in items)


def _spell_values(values: Sequence[float]) -> Iterable[str]:
    """Each value as the exposition format writes it (``repr`` spells every finite float so; one sum
    tells whether the slower spelling of NaN and infinities is needed)."""
    return map(repr, map(float, values)) if isfinite(sum(values)) else map(format_value, values)


def exposed_name_and_type(fam: Metric) -> tuple[str, str]:
    """The family's name and type in the text format."""
    name, typ = fam.name, fam.type
    if typ == "counter":
        # snmp_exporter-style counters (ifHCInOctets) have samples without _total: keep the name as is.
        if _bare_counter(fam):
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


def openmetrics_type(fam: Metric) -> str:
    """The family's type in OpenMetrics (its name there is always ``fam.name``)."""
    # OpenMetrics requires _total on counter samples; snmp_exporter-style counters go out as unknown.
    if fam.type == "counter" and _bare_counter(fam):
        return "unknown"
    return str(fam.type)


def _bare_counter(fam: Metric) -> bool:
    return bool(fam.samples) and all(s.name == fam.name for s in fam.samples)


class FamilyMeta:
    """A family's name, help and type in both formats: one object per distinct family, shared by every
    result's rendering of it (thousands of targets expose the same families)."""

    __slots__ = ("help", "name", "om_name", "om_type", "signature", "type", "unit")

    def __init__(self, name: str, help: str, type: str, om_name: str, om_type: str, unit: str) -> None:
        self.name, self.help, self.type, self.unit = name, help, type, unit
        self.om_name, self.om_type = om_name, om_type
        #: type, OpenMetrics type and name: families merge under one name only if these agree
        self.signature = f"{type} {om_type} {om_name}"


_META_MAX = 10_000
_metas: dict[tuple[str, str, str, str, str, str], FamilyMeta] = {}


def _meta(name: str, help: str, type: str, om_name: str, om_type: str, unit: str) -> FamilyMeta:
    key = (name, help, type, om_name, om_type, unit)
    meta = _metas.get(key)
    if meta is None:
        meta = FamilyMeta(*key)
        if len(_metas) >= _META_MAX:  # family names come from devices too: keep it bounded
            _metas.clear()
        _metas[key] = meta
    return meta


class RenderedFamily:
    """One family's sample lines with the result's labels added, as one UTF-8 string.

    Kept per result until the store replaces it (10 000 ICMP targets are ~370 000 lines), so it is one
    small object and one string, with its metadata shared; the series key of a line (``name{labels}``)
    is found again from the line when a merge needs it, which is rare (see ``_merge``). Encoded once,
    here, so a scrape joins bytes and never holds the answer twice (as text, then encoded).
    """

    __slots__ = ("count", "meta", "om_text", "scrape_time", "stamped", "tail", "text")

    def __init__(
        self,
        meta: FamilyMeta,
        text: bytes,
        count: int,
        tail: str | None,
        om_text: bytes | None = None,
        stamped: bool = False,
        scrape_time: bool = False,
    ) -> None:
        self.meta = meta
        #: the lines joined by newlines ("" without samples)
        self.text = text
        self.count = count
        #: the result's own labels when every line ends in exactly them (no sample set site/target
        #: itself): lines of two families with different tails are never the same series
        self.tail = tail
        #: the OpenMetrics lines where they differ from ``text`` (samples with a timestamp), else None
        self.om_text = om_text
        #: lines end in a timestamp
        self.stamped = stamped
        #: a clock gauge whose lines end in ``SCRAPE_TIME``, replaced by the time of each scrape
        self.scrape_time = scrape_time

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def lines(self) -> list[bytes]:
        return self.text.split(b"\n") if self.count else []

    def series_keys(self) -> list[bytes]:
        """The series key of each line: a value (and a timestamp) never holds a space."""
        cut = 2 if self.stamped else 1
        return [line.rsplit(b" ", cut)[0] for line in self.lines]


#: Rendered label pairs of a label dict (without the result's site/target), keyed by the dict's id:
#: (the dict, its rendered pairs, whether it holds neither site nor target, its keys); the entry keeps
#: the dict so an id is never reused while it is in the map. Dicts with the same items (the agent's
#: own per-job families each build their own) share one rendering, keyed by the items.
LabelMemo = dict[int | tuple[tuple[str, str], ...], tuple[dict[str, str], str, bool, frozenset[str]]]

#: The job's previous result's families and their rendering, for ``render_families(reuse=...)``
Reuse = tuple[Sequence[Metric], Sequence["RenderedFamily"]]

_RESULT_KEYS = frozenset(("site", "target"))

#: the value written for a scrape-time gauge (``agent.kernel.scrapetime``) until it is served
SCRAPE_TIME = "\x00now"
_SCRAPE_TIME = SCRAPE_TIME.encode()


class _ShapeLines:
    """What a shape's samples spell the same for every result: each line's ``name{labels,`` (or
    ``name{``) before the result's own labels, and the family's metadata."""

    __slots__ = ("meta", "prefixes")

    def __init__(self, meta: FamilyMeta, prefixes: tuple[str, ...]) -> None:
        self.meta, self.prefixes = meta, prefixes


_SHAPES_MAX = 10_000
#: by (shape, max label length, secret-redaction generation); None: the shape's samples break the
#: contract, render them one by one
_shapes: dict[tuple[object, int, int], _ShapeLines | None] = {}


def _shape_lines(fam: ShapedFamily, max_label_length: int) -> _ShapeLines | None:
    """Spell a shape's line prefixes from one of its families (once per shape), or None when its samples
    do not keep the contract (``agent.kernel.families``): those are rendered sample by sample."""
    prefixes: list[str] = []
    for s in fam.samples:
        if s.timestamp is not None or s.name.endswith("_created") or not _RESULT_KEYS.isdisjoint(s.labels):
            return None
        own = _spell_labels(s.labels.items(), max_label_length)
        prefixes.append(f"{s.name}{{{own}," if own else f"{s.name}{{")
    if not prefixes or len(set(prefixes)) != len(prefixes) or getattr(fam, "scrape_time", False) is True:
        return None
    name, typ = exposed_name_and_type(fam)
    meta = _meta(name, fam.documentation, typ, fam.name, openmetrics_type(fam), fam.unit or "")
    return _ShapeLines(meta, tuple(prefixes))


def _shaped_text(lines: _ShapeLines, values: Sequence[float], tail: str) -> bytes:
    """A shaped family's lines: each prefix, the result's labels (``tail``: ``site="..",target=".."} ``),
    the value."""
    spelled = _spell_values(values)
    if len(values) == 1:
        return f"{lines.prefixes[0]}{tail}{next(iter(spelled))}".encode()
    return "\n".join(map(str.__add__, map(str.__add__, lines.prefixes, repeat(tail)), spelled)).encode()


def render_families(
    families: Iterable[Metric],
    extra: Sequence[tuple[str, str]],
    max_label_length: int,
    memo: LabelMemo | None = None,
    reuse: Reuse | None = None,
) -> list[RenderedFamily]:
    """Exposition lines of ``families`` with the ``extra`` labels (site, target) added.

    Collectors share one label dict between samples (a table row's samples, every target's
    ``{"probe": "icmp"}``, the histogram's ``le`` dicts), so a dict's labels are rendered once per
    ``memo`` (pass one memo to many calls, e.g. all results of one scrape) and only the result's own
    labels are appended per sample. This runs for every sample of every new result: the common path
    (labels without site/target, no timestamp) is kept to one lookup and one f-string per sample, and a
    shaped family (``agent.kernel.families``) skips it: its line prefixes are spelled once per shape and
    only its values are written.

    ``reuse`` holds the families of the job's previous result (same labels) and their rendering: a
    family object that is in the new result again, at the same place, is the same family (results are
    immutable, and collectors share objects for values that do not change: ``probe_success 1``), so its
    rendering is taken as is.
    """
    if memo is None:
        memo = {}
    extra_keys = frozenset(k for k, _ in extra)
    extra_body = ",".join(f'{k}="{_escape_label(v)}"' for k, v in extra)
    special = _SPECIAL
    shaped_tail = extra_body + "} " if extra_body else ""
    redacted = generation()  # a secret registered since a shape was spelled: spelled again
    prev_fams, prev_rendered = reuse if reuse is not None else ((), ())
    n_prev = len(prev_fams)
    out: list[RenderedFamily] = []
    for pos, fam in enumerate(families):
        if pos < n_prev and prev_fams[pos] is fam:
            out.append(prev_rendered[pos])
            continue
        if shaped_tail and isinstance(fam, ShapedFamily):
            shape_key = (fam.shape, max_label_length, redacted)
            shape = _shapes.get(shape_key, _UNSEEN)
            if shape is _UNSEEN:
                if len(_shapes) >= _SHAPES_MAX:  # collectors make shapes once; a reload makes new ones
                    _shapes.clear()
                shape = _shapes[shape_key] = _shape_lines(fam, max_label_length)
            if isinstance(shape, _ShapeLines):
                values = fam.sample_values()
                if len(values) == len(shape.prefixes):  # else a broken family: rendered as it reads
                    text = _shaped_text(shape, values, shaped_tail)
                    out.append(RenderedFamily(shape.meta, text, len(values), extra_body))
                    continue
        samples = fam.samples
        name, typ = exposed_name_and_type(fam)
        scrape_time = getattr(fam, "scrape_time", False) is True
        lines: list[str] = []
        om_lines: list[str] | None = None
        seen: set[str] | None = set() if len(samples) > 1 else None
        clean = True
        for s in samples:
            sname = s.name
            if sname.endswith("_created"):
                continue
            labels = s.labels
            hit = memo.get(id(labels))
            if hit is None or hit[0] is not labels:
                items = tuple(labels.items())
                same = memo.get(items)
                if same is None:
                    present = frozenset(labels)
                    own = _spell_labels(items, max_label_length)
                    same = memo[items] = (labels, own, present.isdisjoint(_RESULT_KEYS), present)
                hit = memo[id(labels)] = (labels, same[1], same[2], same[3])
            own = hit[1]
            if hit[2] or hit[3].isdisjoint(extra_keys):
                tail = extra_body
            else:  # the sample's own site/target win
                tail = ",".join(f'{k}="{_escape_label(v)}"' for k, v in extra if k not in hit[3])
                clean = False
            if own:
                key = f"{sname}{{{own},{tail}}}" if tail else f"{sname}{{{own}}}"
            else:
                key = f"{sname}{{{tail}}}" if tail else sname
            if seen is not None:
                if key in seen:
                    continue
                seen.add(key)
            if scrape_time:
                line = f"{key} {SCRAPE_TIME}"
            else:
                v = s.value
                r = repr(v if type(v) is float else float(v))
                # repr() spells nan, inf and -inf; the exposition format wants NaN, +Inf, -Inf.
                line = f"{key} {special.get(r, r) if r[-1] in 'nf' else r}"
            if s.timestamp is not None or om_lines is not None:
                if om_lines is None:
                    om_lines = list(lines)
                if s.timestamp is None:
                    om_lines.append(line)
                else:
                    ts = float(s.timestamp)
                    om_lines.append(f"{line} {format_value(ts)}")
                    line += f" {int(ts * 1000)}"
            lines.append(line)
        meta = _meta(name, fam.documentation, typ, fam.name, openmetrics_type(fam), fam.unit or "")
        out.append(
            RenderedFamily(
                meta,
                "\n".join(lines).encode(),
                len(lines),
                extra_body if clean and extra_body else None,
                None if om_lines is None else "\n".join(om_lines).encode(),
                om_lines is not None,
                scrape_time,
            )
        )
    return out


def result_labels(r: JobResult, max_label_length: int) -> list[tuple[str, str]]:
    extra: list[tuple[str, str]] = []
    if r.site:
        extra.append(("site", clean_label_value(r.site, max_label_length)))
    if r.target:
        extra.append(("target", clean_label_value(r.target, max_label_length)))
    return extra


class ResultRenderCache:
    """Rendered lines of each job's current result, kept by the exporter until the result is replaced.

    A result is rendered once, on the first scrape after it arrives; later scrapes reuse the lines as
    long as the store still holds that very result object. A job's new result takes the rendering of
    the families it shares with the previous one, and replaces its entry at once, so the previous
    rendering is freed as the scrape goes rather than held beside the whole new one until it ends.
    Entries of jobs missing from a scrape (removed by a reload, or stale) are dropped after it, so the
    cache never outgrows the store. Concurrent scrapes share the entries: each change is one dict
    operation, and the worst a race costs is rendering a result twice.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[JobResult, int, list[RenderedFamily]]] = {}

    def render(
        self, results: Sequence[JobResult], max_label_length: int, memo: LabelMemo
    ) -> list[list[RenderedFamily]]:
        """Each result's rendered families (in the order given), rendering only what is new."""
        entries = self._entries
        out: list[list[RenderedFamily]] = []
        for r in results:
            hit = entries.get(r.job_id)
            if hit is not None and hit[0] is r and hit[1] == max_label_length:
                rendered = hit[2]
            else:
                reuse: Reuse | None = None
                if hit is not None and hit[1] == max_label_length:
                    before = hit[0]
                    if before.site == r.site and before.target == r.target:
                        reuse = (before.families, hit[2])
                rendered = render_families(
                    r.families, result_labels(r, max_label_length), max_label_length, memo, reuse
                )
                hit = None  # the previous rendering goes with the entry it is replaced in
                entries[r.job_id] = (r, max_label_length, rendered)
            out.append(rendered)
        if len(entries) > len(results):
            keep = {r.job_id for r in results}
            for job_id in list(entries):  # a copy of the keys: another scrape may add some meanwhile
                if job_id not in keep:
                    entries.pop(job_id, None)
        return out


class OwnFamilyCache:
    """Rendered self-metric families kept by object identity, without keeping the families alive.

    Sources that return the *same* family objects while nothing changed (the site tracker, with
    thousands of sites) are then rendered once, not on every scrape; the cache holds them by weak
    reference, so families a source builds anew for each scrape are freed with it (holding them until
    the next scrape kept ~10 MiB at 5 000 jobs, twice over while that scrape built the next ones).
    ``LabelRows`` families (the per-job health series, built every scrape) are rendered from their
    kept label dicts instead. Entries of families not seen in a scrape are dropped, so the cache never
    outgrows one scrape's families.
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Metric] | Metric, int, RenderedFamily]] = {}
        self._lock = threading.Lock()
        #: the labels of ``LabelRows`` label dicts, spelled, by dict id (the dict kept, so an id is not
        #: reused while it is here); only the dicts of the last scrape, spelled under ``_labels_for``
        self._labels: dict[int, tuple[dict[str, str], str]] = {}
        #: the secret-redaction generation and label length limit ``_labels`` were spelled under
        self._labels_for = (-1, -1)

    def render(self, own: Sequence[Metric], max_label_length: int) -> list[RenderedFamily]:
        out: list[RenderedFamily] = []
        fresh: dict[int, tuple[weakref.ref[Metric] | Metric, int, RenderedFamily]] = {}
        memo: LabelMemo = {}  # per-job families of one scrape repeat the same labels
        with self._lock:
            seen: dict[int, tuple[dict[str, str], str]] | None = None
            for fam in own:
                if isinstance(fam, LabelRows):
                    if seen is None:
                        spelled_for = (generation(), max_label_length)
                        if spelled_for != self._labels_for:
                            self._labels, self._labels_for = {}, spelled_for
                        seen = {}
                    rows = self._render_rows(fam, max_label_length, seen)
                    out.append(
                        rows if rows is not None else render_families([fam], (), max_label_length, memo)[0]
                    )
                    continue
                n = len(fam.samples)
                hit = self._entries.get(id(fam))
                if hit is not None and _alive(hit[0]) is fam and hit[1] == n:
                    rf = hit[2]
                else:
                    rf = render_families([fam], (), max_label_length, memo)[0]
                try:
                    ref: weakref.ref[Metric] | Metric = weakref.ref(fam)
                except TypeError:  # a family class with __slots__ and no __weakref__: held as before
                    ref = fam
                fresh[id(fam)] = (ref, n, rf)
                out.append(rf)
            self._entries = fresh
            if seen is not None:
                self._labels = seen
        return out

    def _render_rows(
        self, fam: LabelRows, max_label_length: int, seen: dict[int, tuple[dict[str, str], str]]
    ) -> RenderedFamily | None:
        """A ``LabelRows`` family's lines, each label dict spelled once while it lives; None when its
        rows break the contract (equal labels twice): then it is rendered sample by sample."""
        known = self._labels
        spelled: list[str] = []
        for labels, _value in fam.rows:
            hit = seen.get(id(labels))
            if hit is None:
                hit = known.get(id(labels))
                if hit is None or hit[0] is not labels:
                    hit = (labels, _spell_labels(labels.items(), max_label_length))
                seen[id(labels)] = hit
            spelled.append(hit[1])
        if len(set(spelled)) != len(spelled):
            return None
        numbers = _spell_values([value for _labels, value in fam.rows])
        body = "\n".join(
            map("".join, zip(repeat(fam.sample_name + "{"), spelled, repeat("} "), numbers))
        ).encode()
        if fam.type == "counter":
            meta = _meta(fam.sample_name, fam.documentation, "counter", fam.name, "counter", "")
        else:
            meta = _meta(fam.name, fam.documentation, fam.type, fam.name, fam.type, "")
        return RenderedFamily(meta, body, len(spelled), None)


def _alive(ref: weakref.ref[Metric] | Metric) -> Metric | None:
    return ref() if isinstance(ref, weakref.ref) else ref


class _Merged:
    """A family as exposed: its first contributor's metadata and the text kept from all of them."""

    __slots__ = ("first", "keys", "om_parts", "parts", "scrape_time", "tails")

    def __init__(self, rf: RenderedFamily) -> None:
        self.first = rf.meta
        #: texts (a family's lines joined) and single lines, in order
        self.parts: list[bytes] = [rf.text] if rf.count else []
        #: the OpenMetrics texts, kept only once a contributor's differ from its text lines (timestamps)
        self.om_parts: list[bytes] | None = None if rf.om_text is None else [rf.om_text] if rf.count else []
        #: some lines hold ``SCRAPE_TIME``
        self.scrape_time = rf.scrape_time
        #: the tails of the contributors so far while all of them had one (see ``RenderedFamily.tail``)
        self.tails: set[str] | None = {rf.tail} if rf.tail is not None else None
        #: every series key so far, once a second contributor could repeat one (built then, from the
        #: contributors so far); a family's own lines never repeat one (``render_families``)
        self.keys: set[bytes] | None = None


def _merge(groups: Iterable[list[RenderedFamily]]) -> tuple[list[_Merged], int]:
    """Families merged by exposed name, first come first kept; the number of lines left out.

    A family whose type (in either format) differs from the one already exposed under its name, or
    whose OpenMetrics name another family already holds, is left out whole; a series already exposed
    is left out alone. The decision does not depend on the output format.

    Checking every line against the keys already exposed would cost a set entry per series and scrape,
    at the scale of the whole answer. It is not needed while every contributor's lines end in its own
    result's labels (its ``tail``) and no two tails are equal: their series differ. Only a name where
    that does not hold (a sample with its own site/target, two results with the same site and target,
    own metrics) gets a key set.
    """
    merged: dict[str, _Merged] = {}
    om_names: dict[str, str] = {}
    conflicts = 0
    # the contributors of each name while it has no key set, to build one from when it needs it
    contributors: dict[str, list[RenderedFamily]] = {}
    for rendered in groups:
        for rf in rendered:
            meta = rf.meta
            cur = merged.get(meta.name)
            if cur is None:
                if om_names.setdefault(meta.om_name, meta.name) != meta.name:
                    conflicts += rf.count
                    continue
                merged[meta.name] = _Merged(rf)
                contributors[meta.name] = [rf]
                continue
            if cur.first.signature != meta.signature:
                conflicts += rf.count
                continue
            if not rf.count:
                continue
            cur.scrape_time = cur.scrape_time or rf.scrape_time
            tails = cur.tails
            if tails is not None and rf.tail is not None and rf.tail not in tails:
                tails.add(rf.tail)  # lines that cannot repeat a series already kept: taken whole
                contributors[meta.name].append(rf)
                cur.parts.append(rf.text)
                if cur.om_parts is not None or rf.om_text is not None:
                    if cur.om_parts is None:
                        cur.om_parts = list(cur.parts[:-1])
                    cur.om_parts.append(rf.text if rf.om_text is None else rf.om_text)
                continue
            keys = cur.keys
            if keys is None:
                cur.tails = None
                keys = cur.keys = {k for c in contributors.pop(meta.name) for k in c.series_keys()}
            lines = rf.lines
            om_src = lines if rf.om_text is None else rf.om_text.split(b"\n")
            if cur.om_parts is None and rf.om_text is not None:
                cur.om_parts = list(cur.parts)
            om_parts = cur.om_parts
            for key, line, om_line in zip(rf.series_keys(), lines, om_src, strict=True):
                if key in keys:
                    conflicts += 1
                    continue
                keys.add(key)
                cur.parts.append(line)
                if om_parts is not None:
                    om_parts.append(om_line)
    return list(merged.values()), conflicts


def _groups(
    results: Sequence[JobResult],
    own: Sequence[Metric],
    max_label_length: int,
    own_cache: OwnFamilyCache | None,
    result_cache: ResultRenderCache | None,
) -> list[list[RenderedFamily]]:
    if own_cache is not None:
        groups = [own_cache.render(own, max_label_length)]
    else:
        groups = [render_families(own, (), max_label_length)]
    memo: LabelMemo = {}  # shared by the results rendered in this scrape (their label dicts often are)
    ordered = sorted(results, key=lambda r: r.job_id)
    if result_cache is not None:
        groups += result_cache.render(ordered, max_label_length, memo)
    else:
        groups += [
            render_families(r.families, result_labels(r, max_label_length), max_label_length, memo)
            for r in ordered
        ]
    return groups


def _pieces(merged: list[_Merged], openmetrics: bool, now: bytes) -> Iterator[bytes]:
    """The answer's bytes in order: each family's header, then its cached renderings themselves (no
    copy); ``now`` is written for scrape-time gauges."""
    for m in merged:
        if not m.parts:  # no family without samples, and no blank line (OpenMetrics forbids them)
            continue
        f = m.first
        if openmetrics:
            head = f"# HELP {f.om_name} {_escape_om_help(f.help)}\n# TYPE {f.om_name} {f.om_type}\n"
            if f.unit:
                head += f"# UNIT {f.om_name} {f.unit}\n"
        else:
            head = f"# HELP {f.name} {_escape_help(f.help)}\n# TYPE {f.name} {f.type}\n"
        yield head.encode()
        parts = m.om_parts if openmetrics and m.om_parts is not None else m.parts
        if m.scrape_time:
            parts = [part.replace(_SCRAPE_TIME, now) for part in parts]
        last = len(parts) - 1
        for i, part in enumerate(parts):
            yield part
            if i < last:
                yield b"\n"
        yield b"\n"
    if openmetrics:
        yield b"# EOF\n"


class Exposition:
    """A merged answer, ready to be written a piece at a time: ``length`` bytes, produced by iterating
    ``pieces()``; ``render_text``/``render_openmetrics`` join them. Joined, the answer is 14-17 MB at
    5 000 ICMP targets (and gzip made a copy of it); the pieces are references to the cached
    renderings, so the endpoint writes (or compresses) a slice at a time and a scrape holds little
    more than the list of references."""

    def __init__(self, merged: list[_Merged], openmetrics: bool, now: float) -> None:
        self._merged = merged
        self.openmetrics = openmetrics
        #: the time written for scrape-time gauges, fixed once so ``length`` and the pieces agree
        self._now = format_value(now).encode()

    @functools.cached_property
    def length(self) -> int:
        """The answer's size in bytes (for Content-Length), counted from the pieces, not joined."""
        return sum(map(len, self.pieces()))

    def pieces(self) -> Iterator[bytes]:
        return _pieces(self._merged, self.openmetrics, self._now)


def render_exposition(
    results: Sequence[JobResult],
    own: Sequence[Metric],
    max_label_length: int,
    openmetrics: bool,
    own_cache: OwnFamilyCache | None = None,
    result_cache: ResultRenderCache | None = None,
) -> tuple[Exposition, int]:
    """What ``render_openmetrics`` (or ``render_text``) returns, as pieces; and the conflicts."""
    merged, conflicts = _merge(_groups(results, own, max_label_length, own_cache, result_cache))
    return Exposition(merged, openmetrics, time.time()), conflicts


def render_text(
    results: Sequence[JobResult],
    own: Sequence[Metric],
    max_label_length: int,
    own_cache: OwnFamilyCache | None = None,
    result_cache: ResultRenderCache | None = None,
) -> tuple[bytes, int]:
    """The merged text exposition and the number of series/families left out as conflicts."""
    body, conflicts = render_exposition(results, own, max_label_length, False, own_cache, result_cache)
    return b"".join(body.pieces()), conflicts


def render_openmetrics(
    results: Sequence[JobResult],
    own: Sequence[Metric],
    max_label_length: int,
    own_cache: OwnFamilyCache | None = None,
    result_cache: ResultRenderCache | None = None,
) -> tuple[bytes, int]:
    """The merged OpenMetrics exposition (the same series as ``render_text``) and the conflicts."""
    body, conflicts = render_exposition(results, own, max_label_length, True, own_cache, result_cache)
    return b"".join(body.pieces()), conflicts
