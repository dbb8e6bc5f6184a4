"""The ledger's append-only journal on disk: CRC-framed JSON records in numbered segment files.

A record is written whole (one ``write`` per batch) and fsynced before ``append`` returns, so a crash
loses at most the batch being written. A frame that was torn by a crash, or damaged on disk, is skipped
on reading and the reader resynchronises on the next frame marker; it never stops the agent or the
report. The size is bounded: when a segment is full a new one starts with a snapshot record (whatever
the caller's ``snapshot`` returns, so the history before it can be forgotten) and the oldest segments
beyond ``max_segments`` are deleted.

Frame: ``MAGIC (2 bytes) | length (u32 LE) | crc32 of payload (u32 LE) | payload`` where the payload
is ASCII JSON (``ensure_ascii``), so the marker's first byte (0xA7) never occurs inside a payload.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"\xa7L"
_HEAD = struct.Struct("<2sII")
MAX_RECORD = 8 << 20
SEGMENT_BYTES = 4 << 20
MAX_SEGMENTS = 16
CHUNK = 2048
_NAME = re.compile(r"^journal-(\d{8})\.log$")

Record = dict[str, Any]


class JournalLocked(Exception):
    """Another process writes this journal (one writer per state directory)."""


@dataclass
class ReadStats:
    """What reading found besides the records: skipped (torn or damaged) frames and their bytes."""

    records: int = 0
    torn: int = 0
    torn_bytes: int = 0
    segments: int = 0
    #: segment file name -> damaged frames found in it
    damaged: dict[str, int] = field(default_factory=dict)


def frame(record: Record) -> bytes:
    payload = json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode(data: bytes, stats: ReadStats) -> Iterator[Record]:
    """Every intact record of one segment's bytes, in order; damaged frames are counted and skipped."""
    payloads = _frames(data, stats)
    # One JSON parse per chunk of records (the CRCs are checked already): several times faster than one
    # per record, and a chunk's dicts are few enough not to leave the heap fragmented. A payload that is
    # not a JSON object (never written so) makes its chunk fall back to one by one.
    for i in range(0, len(payloads), CHUNK):
        chunk = payloads[i : i + CHUNK]
        try:
            records = json.loads(b"[" + b",".join(chunk) + b"]")
        except ValueError:
            records = []
            for p in chunk:
                try:
                    records.append(json.loads(p))
                except ValueError:
                    records.append(None)
        for r in records:
            if isinstance(r, dict):
                stats.records += 1
                yield r
            else:
                stats.torn += 1


def _frames(data: bytes, stats: ReadStats) -> list[bytes]:
    out: list[bytes] = []
    pos, end = 0, len(data)
    bad_from = -1
    head = _HEAD.size
    crc32 = zlib.crc32
    while pos < end:
        if data.startswith(MAGIC, pos) and pos + head <= end:
            _, length, crc = _HEAD.unpack_from(data, pos)
            start = pos + head
            if length <= MAX_RECORD and start + length <= end:
                payload = data[start : start + length]
                if crc32(payload) == crc:
                    if bad_from >= 0:
                        stats.torn += 1
                        stats.torn_bytes += pos - bad_from
                        bad_from = -1
                    out.append(payload)
                    pos = start + length
                    continue
        if bad_from < 0:
            bad_from = pos
        nxt = data.find(MAGIC[:1], pos + 1)
        pos = end if nxt < 0 else nxt
    if bad_from >= 0:
        stats.torn += 1
        stats.torn_bytes += end - bad_from
    return out


def segments(directory: Path) -> list[Path]:
    """The journal's segment files, oldest first."""
    try:
        names = [p for p in directory.iterdir() if _NAME.match(p.name)]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda p: p.name)


def read_all(directory: Path, stats: ReadStats | None = None) -> Iterator[Record]:
    """Every intact record of every segment, oldest first (a reader needs no lock: a frame being
    written while it reads is simply torn for it)."""
    st = stats if stats is not None else ReadStats()
    for path in segments(directory):
        st.segments += 1
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # rotated away while we read
            continue
        before = st.torn
        yield from decode(data, st)
        if st.torn > before:
            st.damaged[path.name] = st.torn - before


class Journal:
    """The single writer of a journal directory (an exclusive ``flock`` on ``lock``)."""

    def __init__(
        self,
        directory: Path,
        snapshot: Callable[[], Record],
        segment_bytes: int = SEGMENT_BYTES,
        max_segments: int = MAX_SEGMENTS,
    ) -> None:
        self.directory = Path(directory)
        self.snapshot = snapshot
        self.segment_bytes = segment_bytes
        self.max_segments = max(2, max_segments)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise JournalLocked(f"{self.directory} is written by another process") from None
        existing = segments(self.directory)
        self._seq = int(_NAME.match(existing[-1].name).group(1)) if existing else 0  # type: ignore[union-attr]
        self._fd = -1
        self._size = 0
        self._open(existing[-1] if existing else None)

    def _path(self, seq: int) -> Path:
        return self.directory / f"journal-{seq:08d}.log"

    def _open(self, path: Path | None) -> None:
        if path is None:
            self._seq += 1
            path = self._path(self._seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size

    def append(self, records: Iterable[Record]) -> None:
        """Write records as one batch and fsync; rotate first if the segment is full."""
        data = b"".join(frame(r) for r in records)
        if not data:
            return
        if self._size and self._size + len(data) > self.segment_bytes:
            self._rotate()
        os.write(self._fd, data)
        os.fsync(self._fd)
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._open(None)
        snap = frame(self.snapshot())
        os.write(self._fd, snap)
        os.fsync(self._fd)
        self._size += len(snap)
        _fsync_dir(self.directory)
        for old in segments(self.directory)[: -self.max_segments]:
            old.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
