"""The /metrics answer as a sequence of pieces instead of one joined bytes.

``render_text``/``render_openmetrics`` (``exporters.exposition``) join the whole answer (14-17 MB at
5 000 ICMP targets), and gzip then makes a copy of it: a scrape held ~35 MiB of its own above the agent's
steady memory. The pieces here are the cached renderings themselves plus each family's header, so the
endpoint writes (or compresses) them a slice at a time and a scrape holds little more than the list of
references. The bytes are exactly those of ``render_text``/``render_openmetrics`` (a test checks it).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric

from agent.kernel.results import JobResult
from exporters.exposition import (
    _SCRAPE_TIME,
    LabelMemo,
    OwnFamilyCache,
    RenderedFamily,
    ResultRenderCache,
    _escape_help,
    _escape_om_help,
    _groups,
    _merge,
    _Merged,
    format_value,
    render_families,
)


class Exposition:
    """A merged answer, ready to be written: ``length`` bytes, produced by iterating ``pieces()``."""

    def __init__(self, merged: list[_Merged], openmetrics: bool, now: float) -> None:
        self._merged = merged
        self.openmetrics = openmetrics
        #: the time written for scrape-time gauges, fixed once so ``length`` and the pieces agree
        self._now = format_value(now).encode()
        self.length = sum(len(p) for p in self.pieces())

    def pieces(self) -> Iterator[bytes]:
        """The answer's bytes in order; mostly the cached renderings themselves (no copy)."""
        openmetrics = self.openmetrics
        for m in self._merged:
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
                parts = [part.replace(_SCRAPE_TIME, self._now) for part in parts]
            last = len(parts) - 1
            for i, part in enumerate(parts):
                yield part
                if i < last:
                    yield b"\n"
            yield b"\n"
        if openmetrics:
            yield b"# EOF\n"


class WeakOwnFamilyCache(OwnFamilyCache):
    """``OwnFamilyCache`` that does not keep the families themselves alive between scrapes.

    Sources that build their families anew on every scrape (the per-job health families: six per job,
    30 000 samples at 5 000 targets) never hit the cache, and holding them until the next scrape kept
    ~10 MiB resident, twice over while that scrape built the next ones. A family its source keeps (the
    site tracker's, while nothing changed) is still alive at the next scrape and found as before.
    """

    def __init__(self) -> None:
        super().__init__()
        self._refs: dict[int, tuple[weakref.ref[Metric] | Metric, int, RenderedFamily]] = {}

    def render(self, own: Sequence[Metric], max_label_length: int) -> list[RenderedFamily]:
        out: list[RenderedFamily] = []
        fresh: dict[int, tuple[weakref.ref[Metric] | Metric, int, RenderedFamily]] = {}
        memo: LabelMemo = {}  # per-job families of one scrape repeat the same labels
        with self._lock:
            for fam in own:
                hit = self._refs.get(id(fam))
                if hit is not None and _alive(hit[0]) is fam and hit[1] == len(fam.samples):
                    rf = hit[2]
                else:
                    rf = render_families([fam], (), max_label_length, memo)[0]
                try:
                    ref: weakref.ref[Metric] | Metric = weakref.ref(fam)
                except TypeError:  # a family class with __slots__ and no __weakref__: held as before
                    ref = fam
                fresh[id(fam)] = (ref, len(fam.samples), rf)
                out.append(rf)
            self._refs = fresh
        return out


def _alive(ref: weakref.ref[Metric] | Metric) -> Metric | None:
    return ref() if isinstance(ref, weakref.ref) else ref


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
