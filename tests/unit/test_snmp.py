"""SNMP collector pure parts: config models, module definitions, value semantics, walk guard."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from collectors.snmp import SnmpCollector
from collectors.snmp.client import SnmpClientError, Value, WalkGuard
from collectors.snmp.collector import build_families, format_string, parse_index
from collectors.snmp.config import Auth, MetricDef, Module, SnmpSettings, SnmpTarget
from collectors.snmp.exporter_config import load_file
from collectors.snmp.modules import SHIPPED, SHIPPED_EXPORTER

ORACLES = Path(__file__).resolve().parents[1] / "data" / "oracles" / "snmp_exporter"

ROOT = Path(__file__).resolve().parents[2]


def test_ambiguous_aes_names_are_refused_with_the_explicit_names() -> None:
    for name in ("AES192", "AES256", "AES192C", "aes256c"):
        with pytest.raises(ValidationError) as exc:
            Auth(version=3, username="u", password="p", priv_password="q", priv_protocol=name)
        text = str(exc.value)
        assert "Blumenthal" in text or "Reeder" in text
    a = Auth(
        version=3,
        username="u",
        password="p",
        priv_password="q",
        priv_protocol="aes256-reeder",
        auth_protocol="sha-512",
    )
    assert (a.priv_protocol, a.auth_protocol) == ("AES256-Reeder", "SHA512")
    assert (
        Auth(version=3, username="u", password="p", priv_password="q", priv_protocol="AES128").priv_protocol
        == "AES"
    )


def test_auth_requirements_and_secrets_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="community"):
        Auth(version=2)
    with pytest.raises(ValidationError, match="priv_password"):
        Auth(version=3, username="u", password="p")
    with pytest.raises(ValidationError, match="username"):
        Auth(version=3)
    Auth(version=3, username="u", security_level="noAuthNoPriv")
    monkeypatch.setenv("GS_TEST_PRIV", "very-secret-priv")
    a = Auth.model_validate(
        {"version": 3, "username": "u", "password": "very-secret-auth", "priv_password_env": "GS_TEST_PRIV"}
    )
    assert a.priv_password is not None and a.priv_password.get_secret_value() == "very-secret-priv"
    for text in (repr(a), str(a), str(a.model_dump())):
        assert "very-secret" not in text


def test_user_modules_cannot_shadow_shipped_ones() -> None:
    m = {"metrics": [{"name": "x", "oid": "1.3.6.1.4.1.9.9.1"}]}
    with pytest.raises(ValidationError, match="shipped"):
        SnmpSettings.model_validate({"modules": {"if_mib": m}})
    s = SnmpSettings.model_validate({"modules": {"mine": m}})
    assert s.modules["mine"].metrics[0].oid == "1.3.6.1.4.1.9.9.1"


def test_defaults_follow_snmp_exporter() -> None:
    s = SnmpSettings()
    assert (s.request_timeout, s.retries, s.max_repetitions, s.engine) == (5.0, 3, 25, "gufo")


def test_shipped_modules() -> None:
    """giamsat's own modules, and snmp_exporter's generated ones copied unchanged from its snmp.yml."""
    assert set(SHIPPED) == {"host_resources", "ups"}
    assert set(SHIPPED_EXPORTER) == {"system", "if_mib", "ups_mib", "hrDevice", "hrStorage", "hrSystem"}
    upstream = load_file(ORACLES / "snmp.yml").modules
    for name, mod in SHIPPED_EXPORTER.items():
        assert mod == upstream[name], name
    names = {m.name for m in SHIPPED_EXPORTER["if_mib"].metrics}
    assert {"ifSpeed", "ifType", "ifMtu", "ifLastChange", "ifInMulticastPkts", "ifHCInOctets"} <= names


def test_check_targets() -> None:
    s = SnmpSettings.model_validate(
        {
            "auths": {
                "ctx": {
                    "version": 3,
                    "username": "u",
                    "security_level": "noAuthNoPriv",
                    "context_name": "vlan-10",
                }
            },
            "modules": {"dup": {"metrics": [{"name": "upsBatteryStatus", "oid": "1.3.6.1.4.1.1"}]}},
        }
    )
    targets = [
        SnmpTarget(name="a", site="s", address="198.18.40.1", auth="nope", modules=["if_mib", "nope"]),
        SnmpTarget(name="b", site="s", address="198.18.40.1", auth="ctx", modules=["ups", "dup"]),
        SnmpTarget(name="c", site="s", address="198.18.40.1", auth="ctx", engine="pysnmp"),
    ]
    problems = SnmpCollector.check_targets(s, targets)
    assert [(i, k) for i, k, _ in problems] == [(0, "auth"), (0, "modules[1]"), (1, "engine"), (1, "modules")]
    assert "upsBatteryStatus" in problems[3][2]


def _mod(*metrics: dict[str, object]) -> Module:
    return Module.model_validate({"metrics": list(metrics)})


def test_value_semantics() -> None:
    mod = _mod(
        {"name": "sysUpTime_seconds", "oid": "1.3.6.1.2.1.1.3", "type": "timeticks"},
        {
            "name": "snmp_system_info",
            "oid": "1.3.6.1.2.1.1.5",
            "type": "info",
            "label": "sysName",
            "lookups": [
                {"labelname": "sysObjectID", "oid": "1.3.6.1.2.1.1.2"},
                {"labelname": "sysLocation", "oid": "1.3.6.1.2.1.1.6"},
            ],
        },
        {
            "name": "ifHCInOctets",
            "oid": "1.3.6.1.2.1.31.1.1.1.6",
            "type": "counter",
            "help": "octets in",
            "indexes": [{"labelname": "ifIndex"}],
            "lookups": [{"labelname": "ifName", "oid": "1.3.6.1.2.1.31.1.1.1.1"}],
        },
        {
            "name": "upsBatteryStatus",
            "oid": "1.3.6.1.2.1.33.1.2.1",
            "type": "enum",
            "enum_values": {2: "batteryNormal", 3: "batteryLow"},
        },
        {
            "name": "hrStorageSize_bytes",
            "oid": "1.3.6.1.2.1.25.2.3.1.5",
            "multiply_by": "1.3.6.1.2.1.25.2.3.1.4",
            "indexes": [{"labelname": "hrStorageIndex"}],
        },
        {"name": "upsEstimatedSecondsRemaining", "oid": "1.3.6.1.2.1.33.1.2.3", "scale": 60},
        {"name": "missing", "oid": "1.3.6.1.2.1.99.1"},
    )
    scalars: dict[str, Value] = {
        "1.3.6.1.2.1.1.3.0": 12345,
        "1.3.6.1.2.1.1.5.0": b"core-sw\x00",
        "1.3.6.1.2.1.1.2.0": "1.3.6.1.4.1.9.1.1",
        "1.3.6.1.2.1.33.1.2.1.0": 3,
        "1.3.6.1.2.1.33.1.2.3.0": b" 42 ",  # DisplayString number, as some UPS agents send
    }
    tables: dict[str, dict[str, Value]] = {
        "1.3.6.1.2.1.31.1.1.1.6": {"1": 2**64 - 1, "2": 7, "x": 1},
        "1.3.6.1.2.1.31.1.1.1.1": {"1": b"Gi0/1"},
        "1.3.6.1.2.1.25.2.3.1.5": {"1": 1000, "2": 5},
        "1.3.6.1.2.1.25.2.3.1.4": {"1": 4096},
    }
    fams = {f.name: f for f in build_families(mod, scalars, tables)}
    assert "missing" not in fams  # noSuchObject: no series, not a zero
    (up,) = fams["sysUpTime_seconds"].samples
    assert up.value == 123.45
    (info,) = fams["snmp_system_info"].samples
    assert info.labels == {"sysName": "core-sw", "sysObjectID": "1.3.6.1.4.1.9.1.1", "sysLocation": ""}
    octets = fams["ifHCInOctets"]
    assert octets.type == "counter" and octets.documentation == "octets in - 1.3.6.1.2.1.31.1.1.1.6"
    assert [(s.name, s.labels, s.value) for s in octets.samples] == [
        ("ifHCInOctets", {"ifIndex": "1", "ifName": "Gi0/1"}, float(2**64 - 1)),
        ("ifHCInOctets", {"ifIndex": "2", "ifName": ""}, 7.0),
    ]
    assert {s.labels["upsBatteryStatus"]: s.value for s in fams["upsBatteryStatus"].samples} == {
        "batteryNormal": 0.0,
        "batteryLow": 1.0,
    }
    assert [(s.labels, s.value) for s in fams["hrStorageSize_bytes"].samples] == [
        ({"hrStorageIndex": "1"}, 4096000.0)
    ]
    assert fams["upsEstimatedSecondsRemaining"].samples[0].value == 2520.0


def test_enum_value_outside_the_definition_is_kept() -> None:
    mod = _mod({"name": "st", "oid": "1.3.6.1.4.1.1", "type": "enum", "enum_values": {1: "ok"}})
    (fam,) = build_families(mod, {"1.3.6.1.4.1.1.0": 9}, {})
    assert {s.labels["st"]: s.value for s in fam.samples} == {"ok": 0.0, "9": 1.0}


def test_index_types() -> None:
    m = MetricDef.model_validate(
        {
            "name": "x",
            "oid": "1.3.6.1.4.1.1",
            "indexes": [
                {"labelname": "a"},
                {"labelname": "name", "type": "string"},
                {"labelname": "ip", "type": "ipv4"},
                {"labelname": "rest", "type": "rest"},
            ],
        }
    )
    assert parse_index("7.3.101.116.104.10.0.0.1.5.6", m) == ["7", "eth", "10.0.0.1", "5.6"]
    assert parse_index("7.9.101", m) is None


def test_format_string() -> None:
    assert format_string(b"\x00\x1b\x21\x3a\x4b\x5c", "mac") == "00:1B:21:3A:4B:5C"
    assert format_string(b"\xc0\xa8\x01\x01", "ip") == "192.168.1.1"
    assert format_string(b"\x01\xff", "hex") == "0x01FF"
    assert format_string(b"C\xc3\xa1p quang \xff", "text") == "Cáp quang \ufffd"
    assert len(format_string(b"x" * 5000, "text")) == 256


def test_walk_guard() -> None:
    g = WalkGuard("1.3.6.1.2.1.2.2.1.8", 3)
    assert g.accept("1.3.6.1.2.1.2.2.1.8.2")
    assert g.accept("1.3.6.1.2.1.2.2.1.8.10")  # numeric, not string, order
    assert not g.accept("1.3.6.1.2.1.2.2.1.9.1")  # next column: the walk is over
    assert not g.accept("1.3.6.1.2.1.2.2.1.80")  # shares the text prefix, not the subtree
    with pytest.raises(SnmpClientError) as exc:
        g.accept("1.3.6.1.2.1.2.2.1.8.3")
    assert exc.value.reason == "oid_loop"
    g3 = WalkGuard("1.3.6", 10)
    assert g3.accept("1.3.6.3")
    assert g3.accept("1.3.6.3.1")  # deeper: greater
    with pytest.raises(SnmpClientError):
        g3.accept("1.3.6.2.9")  # other branch, smaller
    g4 = WalkGuard("1.3.6", 10)
    g4.accept("1.3.6.3")
    with pytest.raises(SnmpClientError):
        g4.accept("1.3.6.3")  # the same OID again
    g2 = WalkGuard("1.3", 2)
    g2.accept("1.3.1")
    g2.accept("1.3.2")
    with pytest.raises(SnmpClientError) as exc:
        g2.accept("1.3.3")
    assert exc.value.reason == "too_many_varbinds"


def test_example_config_passes_the_check_its_header_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex
    import subprocess
    import sys

    from agent.config import load_config

    text = (ROOT / "config" / "snmp.example.yml").read_text()
    line = next(ln for ln in text.splitlines() if "Check it with:" in ln)
    *env, tool, verb, path = shlex.split(line.split("Check it with:", 1)[1])
    assert (tool, verb) == ("giamsat", "check-config")
    envs = dict(e.split("=", 1) for e in env)
    giamsat = str(Path(sys.executable).parent / "giamsat")
    res = subprocess.run(
        [giamsat, verb, path], cwd=ROOT, env={**os.environ, **envs}, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for k, v in envs.items():
        monkeypatch.setenv(k, v)
    loaded = load_config(ROOT / path)
    settings = loaded.config.collector_settings("snmp")
    assert isinstance(settings, SnmpSettings)
    targets = loaded.config.targets_of("snmp")
    assert len(targets) == 4
    assert SnmpCollector.check_targets(settings, targets) == []
    v3 = [a for a in settings.auths.values() if a.version == 3]
    assert v3 and all(a.auth_protocol.startswith("SHA2") and a.priv_protocol.startswith("AES") for a in v3)


def test_config_loader_reports_unknown_auth_and_module_with_key_path(tmp_path: Path) -> None:
    from agent.config import load_config
    from agent.kernel.errors import ConfigError

    (tmp_path / "c.yml").write_text(
        "sites: [{id: s, name: S, level: province}]\n"
        "collectors:\n  snmp:\n    auths:\n      v2: {version: 2, community: c}\n"
        "targets:\n  snmp:\n"
        "    - {name: sw1, site: s, address: 198.18.40.1, auth: v3, modules: [system, if_mibb]}\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "c.yml")
    found = {(p.key, p.line) for p in exc.value.problems}
    assert ("targets.snmp[0].auth", 8) in found
    assert any(k.startswith("targets.snmp[0].modules") for k, _ in found)
    assert "if_mibb" in str(exc.value)


def test_snmp_exporter_targets_and_the_on_demand_allow_list() -> None:
    from collectors.snmp.collector import split_target
    from collectors.snmp.config import OnDemand

    assert split_target("198.18.40.1") == ("198.18.40.1", 161)
    assert split_target("198.18.40.1:1161") == ("198.18.40.1", 1161)
    assert split_target("udp://sw1.example:162") == ("sw1.example", 162)
    assert split_target("[2001:db8::1]:1161") == ("2001:db8::1", 1161)
    assert split_target("2001:db8::1") == ("2001:db8::1", 161)
    for bad in ("tcp://198.18.40.1:161", "h:0", "h:x", "[::1", "a/b", "h:70000"):
        assert split_target(bad) is None, bad
    allow = OnDemand.model_validate({"allow": ["198.18.40.0/24", "2001:db8::/64", "SW1.Example."]})
    assert allow.allows("198.18.40.77") and allow.allows("2001:db8::5") and allow.allows("sw1.example")
    assert not allow.allows("198.18.41.1") and not allow.allows("sw2.example") and not allow.allows("::1")
    assert not OnDemand().allows("127.0.0.1")  # empty by default
    with pytest.raises(ValidationError, match="neither a CIDR"):
        OnDemand.model_validate({"allow": ["10.0.0.0/33"]})


def test_snmp_on_demand_matches_like_the_blackbox_allow_list() -> None:
    """Same rules as collectors.blackbox.on_demand: CIDRs match IP literals only, names exact or *.suffix."""
    from agent.kernel.allowlist import AllowList
    from collectors.snmp.config import OnDemand

    entries = ["198.18.40.0/24", "::1", "sw1.example", "*.xa.example"]
    snmp, kernel = OnDemand.model_validate({"allow": entries}), AllowList.parse(entries)
    hosts = "198.18.40.9 198.18.41.9 ::1 [::1] ::2 SW1.example. sw2.example ap.xa.example A.B.XA.EXAMPLE"
    hosts += " xa.example evilxa.example localhost 127.0.0.1"
    assert [snmp.allows(h) for h in hosts.split()] == [kernel.allows_host(h) for h in hosts.split()]
    allowed = [h for h in hosts.split() if snmp.allows(h)]
    assert allowed == ["198.18.40.9", "::1", "[::1]", "SW1.example.", "ap.xa.example", "A.B.XA.EXAMPLE"]
    assert not snmp.allows("")
    # a name is never resolved to match a CIDR, even one that would resolve inside it
    assert not OnDemand.model_validate({"allow": ["127.0.0.0/8"]}).allows("localhost")
    with pytest.raises(ValidationError, match="URL prefix"):
        OnDemand.model_validate({"allow": ["https://sw1.example/"]})
    for bad in ("sw 1", "10.0.0"):  # "10.0.0" is no name: the resolver reads it as 10.0.0.0
        with pytest.raises(ValidationError, match="neither a CIDR"):
            OnDemand.model_validate({"allow": [bad]})


def test_a_ups_on_battery_or_low_says_the_sites_power_failed() -> None:
    """The outage ledger's power cause comes from this reading of UPS-MIB results."""
    from typing import Any, cast

    from prometheus_client.core import GaugeMetricFamily

    from collectors.snmp.collector import SnmpCollector

    def state_set(name: str, states: tuple[str, ...], active: str) -> GaugeMetricFamily:
        fam = GaugeMetricFamily(name, "", labels=[name])
        for s in states:
            fam.add_metric([s], 1.0 if s == active else 0.0)
        return fam

    source = ("other", "none", "normal", "bypass", "battery", "booster", "reducer")
    battery = ("unknown", "batteryNormal", "batteryLow", "batteryDepleted")
    reads = SnmpCollector.power_failing
    me = cast(Any, None)
    assert SnmpCollector.reports_power
    assert not reads(me, [state_set("upsOutputSource", source, "normal")])
    assert reads(me, [state_set("upsOutputSource", source, "battery")])
    assert not reads(me, [state_set("upsBatteryStatus", battery, "batteryNormal")])
    assert reads(me, [state_set("upsBatteryStatus", battery, "batteryLow")])
    assert reads(me, [state_set("upsBatteryStatus", battery, "batteryDepleted")])
    assert not reads(me, [state_set("ifOperStatus", ("up", "down"), "down")])
