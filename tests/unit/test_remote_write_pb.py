"""The hand-written remote-write encoding, decoded by the real protobuf runtime from the 1.0 schema."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from exporters import remote_write_pb as pb


def _write_request_class() -> Any:
    f = descriptor_pb2.FileDescriptorProto(name="rw_test.proto", package="rwtest", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL

    def msg(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        m = f.message_type.add(name=name)
        for fname, num, label, ftype, tname in fields:
            fd = m.field.add(name=fname, number=num, label=label, type=ftype)
            if tname:
                fd.type_name = tname

    msg("Label", [("name", 1, opt, T.TYPE_STRING, ""), ("value", 2, opt, T.TYPE_STRING, "")])
    msg("Sample", [("value", 1, opt, T.TYPE_DOUBLE, ""), ("timestamp", 2, opt, T.TYPE_INT64, "")])
    msg(
        "TimeSeries",
        [
            ("labels", 1, rep, T.TYPE_MESSAGE, ".rwtest.Label"),
            ("samples", 2, rep, T.TYPE_MESSAGE, ".rwtest.Sample"),
        ],
    )
    msg("WriteRequest", [("timeseries", 1, rep, T.TYPE_MESSAGE, ".rwtest.TimeSeries")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("rwtest.WriteRequest"))


WriteRequest = _write_request_class()

label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
label_values = st.text(max_size=300)
timestamps = st.integers(min_value=-(2**62), max_value=2**62)
values = st.floats(allow_nan=True, allow_infinity=True)


@given(
    st.lists(
        st.tuples(
            st.dictionaries(label_names, label_values, min_size=1, max_size=8),
            st.lists(st.tuples(timestamps, values), min_size=1, max_size=5),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_encoding_decodes_with_protobuf(series: list[tuple[dict[str, str], list[tuple[int, float]]]]) -> None:
    raw = pb.encode_write_request([(pb.labels_block(labels), samples) for labels, samples in series])
    req = WriteRequest()
    req.ParseFromString(pb.snappy_decompress(pb.snappy_compress(raw)))
    assert len(req.timeseries) == len(series)
    for ts, (labels, samples) in zip(req.timeseries, series, strict=True):
        assert [(lb.name, lb.value) for lb in ts.labels] == sorted(labels.items())
        got = [(s.timestamp, s.value) for s in ts.samples]
        assert [t for t, _ in got] == [t for t, _ in samples]
        for (_, gv), (_, wv) in zip(got, samples, strict=True):
            assert (math.isnan(gv) and math.isnan(wv)) or gv == wv


def test_known_bytes_of_one_sample() -> None:
    # Label{name:"a", value:"b"} and Sample{value:1.0, timestamp:1} wrapped in TimeSeries and WriteRequest.
    raw = pb.encode_write_request([(pb.labels_block({"a": "b"}), [(1, 1.0)])])
    label = b"\x0a\x01a\x12\x01b"
    sample = b"\x09" + b"\x00\x00\x00\x00\x00\x00\xf0\x3f" + b"\x10\x01"
    series = b"\x0a" + bytes([len(label)]) + label + b"\x12" + bytes([len(sample)]) + sample
    assert raw == b"\x0a" + bytes([len(series)]) + series


def test_varint_round_trip_and_negative_int64() -> None:
    for n in (0, 1, 127, 128, 300, 2**35, 2**63 - 1):
        assert pb.read_uvarint(pb.uvarint(n), 0) == (n, len(pb.uvarint(n)))
    assert len(pb.uvarint(-1)) == 10  # int64 -1 on the wire, as protobuf writes it
