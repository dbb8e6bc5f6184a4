"""Protobuf wire encoding of the remote-write 1.0 ``WriteRequest``, by hand, plus snappy framing.

Why by hand: the 1.0 schema is four tiny messages whose field numbers the spec freezes
(WriteRequest.timeseries=1; TimeSeries.labels=1, samples=2; Label.name=1, value=2; Sample.value=1
double, timestamp=2 int64), and the sender only ever *encodes*. Hand encoding needs no generated code
(and none of protobuf's gencode/runtime version coupling), and lets the buffer store each series'
label block already encoded, so a send only concatenates bytes. ``tests/unit`` decodes the output with
the real ``protobuf`` runtime to prove the bytes are what a receiver expects.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

import cramjam

CONTENT_TYPE = "application/x-protobuf"
CONTENT_ENCODING = "snappy"
REMOTE_WRITE_VERSION = "0.1.0"

_DOUBLE = struct.Struct("<d")
_SAMPLE_VALUE_TAG = b"\x09"  # field 1, wire type 1 (64-bit)
_SAMPLE_TS_TAG = b"\x10"  # field 2, wire type 0 (varint)
_LABEL_NAME_TAG = b"\x0a"  # field 1, length-delimited
_LABEL_VALUE_TAG = b"\x12"  # field 2, length-delimited
_TS_LABEL_TAG = b"\x0a"  # TimeSeries.labels = 1
_TS_SAMPLE_TAG = b"\x12"  # TimeSeries.samples = 2
_WR_SERIES_TAG = b"\x0a"  # WriteRequest.timeseries = 1


def uvarint(n: int) -> bytes:
    """Unsigned LEB128 varint; negative int64 values are taken as their two's complement (10 bytes)."""
    if n < 0:
        n &= 0xFFFFFFFFFFFFFFFF
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_uvarint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; returns (value, next position). Raises IndexError on truncation."""
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _field_bytes(tag: bytes, data: bytes) -> bytes:
    return tag + uvarint(len(data)) + data


def encode_labels(labels: Iterable[tuple[str, str]]) -> bytes:
    """The ``labels`` fields of a TimeSeries (already tagged), in the order given (callers sort by name)."""
    out = bytearray()
    for name, value in labels:
        # "replace": a lone surrogate must not make a whole job result unencodable.
        label = _field_bytes(_LABEL_NAME_TAG, name.encode("utf-8", "replace")) + _field_bytes(
            _LABEL_VALUE_TAG, value.encode("utf-8", "replace")
        )
        out += _TS_LABEL_TAG
        out += uvarint(len(label))
        out += label
    return bytes(out)


def encode_sample(value: float, timestamp_ms: int) -> bytes:
    """One tagged ``samples`` field of a TimeSeries."""
    body = _SAMPLE_VALUE_TAG + _DOUBLE.pack(value) + _SAMPLE_TS_TAG + uvarint(timestamp_ms)
    return _TS_SAMPLE_TAG + uvarint(len(body)) + body


_SAMPLE_HEAD = struct.Struct("<BBBdB")  # samples tag, length, value tag, value, timestamp tag


def encode_timeseries(
    label_block: bytes, samples: Iterable[tuple[int, float]], ts_cache: dict[int, bytes] | None = None
) -> bytes:
    """A tagged WriteRequest ``timeseries`` field: pre-encoded labels plus (timestamp_ms, value) pairs.

    ``ts_cache`` memoises timestamp varints across the series of one request (they mostly share one).
    """
    cache = ts_cache if ts_cache is not None else {}
    parts = [label_block]
    pack = _SAMPLE_HEAD.pack
    for ts, value in samples:
        tsv = cache.get(ts)
        if tsv is None:
            tsv = cache[ts] = uvarint(ts)
        # Sample body is 1+8+1+len(tsv) <= 20 bytes, so its length fits in one varint byte.
        parts.append(pack(0x12, 10 + len(tsv), 0x09, value, 0x10))
        parts.append(tsv)
    body = b"".join(parts)
    return _WR_SERIES_TAG + uvarint(len(body)) + body


def encode_write_request(series: Iterable[tuple[bytes, Iterable[tuple[int, float]]]]) -> bytes:
    """A whole WriteRequest from (label block, samples) pairs."""
    cache: dict[int, bytes] = {}
    return b"".join(encode_timeseries(lb, samples, cache) for lb, samples in series)


def labels_block(labels: Mapping[str, str]) -> bytes:
    """Encode a label mapping sorted by name, as the spec requires."""
    return encode_labels(sorted(labels.items()))


def snappy_compress(data: bytes) -> bytes:
    """Snappy *block* format (not the framed stream format), as remote write requires."""
    return bytes(cramjam.snappy.compress_raw(data))


def snappy_decompress(data: bytes) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(data))
