"""SNMP collector against a real net-snmp snmpd (in a network namespace with dozens of ifb interfaces,
and on loopback for the SNMPv3 protocol matrix) and against misbehaving agents. Values are checked
against snmpwalk/snmpget output for the same OIDs, for both engines."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import Metric

from agent.kernel.collector import BlockingRunner, CollectorContext
from collectors.snmp import SnmpCollector
from collectors.snmp.config import SnmpSettings, SnmpTarget
from tests.helpers import collect_once, exclusive_addresses
from tests.snmp_fakes import FakeAgent
from tests.snmpd import AUTH_PASS, COMMUNITY, PRIV_PASS, V3_USERS, Snmpd, V3User, parse_numeric

pytestmark = pytest.mark.root

NS = f"gs{os.getpid()}snmp"
VETH_HOST, VETH_NS = f"gs{os.getpid()}sa", f"gs{os.getpid()}sb"
# 198.18.40.0/25; bench/snmp.py uses 198.18.40.128/25
HOST_IP, AGENT_IP = "198.18.40.2", "198.18.40.1"
N_IFB = 40
SECRETS = (COMMUNITY, AUTH_PASS, PRIV_PASS)
ENGINES = ("gufo", "pysnmp")

# net-snmp name -> giamsat name
AUTH_NAMES = {
    "MD5": "MD5",
    "SHA": "SHA",
    "SHA-224": "SHA224",
    "SHA-256": "SHA256",
    "SHA-384": "SHA384",
    "SHA-512": "SHA512",
}
PRIV_NAMES = {
    "DES": "DES",
    "AES": "AES",
    "AES192": "AES192-Blumenthal",
    "AES256": "AES256-Blumenthal",
    "AES192C": "AES192-Reeder",
    "AES256C": "AES256-Reeder",
}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def netns_agent() -> Iterator[Snmpd]:
    """snmpd inside a namespace with N_IFB ifb interfaces, reached over a veth pair."""
    with exclusive_addresses("198.18.40.0/25"):
        yield from _netns_agent()


def _netns_agent() -> Iterator[Snmpd]:
    _ip("netns", "add", NS)
    agent = None
    try:
        _ip("link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS)
        _ip("link", "set", VETH_NS, "netns", NS)
        _ip("addr", "add", f"{HOST_IP}/25", "dev", VETH_HOST)
        _ip("link", "set", VETH_HOST, "up")
        _ip("-n", NS, "addr", "add", f"{AGENT_IP}/25", "dev", VETH_NS)
        _ip("-n", NS, "link", "set", VETH_NS, "up")
        _ip("-n", NS, "link", "set", "lo", "up")
        batch = []
        for i in range(N_IFB):
            batch.append(f"link add ifb{i} type ifb")
            if i % 3:
                batch.append(f"link set ifb{i} up")
        subprocess.run(["ip", "-n", NS, "-batch", "-"], input="\n".join(batch), text=True, check=True)
        agent = Snmpd(host=AGENT_IP, netns=NS, sys_name="gs-netns-agent").start()
        yield agent
    finally:
        if agent is not None:
            agent.stop()
        subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)


@pytest.fixture(scope="module")
def lo_agent() -> Iterator[Snmpd]:
    agent = Snmpd().start()
    try:
        yield agent
    finally:
        agent.stop()


def make_collector(tmp_path: Path, **settings: Any) -> SnmpCollector:
    base: dict[str, Any] = {"auths": {"v2": {"version": 2, "community": COMMUNITY}}}
    base.update(settings)
    cfg = SnmpSettings.model_validate(base)
    ctx = CollectorContext(
        kind="snmp",
        state_dir=tmp_path,
        blocking=BlockingRunner("gs-test-snmp", 1),
        log=logging.getLogger("giamsat.collector.snmp"),
    )
    return SnmpCollector(cfg, ctx)


def target(name: str, host: str, port: int, **kw: Any) -> SnmpTarget:
    data: dict[str, Any] = {"name": name, "site": "s1", "address": host, "port": port, "auth": "v2"}
    data.update(kw)
    return SnmpTarget.model_validate(data)


def collect(c: SnmpCollector, t: SnmpTarget) -> list[Metric]:
    async def run() -> list[Metric]:
        try:
            return await collect_once(c, t)
        finally:
            await c.close()

    return asyncio.run(run())


def sample(fams: list[Metric], name: str, **labels: str) -> float | None:
    for f in fams:
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def series(fams: list[Metric], name: str) -> dict[str, tuple[dict[str, str], float]]:
    """{ifIndex or row key: (labels, value)} for one metric."""
    out = {}
    for f in fams:
        for s in f.samples:
            if s.name == name:
                key = next(iter(s.labels.values()), "") if s.labels else ""
                out[key] = (dict(s.labels), float(s.value))
    return out


def _walk(agent: Snmpd, oid: str) -> dict[str, str]:
    return parse_numeric(agent.cli("snmpbulkwalk", oid))


def _num(v: str) -> int:
    return int(v.split(":", 1)[-1].strip().split()[0])


def _text(v: str) -> str:
    s = v.split(":", 1)[-1].strip() if ":" in v else ""
    return s[1:-1] if s.startswith('"') else s


def _by_index(walk: dict[str, str], col: str) -> dict[str, str]:
    return {oid[len(col) + 1 :]: v for oid, v in walk.items() if oid.startswith(col + ".")}


@pytest.mark.parametrize("engine", ENGINES)
def test_if_mib_system_host_resources_match_snmpwalk(netns_agent: Snmpd, tmp_path: Path, engine: str) -> None:
    before = {
        c: _walk(netns_agent, c)
        for c in ("1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1", "1.3.6.1.2.1.25.2.3.1")
    }
    c = make_collector(tmp_path, engine=engine)
    t = target("sw1", AGENT_IP, 161, modules=["system", "if_mib", "host_resources"])
    fams = collect(c, t)
    after = {c_: _walk(netns_agent, c_) for c_ in before}

    assert sample(fams, "snmp_up") == 1.0
    for mod in ("system", "if_mib", "host_resources"):
        assert sample(fams, "snmp_module_success", module=mod) == 1.0

    iftable, ifx = before["1.3.6.1.2.1.2.2.1"], before["1.3.6.1.2.1.31.1.1.1"]
    descr = _by_index(iftable, "1.3.6.1.2.1.2.2.1.2")
    names = _by_index(ifx, "1.3.6.1.2.1.31.1.1.1.1")
    aliases = _by_index(ifx, "1.3.6.1.2.1.31.1.1.1.18")
    assert len(descr) >= N_IFB + 2  # ifb0..N, lo, the veth end

    # Labels and gauges equal snmpwalk's; counters lie between the walks taken before and after.
    oper = series(fams, "ifOperStatus")
    assert set(oper) == set(descr)
    for idx, (labels, value) in oper.items():
        assert labels == {
            "ifIndex": idx,
            "ifName": _text(names[idx]),
            "ifAlias": _text(aliases[idx]),
            "ifDescr": _text(descr[idx]),
        }
        assert value == _num(iftable[f"1.3.6.1.2.1.2.2.1.8.{idx}"])
    assert {labels["ifName"] for labels, _ in oper.values()} >= {f"ifb{i}" for i in range(N_IFB)}
    for name, col, table in [
        ("ifAdminStatus", "1.3.6.1.2.1.2.2.1.7", "1.3.6.1.2.1.2.2.1"),
        ("ifHighSpeed", "1.3.6.1.2.1.31.1.1.1.15", "1.3.6.1.2.1.31.1.1.1"),
    ]:
        want = {i: _num(v) for i, v in _by_index(before[table], col).items()}
        assert {i: v for i, (_, v) in series(fams, name).items()} == want, name
    for name, col, table in [
        ("ifHCInOctets", "1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.31.1.1.1"),
        ("ifHCOutOctets", "1.3.6.1.2.1.31.1.1.1.10", "1.3.6.1.2.1.31.1.1.1"),
        ("ifHCInUcastPkts", "1.3.6.1.2.1.31.1.1.1.7", "1.3.6.1.2.1.31.1.1.1"),
        ("ifInErrors", "1.3.6.1.2.1.2.2.1.14", "1.3.6.1.2.1.2.2.1"),
        ("ifOutDiscards", "1.3.6.1.2.1.2.2.1.19", "1.3.6.1.2.1.2.2.1"),
    ]:
        got = series(fams, name)
        lo = {i: _num(v) for i, v in _by_index(before[table], col).items()}
        hi = {i: _num(v) for i, v in _by_index(after[table], col).items()}
        assert set(got) == set(lo), name
        for i, (_, v) in got.items():
            assert lo[i] <= v <= hi[i], (name, i)
        assert next(f for f in fams if f.name == name).type == "counter"

    # system (snmp_exporter's module): each string is a label named after its metric, value 1;
    # uptime in hundredths of a second, as the MIB and snmp_exporter give it
    ((labels, value),) = series(fams, "sysName").values()
    assert value == 1.0 and labels == {"sysName": "gs-netns-agent"}
    sysget = parse_numeric(netns_agent.cli("snmpget", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.1.0"))
    ((labels, _),) = series(fams, "sysObjectID").values()
    assert labels["sysObjectID"] == sysget["1.3.6.1.2.1.1.2.0"].split(": ", 1)[1].lstrip(".")
    ((labels, _),) = series(fams, "sysDescr").values()
    assert labels["sysDescr"] == _text(sysget["1.3.6.1.2.1.1.1.0"])
    uptime = sample(fams, "sysUpTime")
    assert uptime is not None and 0 < uptime < 360000

    # host_resources: sizes in bytes = hrStorageSize * hrStorageAllocationUnits
    hr = before["1.3.6.1.2.1.25.2.3.1"]
    units = {i: _num(v) for i, v in _by_index(hr, "1.3.6.1.2.1.25.2.3.1.4").items()}
    size = {i: _num(v) for i, v in _by_index(hr, "1.3.6.1.2.1.25.2.3.1.5").items()}
    got_size = series(fams, "hrStorageSize_bytes")
    assert set(got_size) == set(size)
    hr_descr = _by_index(hr, "1.3.6.1.2.1.25.2.3.1.3")
    for i, (labels, v) in got_size.items():
        assert labels["hrStorageDescr"] == _text(hr_descr[i])
        if "Memory" not in labels["hrStorageDescr"] and "memory" not in labels["hrStorageDescr"]:
            assert v == size[i] * units[i]
    load = _by_index(_walk(netns_agent, "1.3.6.1.2.1.25.3.3.1.2"), "1.3.6.1.2.1.25.3.3.1.2")
    assert set(series(fams, "hrProcessorLoad")) == set(load)
    # HELP ends with the OID, as snmp_exporter's
    assert next(f for f in fams if f.name == "ifHCInOctets").documentation.endswith(
        " - 1.3.6.1.2.1.31.1.1.1.6"
    )


def test_engines_agree(netns_agent: Snmpd, tmp_path: Path) -> None:
    results = {}
    for engine in ENGINES:
        c = make_collector(tmp_path, engine=engine)
        fams = collect(c, target("sw1", AGENT_IP, 161, modules=["if_mib"]))
        results[engine] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in fams
            if f.name in ("ifOperStatus", "ifAdminStatus", "ifHighSpeed", "ifInErrors")
            for s in f.samples
        }
    assert len(results["gufo"]) >= 4 * (N_IFB + 2)
    assert results["gufo"] == results["pysnmp"]


def _v3_auth(u: V3User) -> dict[str, Any]:
    a: dict[str, Any] = {
        "version": 3,
        "username": u.name,
        "security_level": {"priv": "authPriv", "auth": "authNoPriv", "noauth": "noAuthNoPriv"}[u.level],
    }
    if u.auth:
        a.update(auth_protocol=AUTH_NAMES[u.auth], password=AUTH_PASS)
    if u.priv:
        a.update(priv_protocol=PRIV_NAMES[u.priv], priv_password=PRIV_PASS)
    return a


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("user", V3_USERS, ids=lambda u: u.name)
def test_v3_protocols(lo_agent: Snmpd, tmp_path: Path, engine: str, user: V3User) -> None:
    want = parse_numeric(lo_agent.cli("snmpget", "1.3.6.1.2.1.1.5.0", user=user))["1.3.6.1.2.1.1.5.0"]
    c = make_collector(tmp_path, engine=engine, auths={"v3": _v3_auth(user)})
    fams = collect(c, target("r1", "127.0.0.1", lo_agent.port, auth="v3", modules=["system"]))
    assert sample(fams, "snmp_up") == 1.0
    ((labels, _),) = series(fams, "sysName").values()
    assert labels["sysName"] == _text(want)


@pytest.mark.parametrize("engine", ENGINES)
def test_v3_without_required_privacy_is_a_failure(
    lo_agent: Snmpd, tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    """gufo-snmp answers a GETBULK refused for the security level with zero varbinds, no error."""
    auth = {
        "version": 3,
        "username": "gs_sha256_aes",
        "security_level": "authNoPriv",
        "auth_protocol": "SHA256",
        "password": AUTH_PASS,
    }
    c = make_collector(tmp_path, engine=engine, auths={"v3": auth})
    with caplog.at_level(logging.WARNING, logger="giamsat.collector.snmp"):
        fams = collect(c, target("r1", "127.0.0.1", lo_agent.port, auth="v3", modules=["if_mib"]))
    assert sample(fams, "snmp_up") == 0.0
    assert sample(fams, "snmp_failure_reason", reason="auth_failed") == 1.0
    assert sample(fams, "snmp_module_success", module="if_mib") == 0.0
    assert series(fams, "ifOperStatus") == {}
    assert any(
        getattr(r, "target", None) == "r1" and getattr(r, "reason", None) == "auth_failed"
        for r in caplog.records
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_password_is_a_failure(lo_agent: Snmpd, tmp_path: Path, engine: str) -> None:
    auth = {
        "version": 3,
        "username": "gs_sha256_aes",
        "auth_protocol": "SHA256",
        "password": "not-the-password",
        "priv_password": PRIV_PASS,
    }
    c = make_collector(tmp_path, engine=engine, auths={"v3": auth}, request_timeout="1s", retries=0)
    fams = collect(c, target("r1", "127.0.0.1", lo_agent.port, auth="v3", modules=["system"]))
    assert sample(fams, "snmp_up") == 0.0
    assert sample(fams, "snmp_failure_reason", reason="auth_failed") == 1.0


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_objects_and_empty_tables(lo_agent: Snmpd, tmp_path: Path, engine: str) -> None:
    """noSuchObject scalars and empty tables give no series, not a failure (snmpd has no UPS-MIB)."""
    c = make_collector(tmp_path, engine=engine)
    fams = collect(c, target("r1", "127.0.0.1", lo_agent.port, modules=["ups", "system"]))
    assert sample(fams, "snmp_module_success", module="ups") == 1.0
    assert not [f for f in fams if f.name.startswith("ups")]
    assert sample(fams, "snmp_up") == 1.0


@pytest.mark.parametrize("engine", ENGINES)
def test_v1(lo_agent: Snmpd, tmp_path: Path, engine: str) -> None:
    c = make_collector(tmp_path, engine=engine, auths={"v1": {"version": 1, "community": COMMUNITY}})
    fams = collect(
        c, target("r1", "127.0.0.1", lo_agent.port, auth="v1", modules=["system", "if_mib", "ups"])
    )
    assert sample(fams, "snmp_up") == 1.0
    assert all(v == 1.0 for _, v in series(fams, "snmp_module_success").values())
    want = _by_index(_walk(lo_agent, "1.3.6.1.2.1.2.2.1.2"), "1.3.6.1.2.1.2.2.1.2")
    assert {i: labels["ifDescr"] for i, (labels, _) in series(fams, "ifOperStatus").items()} == {
        i: _text(v) for i, v in want.items()
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_misbehaving_agents_fail_alone(
    lo_agent: Snmpd, tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    fakes = {m: FakeAgent(m).start() for m in ("silent", "garbage", "loop")}
    try:
        # a module read with GET only: the looping agent answers GETs
        sys_get = {"metrics": [{"name": "sysUpTime_t", "oid": "1.3.6.1.2.1.1.3", "type": "timeticks"}]}
        c = make_collector(
            tmp_path, engine=engine, request_timeout="1s", retries=1, modules={"sys_get": sys_get}
        )
        targets = {
            m: target(f"bad-{m}", "127.0.0.1", a.port, modules=["sys_get", "if_mib"])
            for m, a in fakes.items()
        }
        good = target("good", "127.0.0.1", lo_agent.port, modules=["sys_get", "if_mib"])

        async def run() -> dict[str, Any]:
            tasks = {
                name: asyncio.create_task(collect_once(c, t)) for name, t in {**targets, "good": good}.items()
            }
            healthy = await tasks["good"]
            # the healthy device is done while the silent one still waits for its timeout
            silent_pending = not tasks["silent"].done()
            out = {name: await task for name, task in tasks.items()}
            await c.close()
            return {"results": out, "healthy": healthy, "silent_pending": silent_pending}

        with caplog.at_level(logging.WARNING, logger="giamsat.collector.snmp"):
            res = asyncio.run(run())
    finally:
        for a in fakes.values():
            a.stop()
    r = res["results"]
    assert res["silent_pending"]
    assert sample(res["healthy"], "snmp_up") == 1.0
    assert series(res["healthy"], "ifOperStatus")

    assert sample(r["silent"], "snmp_up") == 0.0
    assert sample(r["silent"], "snmp_failure_reason", reason="timeout") == 1.0
    assert fakes["silent"].received >= 2  # retried

    assert sample(r["garbage"], "snmp_up") == 0.0
    # gufo rejects the packet; pysnmp drops what it cannot decode and waits for a real answer
    assert (
        sample(r["garbage"], "snmp_failure_reason", reason="decode_error" if engine == "gufo" else "timeout")
        == 1.0
    )

    # the looping agent answers GETs, so sys_get works; the if_mib walk is refused
    assert sample(r["loop"], "snmp_up") == 1.0
    assert sample(r["loop"], "snmp_module_success", module="sys_get") == 1.0
    assert sample(r["loop"], "snmp_module_success", module="if_mib") == 0.0
    assert sample(r["loop"], "snmp_module_failure_reason", module="if_mib", reason="oid_loop") == 1.0

    logged = {(getattr(rec, "target", None), getattr(rec, "snmp_module", None)) for rec in caplog.records}
    assert {("bad-silent", "sys_get"), ("bad-garbage", "sys_get"), ("bad-loop", "if_mib")} <= logged
    assert ("good", "sys_get") not in logged
    _assert_no_secrets(caplog, [f for fams in r.values() for f in fams])


def _assert_no_secrets(caplog: pytest.LogCaptureFixture, fams: list[Metric]) -> None:
    text = "\n".join(f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records)
    labels = " ".join(v for f in fams for s in f.samples for v in s.labels.values())
    for secret in SECRETS:
        assert secret not in text
        assert secret not in labels


def test_secrets_stay_out_of_logs_labels_and_reprs(
    lo_agent: Snmpd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pysnmp import debug

    auths = {
        "v2": {"version": 2, "community": COMMUNITY},
        "v3bad": {
            "version": 3,
            "username": "gs_sha256_aes",
            "password": AUTH_PASS,
            "priv_password": "x" + PRIV_PASS,
        },
    }
    fams: list[Metric] = []
    with caplog.at_level(logging.DEBUG):
        for engine in ENGINES:
            c = make_collector(tmp_path, engine=engine, auths=auths, request_timeout="0.5s", retries=0)
            for auth in auths:
                fams += collect(
                    c, target(f"t-{auth}", "127.0.0.1", lo_agent.port, auth=auth, modules=["system"])
                )
            assert all(s not in repr(c.cfg) and s not in str(c.cfg.model_dump()) for s in SECRETS)
    assert sample(fams, "snmp_up") is not None
    _assert_no_secrets(caplog, fams)
    assert not debug.logger  # pysnmp's debug logging prints keys; nothing may switch it on


def test_families_for_modules(lo_agent: Snmpd, tmp_path: Path) -> None:
    c = make_collector(tmp_path)
    fams = collect(c, target("r1", "127.0.0.1", lo_agent.port, modules=["system", "if_mib"]))
    only = c.families_for_modules(fams, ["if_mib"])
    names = {f.name for f in only}
    assert {"ifHCInOctets", "ifOperStatus", "snmp_up", "snmp_scrape_duration_seconds"} <= names
    assert "sysName" not in names and "snmp_module_success" not in names
    # one module: the meta metrics without a module label, as snmp_exporter 0.21 writes them
    assert {s.labels.get("module") for f in only if f.name.startswith("snmp_scrape") for s in f.samples} == {
        None
    }
    both = c.families_for_modules(fams, ["system", "if_mib"])
    mods = {s.labels["module"] for f in both if f.name == "snmp_scrape_packets_sent" for s in f.samples}
    assert mods == {"system", "if_mib"} and "sysName" in {f.name for f in both}


def test_agent_serves_snmp_the_snmp_exporter_way(
    lo_agent: Snmpd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`giamsat run` polls the device in the background; /snmp serves one module of the cached result."""
    from tests.helpers import http_get, wait_for
    from tests.integration.test_agent_process import AgentProc

    agent = AgentProc(
        tmp_path,
        f"""
        agent:
          site: tinh
          interval: 2s
          timeout: 2s
          state_dir: {tmp_path / "state"}
        sites:
          - {{id: tinh, name: "Tỉnh", level: province}}
        collectors:
          snmp:
            auths:
              v2: {{version: 2, community_env: GS_TEST_COMMUNITY}}
        targets:
          snmp:
            - {{name: r1, site: tinh, address: 127.0.0.1, port: {lo_agent.port}, auth: v2, modules: [system, if_mib]}}
        """,
    )
    monkeypatch.setenv("GS_TEST_COMMUNITY", COMMUNITY)
    try:
        agent.start()
        wait_for(lambda: agent.metrics().get('snmp_up{site="tinh",target="r1"}') == 1.0, 20, what="snmp_up 1")
        status, body, _ = http_get(agent.url + "/snmp?target=r1&module=if_mib")
        assert status == 200
        assert 'ifOperStatus{ifIndex="1",ifAlias="",ifDescr="lo",ifName="lo"}' in body and "snmp_up 1" in body
        assert "sysName" not in body and "target=" not in body
        # the request snmp_exporter's scrape jobs send: the device's address, served from the cache
        status, by_addr, _ = http_get(
            agent.url + f"/snmp?target=127.0.0.1:{lo_agent.port}&module=if_mib&auth=v2"
        )
        assert status == 200 and 'ifOperStatus{ifIndex="1",ifAlias="",ifDescr="lo",ifName="lo"}' in by_addr
        status, text, _ = http_get(agent.url + "/snmp?target=r1&module=nope")
        assert status == 400 and "Unknown module" in text
        # not in the inventory, no on_demand allow-list: refused, nothing sent
        status, text, _ = http_get(agent.url + "/snmp?target=198.18.40.99&module=if_mib&auth=v2")
        assert status == 403 and "on_demand" in text
        _, metrics, _ = http_get(agent.url + "/metrics")
        assert 'snmp_up{site="tinh",target="r1"} 1' in metrics
    finally:
        agent.stop()
    log = agent.log.read_text()
    assert COMMUNITY not in log and COMMUNITY not in metrics


@pytest.mark.parametrize("engine", ENGINES)
def test_dead_device_is_reported_within_the_job_deadline(tmp_path: Path, engine: str) -> None:
    """5 s x 4 attempts would outlive a 1 s job: the poll ends inside it with snmp_up 0, not an error."""
    silent = FakeAgent("silent").start()
    try:
        c = make_collector(tmp_path, engine=engine)  # defaults: 5 s timeout, 3 retries
        fams = collect(
            c, target("dead", "127.0.0.1", silent.port, timeout="1s", modules=["system", "if_mib"])
        )
    finally:
        silent.stop()
    assert sample(fams, "snmp_up") == 0.0
    assert sample(fams, "snmp_failure_reason", reason="timeout") == 1.0
    assert sample(fams, "snmp_module_failure_reason", module="if_mib", reason="timeout") == 1.0


def test_pysnmp_engine_closed_with_answers_in_flight_stays_quiet(lo_agent: Snmpd) -> None:
    """Walks cut short leave answers on the way; closing the engine then drops them without raising
    into the event loop (pysnmp raised "Unregistered transport" there, one traceback per answer)."""
    from collectors.snmp.client import PysnmpClient, PysnmpEngines, SnmpEndpoint
    from collectors.snmp.config import Auth

    auth = Auth.model_validate({"version": 2, "community": COMMUNITY})

    async def run() -> tuple[list[dict[str, Any]], int]:
        loop_errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
        walked = 0
        for _ in range(5):
            engines = PysnmpEngines()
            ep = SnmpEndpoint("127.0.0.1", lo_agent.port, auth, "v2")
            clients = [PysnmpClient(ep, engines.get("v2")) for _ in range(20)]
            walks = [asyncio.ensure_future(c.walk("1.3.6.1.2.1")) for c in clients]
            await asyncio.sleep(0.3)
            for w in walks:
                w.cancel()
            await asyncio.gather(*walks, return_exceptions=True)
            walked += sum(c.stats.sent for c in clients)
            engines.close()
            await asyncio.sleep(0.1)
        return loop_errors, walked

    loop_errors, sent = asyncio.run(run())
    assert sent > 100  # the walks were under way when cut
    assert not loop_errors, [repr(e.get("exception")) for e in loop_errors[:3]]


def test_module_walking_whole_tables_equals_column_walks(netns_agent: Snmpd, tmp_path: Path) -> None:
    """``walk:`` subtrees (one walk per table) give the same series as one walk per column."""
    import yaml

    cols = yaml.safe_load((Path(__file__).parents[1] / "data" / "snmp_giamsat_if_mib.yml").read_text())
    whole = {**cols, "walk": ["1.3.6.1.2.1.2.2", "1.3.6.1.2.1.31.1.1.1"]}  # a table and a table entry
    results = {}
    for name in ("if_cols", "if_whole"):
        c = make_collector(tmp_path, modules={"if_whole": whole, "if_cols": cols})
        fams = collect(c, target("sw1", AGENT_IP, 161, modules=[name]))
        results[name] = (
            {
                (s.name, tuple(sorted(s.labels.items())), s.value)
                for f in fams
                if f.name in ("ifOperStatus", "ifAdminStatus", "ifHighSpeed")
                for s in f.samples
            },
            sample(fams, "snmp_scrape_pdus_returned"),
        )
    assert len(results["if_cols"][0]) == 3 * (N_IFB + 2)
    assert results["if_whole"][0] == results["if_cols"][0]
    pdus_whole, pdus_columns = results["if_whole"][1], results["if_cols"][1]
    assert pdus_whole is not None and pdus_columns is not None and pdus_whole > pdus_columns  # whole tables


@pytest.mark.parametrize("engine", ENGINES)
def test_ups_module_matches_snmpwalk(tmp_path: Path, engine: str) -> None:
    """UPS-MIB served by a real snmpd through a `pass` script (tests/data/ups_pass.py)."""
    script = Path(__file__).resolve().parent.parent / "data" / "ups_pass.py"
    agent = Snmpd(extra_lines=[f"pass .1.3.6.1.2.1.33 {sys.executable} {script}"]).start()
    try:
        want = _walk(agent, "1.3.6.1.2.1.33")
        c = make_collector(tmp_path, engine=engine)
        fams = collect(c, target("ups1", "127.0.0.1", agent.port, modules=["ups"]))
    finally:
        agent.stop()
    assert sample(fams, "snmp_module_success", module="ups") == 1.0
    num = {oid: _num(v) for oid, v in want.items() if "INTEGER" in v}
    assert sample(fams, "upsSecondsOnBattery") == num["1.3.6.1.2.1.33.1.2.2.0"]
    assert sample(fams, "upsEstimatedSecondsRemaining") == num["1.3.6.1.2.1.33.1.2.3.0"] * 60
    assert sample(fams, "upsEstimatedChargeRemaining") == num["1.3.6.1.2.1.33.1.2.4.0"]
    assert sample(fams, "upsBatteryVoltage_volts") == pytest.approx(num["1.3.6.1.2.1.33.1.2.5.0"] / 10)
    assert sample(fams, "upsOutputSource", upsOutputSource="battery") == 1.0  # on battery
    assert sample(fams, "upsOutputSource", upsOutputSource="normal") == 0.0
    assert sample(fams, "upsBatteryStatus", upsBatteryStatus="batteryNormal") == 1.0
    assert {i: v for i, (_, v) in series(fams, "upsInputVoltage_volts").items()} == {
        i: num[f"1.3.6.1.2.1.33.1.3.3.1.3.{i}"] for i in ("1", "2", "3")
    }
    assert sample(fams, "upsOutputVoltage_volts", upsOutputLineIndex="1") == num["1.3.6.1.2.1.33.1.4.4.1.2.1"]
    assert sample(fams, "upsOutputPercentLoad", upsOutputLineIndex="1") == num["1.3.6.1.2.1.33.1.4.4.1.5.1"]
    ((labels, _),) = series(fams, "upsIdent_info").values()
    assert labels == {
        "upsIdentModel": _text(want["1.3.6.1.2.1.33.1.1.2.0"]),
        "upsIdentManufacturer": _text(want["1.3.6.1.2.1.33.1.1.1.0"]),
    }


def test_gufo_socket_walk_equals_public_iterator(
    netns_agent: Snmpd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk driven on gufo's socket and the fallback through gufo's public iterator agree."""
    import collectors.snmp.client as client_mod

    assert client_mod._GetIter is not None  # the fast path is what runs with gufo-snmp 0.13
    results = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(client_mod, "_GetIter", None)
        c = make_collector(tmp_path)
        fams = collect(c, target("sw1", AGENT_IP, 161, modules=["if_mib"]))
        results.append(
            {
                (s.name, tuple(sorted(s.labels.items())), s.value)
                for f in fams
                if f.name in ("ifOperStatus", "ifAdminStatus", "ifHighSpeed", "ifInErrors")
                for s in f.samples
            }
        )
    assert len(results[0]) == 4 * (N_IFB + 2)
    assert results[0] == results[1]


IF_ENTRY = "1.3.6.1.2.1.2.2.1"
#: columns whose values do not move between two walks (counters on the veth do)
STABLE = (*(f"{IF_ENTRY}.{c}." for c in (2, 3, 4, 7, 8)), "1.3.6.1.2.1.1.1.", "1.3.6.1.2.1.31.1.1.1.1.")


async def _walk_many(engine: str, roots: list[str], **ep: Any) -> list[list[tuple[str, Any]]]:
    """``walk_many`` through a client of ``engine`` for the namespace agent, closed afterwards."""
    from collectors.snmp.client import GufoClient, PysnmpClient, PysnmpEngines, SnmpEndpoint
    from collectors.snmp.config import Auth

    auth = Auth.model_validate({"version": 2, "community": COMMUNITY})
    endpoint = SnmpEndpoint(AGENT_IP, 161, auth, "v2", **ep)
    engines = PysnmpEngines()
    client = GufoClient(endpoint) if engine == "gufo" else PysnmpClient(endpoint, engines.get("v2"))
    try:
        walked: list[list[tuple[str, Any]]] = await client.walk_many(roots)
        return walked
    finally:
        await client.close()
        if engine == "pysnmp":
            engines.close()


def _assert_walk_matches(agent: Snmpd, root: str, rows: list[tuple[str, Any]]) -> None:
    # on an empty subtree snmpbulkwalk GETs the root and prints "No Such Object available..."
    want = {oid: v for oid, v in _walk(agent, root).items() if not v.startswith("No Such")}
    assert [oid for oid, _ in rows] == list(want), root
    for oid, value in rows:
        if oid.startswith(STABLE):
            theirs = want[oid]
            if isinstance(value, bytes):
                assert value.decode(errors="replace") == _text(theirs), oid
            else:
                assert value == _num(theirs), oid


@pytest.mark.parametrize("engine", ENGINES)
def test_walk_many_matches_snmpwalk(netns_agent: Snmpd, engine: str) -> None:
    """Several walks in one call (the gufo engine runs them in one reader-callback loop) give what
    snmpbulkwalk gives for each root, including an empty subtree between two others."""
    roots = [
        f"{IF_ENTRY}.2",  # ifDescr: a column
        f"{IF_ENTRY}.99",  # nothing there: the next OID is outside, an empty walk
        IF_ENTRY,  # the whole ifTable
        "1.3.6.1.2.1.1.1",  # sysDescr: one scalar
        "1.3.6.1.2.1.31.1.1.1.1",  # ifName
    ]

    walked = asyncio.run(_walk_many(engine, roots, max_repetitions=7))  # several requests per column
    assert len(walked) == len(roots)
    assert walked[1] == []
    assert len(walked[2]) > 10 * (N_IFB + 2)
    for root, rows in zip(roots, walked, strict=True):
        _assert_walk_matches(netns_agent, root, rows)


def test_socket_walk_resends_lost_requests(netns_agent: Snmpd) -> None:
    """With a quarter of the requests dropped (nftables in the agent's namespace), the gufo walk
    resends each lost request after its timeout and still returns exactly what snmpbulkwalk does."""
    table = f"gs{os.getpid()}loss"
    ruleset = (
        f"table inet {table} {{\n  chain in {{\n    type filter hook input priority 0;\n"
        "    udp dport 161 numgen random mod 100 < 25 counter drop\n  }\n}\n"
    )
    subprocess.run(["ip", "netns", "exec", NS, "nft", "-f", "-"], input=ruleset, text=True, check=True)
    roots = [IF_ENTRY, "1.3.6.1.2.1.31.1.1.1.1"]

    try:
        walked = asyncio.run(_walk_many("gufo", roots, timeout=0.1, retries=30, max_repetitions=10))
        listing = subprocess.run(
            ["ip", "netns", "exec", NS, "nft", "list", "table", "inet", table],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        subprocess.run(["ip", "netns", "exec", NS, "nft", "delete", "table", "inet", table], check=False)
    dropped = int(listing.split("packets", 1)[1].split()[0])
    assert dropped > 0  # the walk did have to resend
    for root, rows in zip(roots, walked, strict=True):
        _assert_walk_matches(netns_agent, root, rows)
