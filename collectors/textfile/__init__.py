"""Textfile collector: ``*.prom`` files written by cron jobs and scripts (backup status, certificate
checks, the applications' own figures), with node_exporter's textfile collector semantics.

Files are parsed with prometheus_client's text parser. A file that does not parse, or carries
timestamps, is skipped whole; a family whose type disagrees with the same name in an earlier file, or
a series another file already gave, is left out. Each of these is one log line and sets
``node_textfile_scrape_error`` to 1. Files are read in the blocking-call pool under the run's deadline,
so a hung network directory fails this collector alone, never the host's other metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import Field

from agent.kernel.collector import Collector, CollectorSettings, Deadline, TargetConfig
from agent.kernel.errors import CollectError

#: a .prom file larger than this is refused (a runaway script must not exhaust the agent's memory)
MAX_FILE_BYTES = 16 * 2**20


class TextfileSettings(CollectorSettings):
    """``collectors.textfile``."""

    directory: str | None = Field(
        default=None,
        description="directory of *.prom files (like --collector.textfile.directory); unset: off",
    )


@dataclass
class Scan:
    """One reading of the directory: the families kept, file mtimes, and the problems met."""

    families: dict[str, Metric] = field(default_factory=dict)
    mtimes: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: family name -> files that gave it (for the default help text)
    sources: dict[str, list[str]] = field(default_factory=dict)
    #: (sample name, sorted labels) already given, so a second file cannot repeat a series
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=set)


def read_directory(directory: str) -> Scan:
    """Every ``*.prom`` file of ``directory``, merged as node_exporter merges them."""
    scan = Scan()
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".prom"))
    except OSError as exc:
        scan.problems.append(f"cannot read textfile directory {directory}: {exc.strerror or exc}")
        return scan
    for name in names:
        path = os.path.join(directory, name)
        read_file(path, scan)
    for fam_name, fam in scan.families.items():
        if not fam.documentation:
            fam.documentation = f"Metric read from {', '.join(scan.sources[fam_name])}"
    return scan


def read_file(path: str, scan: Scan) -> None:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
            mtime = os.fstat(f.fileno()).st_mtime
    except OSError as exc:
        scan.problems.append(f"cannot read textfile {path}: {exc.strerror or exc}")
        return
    if len(data) > MAX_FILE_BYTES:
        scan.problems.append(f"textfile {path}: larger than {MAX_FILE_BYTES} bytes, skipped")
        return
    try:
        parsed = list(text_string_to_metric_families(data.decode("utf-8")))
    except (ValueError, UnicodeDecodeError, IndexError, TypeError) as exc:
        scan.problems.append(f"textfile {path}: not in the Prometheus text format ({exc}), skipped")
        return
    if any(s.timestamp is not None for fam in parsed for s in fam.samples):
        scan.problems.append(f"textfile {path}: samples carry timestamps, which are not supported; skipped")
        return
    for fam in parsed:
        _merge(path, fam, scan)
    scan.mtimes[path] = float(int(mtime))


def _kind(typ: str) -> str:
    return "untyped" if typ == "unknown" else f"a {typ}"


def _merge(path: str, fam: Metric, scan: Scan) -> None:
    cur = scan.families.get(fam.name)
    if cur is not None and cur.type != fam.type:
        scan.problems.append(
            f"textfile {path}: {fam.name} is {_kind(fam.type)} here but {_kind(cur.type)} in "
            f"{', '.join(scan.sources[fam.name])}; left out"
        )
        return
    # node_exporter gives every sample of a family the same label names, missing ones empty.
    names = sorted({k for s in fam.samples for k in s.labels})
    kept: list[Sample] = []
    for s in fam.samples:
        labels = {k: s.labels.get(k, "") for k in names}
        key = (s.name, tuple(sorted(labels.items())))
        if key in scan.seen:
            scan.problems.append(
                f"textfile {path}: {s.name}{labels} was already given by another file; left out"
            )
            continue
        scan.seen.add(key)
        kept.append(Sample(s.name, labels, s.value, None, None))
    if cur is None:
        fam.samples = kept
        scan.families[fam.name] = fam
        scan.sources[fam.name] = [path]
    else:
        cur.samples.extend(kept)
        scan.sources[fam.name].append(path)


class TextfileCollector(Collector):
    kind = "textfile"
    settings_model = TextfileSettings
    target_model = None
    blocking_threads = 1

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        settings = self.settings
        assert isinstance(settings, TextfileSettings)
        error = GaugeMetricFamily(
            "node_textfile_scrape_error", "1 if there was an error opening or reading a file, 0 otherwise"
        )
        if not settings.directory:
            error.add_metric([], 0.0)
            return [error]
        directory = str(Path(settings.directory))
        try:
            scan = await self.ctx.blocking.run(
                "textfile", deadline.left(margin=0.1), read_directory, directory
            )
        except CollectError as exc:
            self._note([f"textfile directory {directory}: {exc.message}"])
            error.add_metric([], 1.0)
            return [error]
        self._note(scan.problems)
        mtime = GaugeMetricFamily(
            "node_textfile_mtime_seconds", "Unixtime mtime of textfiles successfully read.", labels=["file"]
        )
        for path in sorted(scan.mtimes):
            mtime.add_metric([path], scan.mtimes[path])
        error.add_metric([], 1.0 if scan.problems else 0.0)
        out = list(scan.families.values())
        if mtime.samples:
            out.append(mtime)
        return [*out, error]

    _last: tuple[str, ...] = ()

    def _note(self, problems: list[str]) -> None:
        """One log line per problem when it appears, not on every run."""
        new = tuple(problems)
        for p in new:
            if p not in self._last:
                self.ctx.log.warning(p, extra={"collector": "textfile"})
        self._last = new
