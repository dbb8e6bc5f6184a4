"""The /metrics answer as a sequence of pieces instead of one joined bytes.

``render_text``/``render_openmetrics`` (``exporters.exposition``) join the whole answer (14-17 MB at
5 000 ICMP targets), and gzip then makes a copy of it: a scrape held ~35 MiB of its own above the agent's
steady memory. The pieces here are the cached renderings themselves plus each family's header, so the
endpoint writes (or compresses) them a slice at a time and a scrape holds little more than the list of
references. The bytes are exactly those of ``render_text``/``render_openmetrics`` (a test checks it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric

from agent.kernel.results import JobResult
from exporters.exposition import (
    _SCRAPE_TIME,
    OwnFamilyCache,
    ResultRenderCache,
    _escape_help,
    _escape_om_help,
    _groups,
    _merge,
    _Merged,
    format_value,
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
