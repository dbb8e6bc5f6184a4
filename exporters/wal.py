"""Crash-safe, bounded on-disk sample buffer for remote write: segment files plus persisted cursors.

Why its own format rather than Prometheus' WAL: the sender needs per-receiver *acknowledged*
positions, two delivery lanes and byte/age bounds, and nothing else of a TSDB WAL.

Layout of one buffer directory::

    seg-00000001 ...   append-only segments: 8-byte magic, then records
    cursor.json        acknowledged positions (written to a temp file and renamed over)

A record is ``<u32 length><u32 crc32(payload)><payload>``; one record holds one ``append()`` call:
``<u32 n_samples><i64 min_ts><i64 max_ts><u8 flags>``, the series first used in this segment
(``uvarint count``, each ``uvarint ref, uvarint len, label block``: the protobuf-encoded labels), then
columns: series refs (u16, or u32 with flag 2), values (f64), and only when the samples do not all share
``min_ts`` (flag 1) zigzag-varint timestamp deltas. One job result has one timestamp, so a sample costs
10 bytes and decodes with two ``array.frombytes`` calls. Segments are self-contained (series refs
restart in each), so dropping the oldest segment never orphans a later one.

Durability: a record reaches the page cache with one ``write()``, so ``kill -9`` loses nothing appended;
segments and the cursor file are fsynced every ``fsync_interval`` and on segment roll and close, so a
power loss loses at most that much. A torn or corrupt tail is cut off on open. Positions are
``(segment, offset)`` pairs; a batch is a run of whole records, so a re-sent batch is exactly the
batch sent before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import struct
import sys
import time
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from exporters.remote_write_pb import read_uvarint, uvarint

log = logging.getLogger("giamsat.remote_write")

MAGIC = b"GSRWAL1\n"
_HDR = struct.Struct("<II")
_RECHDR = struct.Struct("<IqqB")
_F_TS = 1  # samples carry their own timestamps (else all are at min_ts)
_F_WIDE = 2  # series refs are u32 (else u16)
_BIG_ENDIAN = sys.byteorder == "big"
CURSOR_FILE = "cursor.json"
SEGMENT_PREFIX = "seg-"

Pos = tuple[int, int]
"""(segment number, byte offset of a record start in that segment)."""

LabelKey = tuple[tuple[str, str], ...]


class CorruptRecordError(Exception):
    """A record passed its CRC but does not decode (a bug or tampering): its segment is skipped."""


class BufferLockedError(RuntimeError):
    """Another process holds this buffer directory."""


class DiskFullError(OSError):
    """The buffer could not write (ENOSPC/EDQUOT); the samples of that append were not stored."""


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int = len(MAGIC)
    # The per-record index lives in typed arrays (20 bytes a record) rather than lists of Python ints
    # (~105): a 1 GiB backlog has millions of records and a small box must survive a long outage.
    offsets: array[int] = field(default_factory=lambda: array("q"))  # record start offsets
    counts: array[int] = field(default_factory=lambda: array("I"))  # samples per record
    min_ts: array[int] = field(default_factory=lambda: array("q"))  # oldest sample per record (ms)
    max_ts: int = 0
    n_samples: int = 0

    def samples_from(self, off: int, end: int | None = None) -> int:
        """Samples in records starting at or after ``off`` (and before ``end``)."""
        i = bisect_left(self.offsets, off)
        j = len(self.offsets) if end is None else bisect_left(self.offsets, end)
        return sum(self.counts[i:j])


@dataclass
class SegmentRun:
    """A run of whole records of one segment, decoded for sending."""

    start: Pos
    end: Pos
    series: dict[bytes, list[tuple[int, float]]]  # label block -> [(ts_ms, value)]
    n_samples: int
    min_ts: int
    max_ts: int


@dataclass
class Lane:
    """A delivery lane: records in [pos, end) (end None: up to the tail) still to be acknowledged."""

    name: str
    pos: Pos
    end: Pos | None = None
    inflight: Pos | None = None  # end of the batch being sent; persisted so a re-send is identical
    pending: int = 0

    def as_json(self) -> dict[str, object]:
        return {"pos": list(self.pos), "end": _j(self.end), "inflight": _j(self.inflight)}


def _j(p: Pos | None) -> list[int] | None:
    return list(p) if p is not None else None


def _p(v: object) -> Pos | None:
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (v[0], v[1])
    return None


class Buffer:
    """The on-disk buffer of one remote-write receiver, with a live lane and an optional backfill lane.

    Not thread-safe: used from the event loop only (file I/O here is small appends and reads).
    Drops are reported through ``on_drop(reason, n)`` so the sender can count them.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int,
        max_age: float | None,
    ) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.max_age = max_age
        self.segments: list[_Segment] = []
        self.live = Lane("live", (1, len(MAGIC)))
        self.backfill: Lane | None = None
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._series: dict[LabelKey, int] = {}  # label key -> ref, for the tail segment
        self._tables: dict[int, tuple[int, dict[int, bytes]]] = {}  # seg -> (parsed up to, ref -> block)
        self.drops: dict[str, int] = {}
        self.repaired_bytes = 0
        self._cursor_dirty = False
        self._synced = True
        self._open = False

    # ---- open / recovery -------------------------------------------------------------------------

    def open(self) -> None:
        """Lock the directory and recover its state; on any failure nothing stays open or locked."""
        if self._open or self._lock_fd is not None:
            raise RuntimeError(f"{self.dir}: buffer already open")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise BufferLockedError(f"{self.dir} is in use by another giamsat process") from None
        try:
            self._recover()
        except BaseException:
            # Release the tail handle and the lock but write no cursor: the state is half loaded.
            self._release()
            raise
        self._open = True

    def _recover(self) -> None:
        self.segments = []
        self.live = Lane("live", (1, len(MAGIC)))
        self.backfill = None
        self._series = {}
        self._tables = {}
        seqs = sorted(
            int(p.name[len(SEGMENT_PREFIX) :])
            for p in self.dir.iterdir()
            if p.name.startswith(SEGMENT_PREFIX) and p.name[len(SEGMENT_PREFIX) :].isdigit()
        )
        for seq in seqs:
            seg = self._scan(seq)
            if seg is not None:
                self.segments.append(seg)
        with contextlib.suppress(FileNotFoundError):
            (self.dir / (CURSOR_FILE + ".tmp")).unlink()
        self._load_cursor()
        if not self.segments:
            self._new_segment(1)
        else:
            tail = self.segments[-1]
            self._fd = os.open(tail.path, os.O_WRONLY | os.O_APPEND)
            self._series = {}
            # Series refs of the tail segment continue: rebuild the key map from its table.
            for ref, block in self._table(tail.seq, tail.size).items():
                self._series[_key_of_block(block)] = ref
        self._clamp_lanes()
        self._recount()

    def _scan(self, seq: int) -> _Segment | None:
        path = self.dir / f"{SEGMENT_PREFIX}{seq:08d}"
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.warning(
                "remote-write buffer: unreadable segment skipped",
                extra={"file": str(path), "error": str(exc)},
            )
            return None
        if not data.startswith(MAGIC):
            log.warning("remote-write buffer: segment without header removed", extra={"file": str(path)})
            path.unlink(missing_ok=True)
            return None
        seg = _Segment(seq, path)
        off = len(MAGIC)
        n = len(data)
        while off + _HDR.size <= n:
            length, crc = _HDR.unpack_from(data, off)
            start = off + _HDR.size
            if length < _RECHDR.size or start + length > n or zlib.crc32(data[start : start + length]) != crc:
                break
            count, mn, mx, _flags = _RECHDR.unpack_from(data, start)
            seg.offsets.append(off)
            seg.counts.append(count)
            seg.min_ts.append(mn)
            seg.max_ts = max(seg.max_ts, mx)
            seg.n_samples += count
            off = start + length
        if off != n:
            # A torn tail (kill -9 or power loss mid-write) or garbage: cut it so appends continue cleanly.
            log.warning(
                "remote-write buffer: torn tail repaired",
                extra={"file": str(path), "kept_bytes": off, "cut_bytes": n - off},
            )
            self.repaired_bytes += n - off
            with open(path, "r+b") as f:
                f.truncate(off)
                os.fsync(f.fileno())
        seg.size = off
        return seg

    def _load_cursor(self) -> None:
        path = self.dir / CURSOR_FILE
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            first = self.segments[0].seq if self.segments else 1
            self.live = Lane("live", (first, len(MAGIC)))
            return
        except (OSError, ValueError) as exc:
            # Unreadable cursor: re-send everything buffered rather than lose it.
            log.warning(
                "remote-write buffer: cursor unreadable, re-sending the whole buffer",
                extra={"error": str(exc)},
            )
            first = self.segments[0].seq if self.segments else 1
            self.live = Lane("live", (first, len(MAGIC)))
            return
        live = state.get("live") or {}
        self.live = Lane("live", _p(live.get("pos")) or (1, len(MAGIC)), None, _p(live.get("inflight")))
        bf = state.get("backfill")
        if isinstance(bf, dict) and _p(bf.get("pos")) and _p(bf.get("end")):
            self.backfill = Lane("backfill", _p(bf["pos"]) or (1, 0), _p(bf["end"]), _p(bf.get("inflight")))

    def _clamp_lanes(self) -> None:
        """Move positions that point at deleted or cut data to the nearest record start that exists."""
        for lane in self._lanes():
            lane.pos = self._clamp(lane.pos)
            if lane.end is not None:
                lane.end = self._clamp(lane.end)
            if lane.inflight is not None:
                lane.inflight = self._clamp(lane.inflight)
                if lane.inflight <= lane.pos:
                    lane.inflight = None
        if self.backfill is not None and (
            self.backfill.end is None or self.backfill.pos >= self.backfill.end
        ):
            self.backfill = None

    def _clamp(self, pos: Pos) -> Pos:
        if not self.segments:
            return pos
        first, tail = self.segments[0], self.segments[-1]
        if pos[0] < first.seq:
            return (first.seq, len(MAGIC))
        if pos[0] > tail.seq:
            return (tail.seq, tail.size)
        seg = self._seg(pos[0])
        if seg is None:  # a gap in numbering: next existing segment
            nxt = next(s for s in self.segments if s.seq > pos[0])
            return (nxt.seq, len(MAGIC))
        if pos[1] >= seg.size:
            return (seg.seq, seg.size)
        i = bisect_left(seg.offsets, pos[1])
        return (seg.seq, seg.offsets[i] if i < len(seg.offsets) else seg.size)

    def _recount(self) -> None:
        for lane in self._lanes():
            lane.pending = self.count(lane.pos, lane.end)

    def count(self, start: Pos, end: Pos | None) -> int:
        """Samples in records from ``start`` up to ``end`` (None: the tail)."""
        total = 0
        for seg in self.segments:
            if seg.seq < start[0] or (end is not None and seg.seq > end[0]):
                continue
            lo = start[1] if seg.seq == start[0] else 0
            hi = end[1] if end is not None and seg.seq == end[0] else None
            total += seg.samples_from(lo, hi)
        return total

    # ---- appending -------------------------------------------------------------------------------

    def append(self, samples: Sequence[tuple[LabelKey, float, int]]) -> int:
        """Store one record; returns its sample count. Raises DiskFullError (nothing stored) on ENOSPC."""
        if not samples:
            return 0
        tail = self.segments[-1]
        if tail.size >= self.segment_bytes and tail.offsets:
            try:
                self._roll()
                tail = self.segments[-1]
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                # Keep appending to the old segment; it just grows past its nominal size.
        series = self._series
        new_defs = bytearray()
        n_new = 0
        refs: list[int] = []
        values = array("d")
        first_ts = samples[0][2]
        uniform = True
        for key, value, ts in samples:
            ref = series.get(key)
            if ref is None:
                ref = len(series) + 1
                series[key] = ref
                block = _block_of_key(key)
                new_defs += uvarint(ref) + uvarint(len(block)) + block
                n_new += 1
            refs.append(ref)
            values.append(value)
            if ts != first_ts:
                uniform = False
        wide = len(series) > 0xFFFF
        ref_arr = array("I" if wide else "H", refs)
        if _BIG_ENDIAN:
            ref_arr.byteswap()
            values.byteswap()
        if uniform:
            mn = mx = first_ts
            ts_part = b""
        else:
            mn = min(s[2] for s in samples)
            mx = max(s[2] for s in samples)
            ts_part = b"".join(uvarint(_zigzag(s[2] - mn)) for s in samples)
        flags = (0 if uniform else _F_TS) | (_F_WIDE if wide else 0)
        body = ref_arr.tobytes() + values.tobytes() + ts_part
        payload = _RECHDR.pack(len(samples), mn, mx, flags) + uvarint(n_new) + new_defs + body
        rec = _HDR.pack(len(payload), zlib.crc32(payload)) + payload
        off = tail.size
        assert self._fd is not None
        try:
            written = os.write(self._fd, rec)
            if written != len(rec):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as exc:
            # Undo a partial record so the next append starts on a record boundary.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, off)
            for key in list(series)[len(series) - n_new :]:
                del series[key]
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(exc.errno, os.strerror(exc.errno or errno.ENOSPC)) from None
            raise
        tail.offsets.append(off)
        tail.counts.append(len(samples))
        tail.min_ts.append(mn)
        tail.max_ts = max(tail.max_ts, mx)
        tail.n_samples += len(samples)
        tail.size = off + len(rec)
        self._synced = False
        self.live.pending += len(samples)
        self._enforce_size()
        return len(samples)

    def _new_segment(self, seq: int) -> None:
        path = self.dir / f"{SEGMENT_PREFIX}{seq:08d}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            if os.write(fd, MAGIC) != len(MAGIC):
                raise OSError(errno.ENOSPC, "short write")
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
        self._fd = fd
        self.segments.append(_Segment(seq, path))
        self._series = {}

    def _roll(self) -> None:
        self._new_segment(self.segments[-1].seq + 1)

    # ---- bounds ----------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def _enforce_size(self) -> None:
        while len(self.segments) > 1 and self.size_bytes > self.max_bytes:
            self._drop_oldest("buffer_full")

    def enforce_age(self, now_ms: int) -> None:
        """Drop whole segments whose newest sample is older than ``max_age`` (called periodically)."""
        if self.max_age is None:
            return
        limit = now_ms - int(self.max_age * 1000)
        while self.segments and self.segments[0].offsets and self.segments[0].max_ts < limit:
            if len(self.segments) == 1:
                self._roll()
            self._drop_oldest("too_old")

    def _drop_oldest(self, reason: str) -> None:
        seg = self.segments[0]
        nxt = (self.segments[1].seq, len(MAGIC))
        for lane in self._lanes():
            if lane.pos[0] == seg.seq:
                hi = lane.end[1] if lane.end is not None and lane.end[0] == seg.seq else None
                n = seg.samples_from(lane.pos[1], hi)
                if n:
                    self._count_drop(lane, reason, n)
                lane.pos = nxt if lane.end is None or lane.end > nxt else lane.end
                lane.inflight = None
        if (
            self.backfill is not None
            and self.backfill.end is not None
            and self.backfill.pos >= self.backfill.end
        ):
            self.backfill = None
        self._remove_segment(seg)
        self._cursor_dirty = True

    def _count_drop(self, lane: Lane, reason: str, n: int) -> None:
        lane.pending -= n
        self.drops[reason] = self.drops.get(reason, 0) + n

    def _remove_segment(self, seg: _Segment) -> None:
        self.segments.remove(seg)
        self._tables.pop(seg.seq, None)
        seg.path.unlink(missing_ok=True)

    def truncate_acknowledged(self) -> None:
        """Delete segments that every lane has moved past (never the tail)."""
        low = min(lane.pos for lane in self._lanes())
        while len(self.segments) > 1 and self.segments[0].seq < low[0]:
            self._remove_segment(self.segments[0])

    # ---- lanes and batches -----------------------------------------------------------------------

    def _lanes(self) -> list[Lane]:
        return [self.live] + ([self.backfill] if self.backfill is not None else [])

    def tail_pos(self) -> Pos:
        tail = self.segments[-1]
        return (tail.seq, tail.size)

    def split_backfill(self) -> bool:
        """Hand the live lane's backlog to a new backfill lane; live continues from the tail."""
        if self.backfill is not None or self.live.inflight is not None or self.live.pending == 0:
            return False
        tail = self.tail_pos()
        self.backfill = Lane("backfill", self.live.pos, tail, None, self.live.pending)
        self.live.pos = tail
        self.live.pending = 0
        self._cursor_dirty = True
        return True

    def oldest_pending_ts(self) -> int | None:
        best: int | None = None
        for lane in self._lanes():
            if lane.pending <= 0:
                continue
            seg = self._seg(lane.pos[0])
            while seg is not None:
                i = bisect_left(seg.offsets, lane.pos[1] if seg.seq == lane.pos[0] else 0)
                if i < len(seg.offsets):
                    ts = seg.min_ts[i]
                    best = ts if best is None else min(best, ts)
                    break
                seg = self._seg_after(seg.seq)
        return best

    def _seg(self, seq: int) -> _Segment | None:
        for s in self.segments:
            if s.seq == seq:
                return s
        return None

    def _seg_after(self, seq: int) -> _Segment | None:
        for s in self.segments:
            if s.seq > seq:
                return s
        return None

    def next_batch(self, lane: Lane, max_samples: int) -> SegmentRun | None:
        """The next run of whole records of ``lane`` (the persisted in-flight run first), or None."""
        pos = lane.pos
        seg = self._seg(pos[0])
        if seg is None:
            return None
        if pos[1] >= seg.size:
            if lane.end is not None and pos >= lane.end:
                return None
            nxt = self._seg_after(seg.seq)
            if nxt is None:
                return None
            # Moving to the next segment acknowledges nothing; just advance.
            lane.pos = pos = (nxt.seq, len(MAGIC))
            seg = nxt
        stop = seg.size
        if lane.end is not None and lane.end[0] == seg.seq:
            stop = min(stop, lane.end[1])
        if lane.inflight is not None and lane.inflight[0] == seg.seq:
            stop = min(stop, lane.inflight[1])
            max_samples = 1 << 62
        if pos[1] >= stop:
            return None
        table = self._table(seg.seq, pos[1])
        # Read about what a batch needs (~12 bytes a sample plus labels), not the rest of the segment;
        # _decode reads on when a record runs past the chunk.
        chunk = min(stop - pos[1], max(1 << 16, 32 * min(max_samples, 1 << 20)))
        try:
            with open(seg.path, "rb") as f:
                f.seek(pos[1])
                return self._decode(seg, pos, f, chunk, stop - pos[1], table, max_samples)
        except (KeyError, IndexError, ValueError, struct.error) as exc:
            raise CorruptRecordError(
                f"{seg.path}: undecodable record after offset {pos[1]}: {exc!r}"
            ) from None

    def _decode(
        self,
        seg: _Segment,
        pos: Pos,
        f: BinaryIO,
        chunk: int,
        limit: int,
        table: dict[int, bytes],
        max_samples: int,
    ) -> SegmentRun:
        data = f.read(chunk)
        series: dict[bytes, list[tuple[int, float]]] = {}
        off = 0
        n = 0
        mn, mx = 1 << 62, -(1 << 62)
        while off < limit and n < max_samples:
            if off + _HDR.size > len(data):
                data += f.read(max(chunk, off + _HDR.size - len(data)))
            length, _crc = _HDR.unpack_from(data, off)
            start = off + _HDR.size
            end = start + length
            if end > len(data):
                data += f.read(max(chunk, end - len(data)))
                if end > len(data):
                    raise ValueError("record runs past the end of the segment")
            count, rmn, rmx, flags = _RECHDR.unpack_from(data, start)
            p = _parse_defs(data, start + _RECHDR.size, table)
            ref_arr = array("I" if flags & _F_WIDE else "H")
            q = p + count * ref_arr.itemsize
            ref_arr.frombytes(data[p:q])
            values = array("d")
            values.frombytes(data[q : q + 8 * count])
            if _BIG_ENDIAN:
                ref_arr.byteswap()
                values.byteswap()
            if flags & _F_TS:
                p = q + 8 * count
                for ref, value in zip(ref_arr, values, strict=True):
                    dts, p = read_uvarint(data, p)
                    series.setdefault(table[ref], []).append((rmn + _unzigzag(dts), value))
            else:
                for ref, value in zip(ref_arr, values, strict=True):
                    series.setdefault(table[ref], []).append((rmn, value))
            n += count
            mn, mx = min(mn, rmn), max(mx, rmx)
            off = end
        self._tables[seg.seq] = (pos[1] + off, table)
        return SegmentRun(pos, (seg.seq, pos[1] + off), series, n, mn, mx)

    def _table(self, seq: int, upto: int) -> dict[int, bytes]:
        """Series table of segment ``seq`` for records before offset ``upto`` (parsed incrementally)."""
        parsed, table = self._tables.get(seq, (len(MAGIC), {}))
        # A table parsed further than needed is still right: refs are never reused within a segment.
        if parsed < upto:
            seg = self._seg(seq)
            assert seg is not None
            with open(seg.path, "rb") as f:
                f.seek(parsed)
                data = f.read(upto - parsed)
            off = 0
            while off + _HDR.size <= len(data):
                length, _crc = _HDR.unpack_from(data, off)
                start = off + _HDR.size
                _parse_defs(data, start + _RECHDR.size, table)
                off = start + length
            parsed += off
        self._tables[seq] = (parsed, table)
        return table

    def skip_segment(self, lane: Lane) -> int:
        """Give up the rest of the lane's current segment (after CorruptRecordError); returns samples dropped."""
        seg = self._seg(lane.pos[0])
        if seg is None:
            return 0
        hi = lane.end[1] if lane.end is not None and lane.end[0] == seg.seq else None
        n = seg.samples_from(lane.pos[1], hi)
        self._count_drop(lane, "corrupt", n)
        lane.pos = (seg.seq, seg.size) if hi is None else (seg.seq, hi)
        lane.inflight = None
        if lane is self.backfill and lane.end is not None and lane.pos >= lane.end:
            self.backfill = None
        self._cursor_dirty = True
        return n

    def mark_inflight(self, lane: Lane, batch: SegmentRun) -> None:
        lane.inflight = batch.end
        self._cursor_dirty = True

    def ack(self, lane: Lane, batch: SegmentRun) -> bool:
        """The receiver has the batch (or it was dropped): advance. False if a drop moved the lane."""
        if lane.pos != batch.start:
            return False
        lane.pos = batch.end
        lane.inflight = None
        lane.pending -= batch.n_samples
        if lane is self.backfill and lane.end is not None and lane.pos >= lane.end:
            self.backfill = None
        self._cursor_dirty = True
        return True

    # ---- persistence -----------------------------------------------------------------------------

    def cursor_state(self) -> bytes:
        state = {
            "version": 1,
            "live": self.live.as_json(),
            "backfill": self.backfill.as_json() if self.backfill is not None else None,
        }
        self._cursor_dirty = False
        return json.dumps(state, separators=(",", ":")).encode()

    @property
    def cursor_dirty(self) -> bool:
        return self._cursor_dirty

    def write_cursor(self, data: bytes, fsync: bool) -> None:
        """Atomically replace cursor.json (temp file + rename); fsync file and directory if asked."""
        tmp = self.dir / (CURSOR_FILE + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "short write")
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.dir / CURSOR_FILE)
            if fsync:
                _fsync_dir(self.dir)
        except OSError:
            self._cursor_dirty = True
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def sync_handle(self) -> int | None:
        """A duplicate of the tail segment's fd to fsync in another thread (a roll cannot close it under
        that thread), or None when nothing was written since the last sync. The caller closes it."""
        if self._synced or self._fd is None:
            return None
        self._synced = True  # appends after this point set it back
        return os.dup(self._fd)

    def sync(self) -> None:
        fd = self.sync_handle()
        if fd is not None:
            fsync_and_close(fd)

    @property
    def is_open(self) -> bool:
        return self._open

    def close(self) -> None:
        """Sync and release the buffer; a no-op when it is not open (idempotent)."""
        if not self._open:
            self._release()
            return
        self._open = False
        try:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
            with contextlib.suppress(OSError):
                self.write_cursor(self.cursor_state(), fsync=True)
        finally:
            self._release()

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


def fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_defs(data: bytes, p: int, table: dict[int, bytes]) -> int:
    n_new, p = read_uvarint(data, p)
    for _ in range(n_new):
        ref, p = read_uvarint(data, p)
        ln, p = read_uvarint(data, p)
        table[ref] = bytes(data[p : p + ln])
        p += ln
    return p


def _block_of_key(key: LabelKey) -> bytes:
    from exporters.remote_write_pb import encode_labels

    return encode_labels(key)


def _key_of_block(block: bytes) -> LabelKey:
    """Decode a label block back to its key (only on open, to continue a segment's series refs)."""
    out: list[tuple[str, str]] = []
    p = 0
    while p < len(block):
        p += 1  # TimeSeries.labels tag
        ln, p = read_uvarint(block, p)
        end = p + ln
        name = value = ""
        while p < end:
            tag = block[p]
            p += 1
            sl, p = read_uvarint(block, p)
            s = block[p : p + sl].decode()
            p += sl
            if tag == 0x0A:
                name = s
            else:
                value = s
        out.append((name, value))
    return tuple(out)


def now_ms() -> int:
    return int(time.time() * 1000)


def label_key(labels: Iterable[tuple[str, str]]) -> LabelKey:
    return tuple(sorted(labels))
