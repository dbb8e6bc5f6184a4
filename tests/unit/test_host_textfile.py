"""The textfile collector: node_exporter's semantics for a directory of *.prom files."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from agent.kernel.collector import BlockingRunner, CollectorContext, Deadline
from collectors import COLLECTORS
from collectors.textfile import TextfileCollector, TextfileSettings


def make(tmp_path: Path, directory: str | None, name: str = "tf") -> TextfileCollector:
    ctx = CollectorContext("textfile", tmp_path, BlockingRunner(name, 1), logging.getLogger("test.textfile"))
    return TextfileCollector(TextfileSettings(directory=directory), ctx)


def flat(fams: list) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:  # type: ignore[type-arg]
    return {(s.name, frozenset(s.labels.items())): s.value for f in fams for s in f.samples}


async def test_on_by_default_and_reads_nothing_without_a_directory(tmp_path: Path) -> None:
    assert "textfile" in COLLECTORS.default_on()
    out = flat(await make(tmp_path, None).collect(None, Deadline.after(5)))
    assert out == {("node_textfile_scrape_error", frozenset()): 0.0}


async def test_files_merged_with_mtimes_and_default_help(tmp_path: Path) -> None:
    (tmp_path / "backup.prom").write_text(
        '# HELP backup_ok Whether the last backup ran.\n# TYPE backup_ok gauge\nbackup_ok{db="hoso"} 1\n'
    )
    (tmp_path / "certs.prom").write_text(
        '# TYPE backup_ok gauge\nbackup_ok{db="web",extra="x"} 0\nbackup_ok{db="mail"} 1\ncert_expiry_seconds 86400\n'
    )
    (tmp_path / "ignored.txt").write_text("not_read 1\n")
    os.utime(tmp_path / "backup.prom", (1_700_000_000, 1_700_000_000))
    c = make(tmp_path, str(tmp_path))
    fams = await c.collect(None, Deadline.after(5))
    out = flat(fams)
    assert out[("node_textfile_scrape_error", frozenset())] == 0
    assert (
        out[("node_textfile_mtime_seconds", frozenset({("file", str(tmp_path / "backup.prom"))}))]
        == 1_700_000_000
    )
    # labels missing in some of a file's samples are given as empty, as node_exporter does
    assert out[("backup_ok", frozenset({("db", "hoso")}))] == 1
    assert out[("backup_ok", frozenset({("db", "mail"), ("extra", "")}))] == 1
    assert out[("backup_ok", frozenset({("db", "web"), ("extra", "x")}))] == 0
    assert not any(k[0] == "not_read" for k in out)
    helps = {f.name: f.documentation for f in fams}
    assert helps["cert_expiry_seconds"] == f"Metric read from {tmp_path / 'certs.prom'}"
    c.ctx.blocking.shutdown()


@pytest.mark.parametrize(
    ("second", "problem"),
    [
        ("# TYPE jobs counter\njobs_total 3\n", "is a counter here but a gauge"),
        ("# TYPE jobs gauge\njobs 4\n", "was already given by another file"),
        ("jobs{ 4\n", "not in the Prometheus text format"),
        ("other 1 1700000000000\n", "timestamps"),
    ],
)
async def test_inconsistent_files_are_rejected_with_one_log_line(
    tmp_path: Path, second: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a.prom").write_text("# TYPE jobs gauge\njobs 2\n")
    (tmp_path / "b.prom").write_text(second)
    c = make(tmp_path, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="test.textfile"):
        out = flat(await c.collect(None, Deadline.after(5)))
        out2 = flat(await c.collect(None, Deadline.after(5)))
    assert out == out2
    assert out[("node_textfile_scrape_error", frozenset())] == 1
    assert out[("jobs", frozenset())] == 2  # the first file's family stands
    lines = [r.getMessage() for r in caplog.records if problem in r.getMessage()]
    assert len(lines) == 1 and "b.prom" in lines[0]  # once, not on every run
    c.ctx.blocking.shutdown()


async def test_missing_directory_is_an_error_metric(tmp_path: Path) -> None:
    out = flat(await make(tmp_path, str(tmp_path / "nope")).collect(None, Deadline.after(5)))
    assert out == {("node_textfile_scrape_error", frozenset()): 1.0}


async def test_a_hung_directory_fails_this_collector_alone_within_the_deadline(tmp_path: Path) -> None:
    """A FIFO named *.prom blocks open() like a hung NFS directory: the run still ends by its deadline."""
    os.mkfifo(tmp_path / "hung.prom")
    c = make(tmp_path, str(tmp_path), name="tf-hung")
    out = flat(await c.collect(None, Deadline.after(0.5)))
    assert out == {("node_textfile_scrape_error", frozenset()): 1.0}
    # release the stuck thread: open the FIFO's write end once
    threading.Thread(target=lambda: open(tmp_path / "hung.prom", "w").close(), daemon=True).start()
    c.ctx.blocking.shutdown()
