"""The journal on disk: torn and damaged frames are skipped and counted, rotation bounds the size and
keeps the totals through its snapshots, one writer per directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.inventory import Inventory, Level, Site
from agent.ledger.journal import Journal, JournalLocked, ReadStats, frame, read_all, segments
from agent.ledger.recorder import LedgerRecorder, replay

INV = Inventory([Site("p", "Tỉnh", Level.province, None, ("p-wan",))])


def _journal(d: Path, **kw: int) -> Journal:
    return Journal(d, lambda: {"k": "snap", "ts": 0}, **kw)


def test_torn_tail_and_damaged_middle_are_skipped(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.append([{"k": "alive", "ts": float(i)} for i in range(5)])
    j.close()
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    one = len(frame({"k": "alive", "ts": 0.0}))
    data[one * 2 + 10] ^= 0xFF  # damage the third record's payload
    data += frame({"k": "alive", "ts": 9.0})[:-3]  # a torn last record (crash mid-write)
    seg.write_bytes(bytes(data))
    stats = ReadStats()
    got = [r["ts"] for r in read_all(tmp_path, stats)]
    assert got == [0.0, 1.0, 3.0, 4.0]
    assert stats.torn == 2 and stats.damaged == {seg.name: 2}
    # appending after a torn tail: the new records are read back
    j = _journal(tmp_path)
    j.append([{"k": "alive", "ts": 10.0}])
    j.close()
    assert [r["ts"] for r in read_all(tmp_path)] == [0.0, 1.0, 3.0, 4.0, 10.0]


def test_one_writer_per_directory(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    with pytest.raises(JournalLocked):
        _journal(tmp_path)
    j.close()
    _journal(tmp_path).close()


def test_rotation_bounds_size_and_keeps_totals(tmp_path: Path) -> None:
    rec = LedgerRecorder(tmp_path, INV, now=1000.0, segment_bytes=2000)
    t = 1000.0
    for _ in range(200):
        rec.observe({"p": "up"}, t)
        rec.observe({"p": "down"}, t + 10)
        t += 20
    rec.observe({"p": "up"}, t)
    rec.close(t + 5)
    files = segments(tmp_path / "ledger")
    assert len(files) == 16  # MAX_SEGMENTS: the oldest were deleted
    assert sum(f.stat().st_size for f in files) < 16 * 2500
    book = replay(tmp_path / "ledger")
    # every outage and every second is still in the totals, though most records are gone
    assert book.sites["p"].totals == {"up": 2005.0, "down": 2000.0, "unreachable": 0.0, "gap": 0.0}
    assert book.sites["p"].outages == {"own_link": 200}
    assert book.sites["p"].repair_seconds == {"own_link": 2000.0}
    assert book.first_ts is not None and 1000.0 < book.first_ts < t  # history before it: unknown


def test_a_failing_disk_is_counted_and_the_counters_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rec = LedgerRecorder(tmp_path, INV, now=1000.0)
    rec.observe({"p": "up"}, 1000.0)
    assert rec.journal is not None
    os.close(rec.journal._fd)  # the disk goes away under the journal
    rec.journal._fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    rec.observe({"p": "down"}, 1100.0)
    rec.observe({"p": "up"}, 1200.0)
    fams = {f.name: f for f in rec.collect(now=1300.0)}
    assert fams["giamsat_ledger_write_errors"].samples[0].value == 2
    assert {s.labels["site"]: s.value for s in fams["giamsat_site_down_seconds"].samples} == {"p": 100.0}
    assert [r.getMessage() for r in caplog.records] == [
        "ledger: cannot write the journal; counting in memory only"
    ]
    rec.close(1300.0)
