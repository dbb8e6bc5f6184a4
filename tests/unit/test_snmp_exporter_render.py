"""snmp_exporter's snmp.yml read as module definitions, and its rendering rules (collector.go): index
types, lookups (chained, dropped source indexes), every value type, regex extracts, scale/offset,
Counter64 wrap, dynamic and static filters, and named errors for what is not supported."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.kernel.errors import ConfigError
from collectors.snmp.client import PacketStats, Value
from collectors.snmp.exporter_config import ExModule, load_file
from collectors.snmp.exporter_render import fetch, index_as_string, render

ORACLES = Path(__file__).resolve().parents[1] / "data" / "oracles" / "snmp_exporter"


def _mod(*metrics: dict[str, Any], **kw: Any) -> ExModule:
    return ExModule.model_validate({"metrics": list(metrics), **kw})


def _samples(mod: ExModule, pdus: dict[str, Value]) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
    return {(s.name, frozenset(s.labels.items()), s.value) for f in render(mod, pdus) for s in f.samples}


def test_both_upstream_layouts_load() -> None:
    current = load_file(ORACLES / "snmp.yml")
    old = load_file(ORACLES / "snmp-v0.21.0.yml")
    assert {"if_mib", "system", "ups_mib", "hrStorage"} <= set(current.modules)
    assert set(current.auths) == {"public_v1", "public_v2"}
    # pre-0.23: each module's own credentials, registered under the module's name
    assert old.module_auth["if_mib"] == "if_mib" and old.auths["if_mib"].version == 2


def test_unsupported_keys_and_types_name_file_line_and_key(tmp_path: Path) -> None:
    f = tmp_path / "snmp.yml"
    f.write_text(
        "modules:\n"
        "  m:\n"
        "    walk: [1.3.6.1.2.1.1]\n"
        "    metrics:\n"
        "    - name: x\n"
        "      oid: 1.3.6.1.2.1.1.1\n"
        "      type: Weird\n"
        "    - name: y\n"
        "      oid: 1.3.6.1.2.1.1.2\n"
        "      type: gauge\n"
        "      indexes: [{labelname: i, type: NoSuchIndex}]\n"
        "    bogus_walk_param: 3\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_file(f)
    text = str(exc.value)
    assert f"{f}:7: modules.m.metrics[0].type: unsupported type 'Weird'" in text
    assert f"{f}:11: modules.m.metrics[1].indexes[0].type: unsupported type 'NoSuchIndex'" in text
    assert f"{f}:12: modules.m.bogus_walk_param: unknown key" in text
    old = tmp_path / "old.yml"
    old.write_text("m:\n  version: 5\n  metrics: []\n")
    with pytest.raises(ConfigError, match=r"old.yml:2: m.version"):
        load_file(old)


def test_index_types() -> None:
    assert index_as_string([5, 7], "gauge", 0, False, None) == ("5", [5], [7])
    assert (
        index_as_string([0, 1, 2, 171, 205, 239], "PhysAddress48", 0, False, None)[0] == "00:01:02:AB:CD:EF"
    )
    assert index_as_string([2, 104, 105, 9], "DisplayString", 0, False, None) == ("hi", [2, 104, 105], [9])
    assert index_as_string([104, 105], "DisplayString", 0, True, None)[0] == "hi"
    assert index_as_string([3, 1, 2, 255], "OctetString", 0, False, None)[0] == "0x0102FF"
    assert index_as_string([1, 4, 10, 0, 0, 1, 7], "InetAddress", 0, False, None) == (
        "10.0.0.1",
        [1, 4, 10, 0, 0, 1],
        [7],
    )
    v6 = [2, 16, 0x20, 0x01, 0x0D, 0xB8, *([0] * 11), 1]
    assert index_as_string(v6, "InetAddress", 0, False, None)[0] == "2001:0DB8:0000:0000:0000:0000:0000:0001"
    assert index_as_string([2], "EnumAsInfo", 0, False, {2: "two"})[0] == "two"
    # some agents leave trailing zeros out: padded, as snmp_exporter does
    assert index_as_string([10, 0], "InetAddressIPv4", 0, False, None)[0] == "10.0.0.0"


def test_lookups_chained_and_dropped_source_index() -> None:
    mod = _mod(
        {
            "name": "entSensorValue",
            "oid": "1.9.1",
            "type": "gauge",
            "indexes": [{"labelname": "idx", "type": "gauge"}],
            "lookups": [
                {"labels": ["idx"], "labelname": "phys", "oid": "1.9.2", "type": "gauge"},
                {"labels": ["phys"], "labelname": "name", "oid": "1.9.3", "type": "DisplayString"},
                {"labels": [], "labelname": "idx"},
            ],
        }
    )
    pdus: dict[str, Value] = {"1.9.1.7": 42, "1.9.2.7": 1001, "1.9.3.1001": b"PSU 1"}
    assert _samples(mod, pdus) == {("entSensorValue", frozenset({("phys", "1001"), ("name", "PSU 1")}), 42.0)}
    # a missing lookup value is an empty label
    assert _samples(mod, {"1.9.1.8": 1}) == {("entSensorValue", frozenset({("phys", ""), ("name", "")}), 1.0)}


def test_value_types() -> None:
    idx = [{"labelname": "i", "type": "gauge"}]
    mod = _mod(
        {"name": "c64", "oid": "1.8.1", "type": "counter", "indexes": idx},
        {"name": "g", "oid": "1.8.2", "type": "gauge", "indexes": idx, "scale": 0.1, "offset": -1},
        {"name": "d", "oid": "1.8.3", "type": "DisplayString", "indexes": idx},
        {"name": "o", "oid": "1.8.4", "type": "OctetString", "indexes": idx},
        {"name": "mac", "oid": "1.8.5", "type": "PhysAddress48", "indexes": idx},
        {
            "name": "info",
            "oid": "1.8.6",
            "type": "EnumAsInfo",
            "indexes": idx,
            "enum_values": {1: "up", 2: "down"},
        },
        {
            "name": "st",
            "oid": "1.8.7",
            "type": "EnumAsStateSet",
            "indexes": idx,
            "enum_values": {1: "a", 2: "b"},
        },
        {
            "name": "bits",
            "oid": "1.8.8",
            "type": "Bits",
            "indexes": idx,
            "enum_values": {0: "b0", 1: "b1", 9: "b9"},
        },
        {"name": "when", "oid": "1.8.9", "type": "DateAndTime", "indexes": idx},
        {"name": "addrType", "oid": "1.8.10", "type": "gauge", "indexes": idx},
        {"name": "addr", "oid": "1.8.11", "type": "InetAddress", "indexes": idx},
        {"name": "oid", "oid": "1.8.12", "type": "OctetString", "indexes": idx},
    )
    pdus: dict[str, Value] = {
        "1.8.1.1": (1 << 53) + 5,  # Counter64 past 2^53: wrapped, as --snmp.wrap-large-counters does
        "1.8.2.1": 235,
        "1.8.3.1": b"caf\xc3\xa9 \xff\xfe!",  # invalid bytes: one replacement character per run
        "1.8.4.1": b"\x01\xab",
        "1.8.5.1": b"\x00\x1b\x21\x3c\x4d\x5e",
        "1.8.6.1": 2,
        "1.8.7.1": 2,
        "1.8.8.1": b"\x80\x40",  # bits 0 and 9 set
        "1.8.9.1": struct.pack(">H", 2024) + bytes([3, 15, 10, 20, 30, 0]) + b"+" + bytes([7, 0]),
        "1.8.10.1": 1,
        "1.8.11.1": b"\x0a\x00\x00\x01",
        "1.8.12.1": "1.3.6.1.4.1.8072",
    }
    got = _samples(mod, pdus)
    i = ("i", "1")
    assert ("c64", frozenset({i}), 5.0) in got
    assert next(v for n, _, v in got if n == "g") == pytest.approx(22.5)
    assert ("d", frozenset({i, ("d", "café \ufffd!")}), 1.0) in got
    assert ("o", frozenset({i, ("o", "0x01AB")}), 1.0) in got
    assert ("mac", frozenset({i, ("mac", "00:1B:21:3C:4D:5E")}), 1.0) in got
    assert ("info_info", frozenset({i, ("info", "down")}), 1.0) in got
    assert {s for s in got if s[0] == "st"} == {
        ("st", frozenset({i, ("st", "b")}), 1.0),
        ("st", frozenset({i, ("st", "a")}), 0.0),
    }
    assert {s for s in got if s[0] == "bits"} == {
        ("bits", frozenset({i, ("bits", "b0")}), 1.0),
        ("bits", frozenset({i, ("bits", "b1")}), 0.0),
        ("bits", frozenset({i, ("bits", "b9")}), 1.0),
    }
    assert ("when", frozenset({i}), 1710498030.0 - 7 * 3600) in got
    assert ("addr", frozenset({i, ("addr", "10.0.0.1")}), 1.0) in got  # type from addrType (1 = IPv4)
    assert ("oid", frozenset({i, ("oid", "1.3.6.1.4.1.8072")}), 1.0) in got
    fams = {f.name: f for f in render(mod, pdus)}
    assert fams["c64"].type == "counter" and fams["st"].documentation.endswith("(EnumAsStateSet)")


def test_regex_extracts() -> None:
    mod = _mod(
        {
            "name": "temp",
            "oid": "1.7.1",
            "type": "DisplayString",
            "regex_extracts": {
                "": [{"regex": r"^(\d+\.\d+).*", "value": "$1"}],
                "Status": [{"regex": "ok", "value": "1"}, {"regex": ".*", "value": "0"}],
            },
        }
    )
    assert _samples(mod, {"1.7.1.0": b"41.5 C"}) == {
        ("temp", frozenset(), 41.5),
        ("tempStatus", frozenset(), 0.0),
    }
    assert _samples(mod, {"1.7.1.0": b"ok"}) == {("tempStatus", frozenset(), 1.0)}


class FakeClient:
    """Answers from a fixed table, in OID order, recording the requests."""

    def __init__(self, table: dict[str, Value]) -> None:
        self.table = table
        self.stats = PacketStats()
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    @staticmethod
    def _key(oid: str) -> tuple[int, ...]:
        return tuple(int(x) for x in oid.split("."))

    async def get(self, oids: Sequence[str]) -> dict[str, Value]:
        self.calls.append(("get", tuple(oids)))
        return {o: self.table[o] for o in oids if o in self.table}

    async def walk(self, oid: str) -> list[tuple[str, Value]]:
        self.calls.append(("walk", (oid,)))
        rows = [(o, v) for o, v in self.table.items() if o.startswith(oid + ".")]
        return sorted(rows, key=lambda r: self._key(r[0]))

    async def walk_many(self, oids: Sequence[str]) -> list[list[tuple[str, Value]]]:
        return [await self.walk(o) for o in oids]

    async def close(self) -> None:
        pass


def test_dynamic_and_static_filters() -> None:
    table: dict[str, Value] = {
        "1.6.1.1": b"eth0",
        "1.6.1.2": b"lo",
        "1.6.1.3": b"eth1",
        "1.6.2.1": 10,
        "1.6.2.2": 20,
        "1.6.2.3": 30,
    }
    metric = {"name": "x", "oid": "1.6.2", "type": "gauge", "indexes": [{"labelname": "i", "type": "gauge"}]}
    dyn = _mod(metric, walk=["1.6.2"], filters=[{"oid": "1.6.1", "targets": ["1.6.2"], "values": ["^eth"]}])
    client = FakeClient(table)
    got = asyncio.run(fetch(client, dyn, 2))
    assert got.pdus == {"1.6.2.1": 10, "1.6.2.3": 30}
    assert ("get", ("1.6.2.1", "1.6.2.3")) in client.calls and ("walk", ("1.6.2",)) not in client.calls
    static = _mod(metric, walk=["1.6.2"], filters={"static": [{"targets": ["1.6.2"], "indices": ["2"]}]})
    assert asyncio.run(fetch(FakeClient(table), static, 2)).pdus == {"1.6.2.2": 20}


def test_gets_batched_by_max_repetitions_and_empty_walk_checks_the_root() -> None:
    mod = _mod(get=[f"1.5.{i}.0" for i in range(5)], walk=["1.5.9", "1.5.8.0"], max_repetitions=2)
    client = FakeClient({"1.5.0.0": 1, "1.5.8.0": 7})
    got = asyncio.run(fetch(client, mod, 2))
    assert [c for c in client.calls if c[0] == "get"][:3] == [
        ("get", ("1.5.0.0", "1.5.1.0")),
        ("get", ("1.5.2.0", "1.5.3.0")),
        ("get", ("1.5.4.0",)),
    ]
    # gosnmp's walk: nothing under the root, so the root itself is asked for (it may be a leaf)
    assert got.pdus == {"1.5.0.0": 1, "1.5.8.0": 7}


def test_shipped_modules_round_trip_through_yaml() -> None:
    from collectors.snmp.modules import EXPORTER_FILE

    data = yaml.safe_load(EXPORTER_FILE.read_text())
    assert set(data) == {"modules"}


async def test_walk_params_reach_the_client(tmp_path: Path) -> None:
    """(A coroutine test: the pysnmp client wants the running event loop, whatever ran before.)"""
    import logging

    from agent.kernel.collector import BlockingRunner, CollectorContext
    from collectors.snmp import SnmpCollector
    from collectors.snmp.client import GufoClient, PysnmpClient, SnmpClientError, WalkGuard
    from collectors.snmp.config import SnmpSettings, SnmpTarget

    f = tmp_path / "snmp.yml"
    f.write_text(
        yaml.safe_dump(
            {
                "auths": {"a": {"community": "c"}},
                "modules": {
                    "odd": {
                        "walk": ["1.3.6.1.4.1.9"],
                        "max_repetitions": 7,
                        "retries": 1,
                        "timeout": "2s",
                        "allow_nonincreasing_oids": True,
                        "use_unconnected_udp_socket": True,
                        "metrics": [],
                    },
                    "plain": {"walk": ["1.3.6.1.4.1.9"], "metrics": []},
                },
            }
        )
    )
    settings = SnmpSettings.model_validate({"module_files": [str(f)]})
    ctx = CollectorContext("snmp", tmp_path, BlockingRunner("gs-test-wp", 1), logging.getLogger("t"))
    c = SnmpCollector(settings, ctx)
    t = SnmpTarget(name="d", site="s", address="198.18.40.1", auth="a", modules=["odd", "plain"])
    odd = c._client(t, settings.all_auths["a"], c.ex_modules["odd"])
    assert isinstance(odd, PysnmpClient)  # an unconnected socket: the pysnmp engine
    assert (odd.ep.max_repetitions, odd.ep.retries, odd.ep.timeout, odd.ep.allow_nonincreasing_oids) == (
        7,
        1,
        2.0,
        True,
    )
    plain = c._client(t, settings.all_auths["a"], c.ex_modules["plain"])
    assert isinstance(plain, GufoClient) and (plain.ep.max_repetitions, plain.ep.retries) == (25, 3)
    # a target's own setting wins over the module's
    t2 = SnmpTarget(name="e", site="s", address="198.18.40.1", auth="a", modules=["odd"], retries=0)
    own = c._client(t2, settings.all_auths["a"], c.ex_modules["odd"])
    assert isinstance(own, (PysnmpClient, GufoClient)) and own.ep.retries == 0
    g = WalkGuard("1.3", 10, allow_nonincreasing=True)
    assert g.accept("1.3.5") and g.accept("1.3.2")  # accepted, still bounded by the limit
    with pytest.raises(SnmpClientError):
        strict = WalkGuard("1.3", 10)
        strict.accept("1.3.5")
        strict.accept("1.3.2")
