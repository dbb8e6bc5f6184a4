"""Side by side with Debian's snmp_exporter (0.21) on one real snmpd, with the same module definitions:
the shipped modules (snmp_exporter's generated ones) and vendor modules of upstream's snmp.yml that
net-snmp answers. Series sets must be equal (names and label sets) and values equal within the time
between the reads (giamsat, snmp_exporter, giamsat again: the exporter's value lies between)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent.kernel.collector import BlockingRunner, CollectorContext
from agent.kernel.results import JobResult
from collectors.snmp import SnmpCollector
from collectors.snmp.config import SnmpSettings, SnmpTarget
from collectors.snmp.exporter_config import load_file
from collectors.snmp.modules import SHIPPED_EXPORTER
from exporters.exposition import render_text
from tests.helpers import collect_once, free_port
from tests.snmpd import AUTH_PASS, COMMUNITY, PRIV_PASS, V3_USERS, Snmpd

ORACLES = Path(__file__).resolve().parents[1] / "data" / "oracles" / "snmp_exporter"
EXPORTER = shutil.which("prometheus-snmp-exporter")
#: vendor modules of upstream's snmp.yml that net-snmp's snmpd answers
VENDOR = ("ucd_la_table", "ucd_memory", "ucd_system_stats", "ip_mib", "hrSWInstalled")
#: keys snmp_exporter 0.21 does not know (added later): dropped from its copy, applied to expectations
NEWER_KEYS = ("scale", "offset", "datetime_pattern")
#: reads before a difference counts (``_despite_host_changes``)
HOST_CHANGE_ATTEMPTS = 4
#: giamsat's own failure signalling, on top of snmp_exporter's series
GIAMSAT_ONLY = {"snmp_up", "snmp_failure_reason"}
#: timings: compared as present, not by value
TIMINGS = {"snmp_scrape_walk_duration_seconds", "snmp_scrape_duration_seconds"}
#: values that move both ways between reads (load, memory in use, CPU counters of a busy machine):
#: compared by series, and by value only for being numbers
VOLATILE = {
    "hrProcessorLoad",
    "hrStorageUsed",
    "hrSystemProcesses",
    "hrSystemNumUsers",
    "hrSystemDate",
    "laLoad",
    "laLoadInt",
    "laLoadFloat",
    "memAvailReal",
    "memTotalFree",
    "memBuffer",
    "memCached",
    "memShared",
    "memAvailSwap",
    "memSysAvail",
    "ssCpuUser",
    "ssCpuSystem",
    "ssCpuIdle",
    "ssSysInterrupts",
    "ssSysContext",
    "hrDeviceStatus",
    "snmp_scrape_pdus_returned",
    "ssIORawSent",
    "ssIORawReceived",
    "ssRawInterrupts",
    "ssRawContexts",
    "ssCpuRawWait",
    "ssRawSwapIn",
    "ssRawSwapOut",
    "ssCpuRawUser",
    "ssCpuRawSystem",
    "ssCpuRawIdle",
    "ssCpuRawKernel",
    "ssCpuRawNice",
    "ssCpuRawInterrupt",
    "ssCpuRawSoftIRQ",
    "ssSwapIn",
    "ssSwapOut",
    "ssIOSent",
    "ssIOReceive",
}


def setup_module() -> None:
    # never skipped: scripts/test.sh installs Debian's prometheus-snmp-exporter
    assert EXPORTER is not None, "prometheus-snmp-exporter is not installed (scripts/test.sh installs it)"


def _modules_for_021(names: tuple[str, ...]) -> dict[str, Any]:
    """The modules in snmp_exporter 0.21's layout (auth inside), taken from the same definitions
    giamsat reads: the shipped file for the shipped modules, upstream's snmp.yml for the others."""
    upstream = yaml.safe_load((ORACLES / "snmp.yml").read_text())["modules"]
    out: dict[str, Any] = {}
    for name in names:
        mod = dict(upstream[name])
        for m in mod["metrics"]:
            for key in NEWER_KEYS:
                m.pop(key, None)
        mod.pop("filters", None)
        mod.update(version=2, auth={"community": COMMUNITY})
        out[name] = mod
    return out


def _scale_offset(names: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    mods = load_file(ORACLES / "snmp.yml").modules
    return {m.name: (m.scale, m.offset) for n in names for m in mods[n].metrics if m.scale or m.offset}


#: net-snmp user -> its credentials in snmp_exporter's words (AES256 = Blumenthal, AES256C = Reeder)
V3 = {
    "gs_sha256_aes": ("SHA256", "AES"),
    "gs_sha_aes256b": ("SHA", "AES256"),
    "gs_sha_aes256r": ("SHA", "AES256C"),
    "gs_md5_aes192r": ("MD5", "AES192C"),
    "gs_md5_des": ("MD5", "DES"),
}
assert set(V3) <= {u.name for u in V3_USERS}


def _v3_auth(user: str) -> dict[str, Any]:
    auth, priv = V3[user]
    return {
        "username": user,
        "security_level": "authPriv",
        "password": AUTH_PASS,
        "auth_protocol": auth,
        "priv_protocol": priv,
        "priv_password": PRIV_PASS,
    }


@pytest.fixture(scope="module")
def agent() -> Iterator[Snmpd]:
    a = Snmpd(host="127.0.0.1").start()
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("snmp-exporter")
    conf = tmp / "snmp.yml"
    mods = _modules_for_021((*SHIPPED_EXPORTER, *VENDOR))
    for user in V3:  # the system module once per SNMPv3 user (0.21: credentials inside the module)
        mods[f"system_{user}"] = {**mods["system"], "version": 3, "auth": _v3_auth(user)}
    conf.write_text(yaml.safe_dump(mods, sort_keys=False))
    port = free_port()
    proc = subprocess.Popen(
        [str(EXPORTER), f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/metrics", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("snmp_exporter did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _collector(tmp: Path, module_files: list[str] | None = None) -> SnmpCollector:
    settings = SnmpSettings.model_validate(
        {"auths": {"v2": {"version": 2, "community": COMMUNITY}}, "module_files": module_files or []}
    )
    ctx = CollectorContext("snmp", tmp, BlockingRunner("gs-test-snmp", 1), logging.getLogger("t"))
    return SnmpCollector(settings, ctx)


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Series:
    out: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _giamsat(c: SnmpCollector, agent: Snmpd, module: str) -> Series:
    t = SnmpTarget(
        name="d", site="s", address="127.0.0.1", port=agent.port, auth="v2", modules=[module], timeout=30
    )
    fams = asyncio.run(collect_once(c, t))
    served = c.families_for_modules(fams, [module])
    text, _ = render_text([JobResult("", "", None, None, tuple(served), time.time(), 0.0, True)], [], 4096)
    return _parse(text.decode() if isinstance(text, bytes) else text)


def _exporter(url: str, agent: Snmpd, module: str) -> Series:
    with urllib.request.urlopen(f"{url}/snmp?target=127.0.0.1:{agent.port}&module={module}", timeout=60) as r:
        return _parse(r.read().decode())


def _compare(module: str, g1: Series, ex: Series, g2: Series, scaled: dict[str, tuple[float, float]]) -> None:
    ours = {k for k in g1 if k[0] not in GIAMSAT_ONLY}
    assert ours == set(ex), (
        f"{module}: only giamsat: {sorted(ours - set(ex))[:5]}; only snmp_exporter: {sorted(set(ex) - ours)[:5]}"
    )
    for key, v in ex.items():
        name = key[0]
        if name in TIMINGS or name in VOLATILE:
            continue
        if name in scaled:  # 0.21 has no scale/offset: its raw value, scaled as 0.30 does
            scale, offset = scaled[name]
            v = v * (scale or 1.0) + offset
        lo, hi = sorted((g1[key], g2.get(key, g1[key])))
        assert lo - 1e-9 * abs(lo) <= v <= hi + 1e-9 * abs(hi), (module, key, g1[key], v, g2.get(key))


def _despite_host_changes(read_and_compare: Callable[[], None]) -> None:
    """Reads and compares again (``HOST_CHANGE_ATTEMPTS`` in all) when the comparison fails.

    snmpd answers from this host's tables (interfaces, addresses, mounts), and other tests running
    beside this one add and remove veths and tmpfs mounts: one that exists for one read and not the
    next is a difference of the host, not of the exporters. A real difference shows on every read.
    """
    for attempt in range(1, HOST_CHANGE_ATTEMPTS + 1):
        try:
            read_and_compare()
            return
        except AssertionError:
            if attempt == HOST_CHANGE_ATTEMPTS:
                raise
            time.sleep(1.0)


@pytest.mark.parametrize("module", [*sorted(SHIPPED_EXPORTER), *VENDOR])
def test_same_series_and_values_as_snmp_exporter(
    agent: Snmpd, exporter: str, tmp_path: Path, module: str
) -> None:
    c = _collector(tmp_path, [str(ORACLES / "snmp.yml")] if module in VENDOR else None)

    def read_and_compare() -> None:
        g1 = _giamsat(c, agent, module)
        ex = _exporter(exporter, agent, module)
        g2 = _giamsat(c, agent, module)
        assert g1.get(("snmp_up", frozenset())) == 1.0
        assert len(ex) > 3, ex
        _compare(module, g1, ex, g2, _scale_offset((module,)))

    _despite_host_changes(read_and_compare)


def test_meta_metrics_have_snmp_exporter_names_and_labels(
    agent: Snmpd, exporter: str, tmp_path: Path
) -> None:
    c = _collector(tmp_path)
    meta = {
        "snmp_scrape_packets_sent",
        "snmp_scrape_packets_retried",
        "snmp_scrape_walk_duration_seconds",
        "snmp_scrape_duration_seconds",
        "snmp_scrape_pdus_returned",
    }

    def read_and_compare() -> None:
        g = _giamsat(c, agent, "if_mib")
        ex = _exporter(exporter, agent, "if_mib")
        assert (
            {k for k in g if k[0] in meta}
            == {k for k in ex if k[0] in meta}
            == {(n, frozenset()) for n in meta}
        )
        # the same requests on the wire: one GETBULK walk per subtree, as many packets (as many as the
        # interface table's rows need: a host change between the reads can change it)
        assert g[("snmp_scrape_packets_sent", frozenset())] == ex[("snmp_scrape_packets_sent", frozenset())]
        assert g[("snmp_scrape_packets_retried", frozenset())] == 0.0

    _despite_host_changes(read_and_compare)


@pytest.mark.parametrize("user", sorted(V3))
def test_snmpv3_authpriv_auths_from_snmp_yml(agent: Snmpd, exporter: str, tmp_path: Path, user: str) -> None:
    """The same credentials, written the snmp_exporter way in snmp.yml ``auths``, reach the device
    through giamsat as through snmp_exporter (its AES256 and AES256C key extensions included)."""
    f = tmp_path / "snmp.yml"
    f.write_text(yaml.safe_dump({"auths": {user: {"version": 3, **_v3_auth(user)}}}))
    settings = SnmpSettings.model_validate({"module_files": [str(f)]})
    ctx = CollectorContext("snmp", tmp_path, BlockingRunner("gs-test-snmp", 1), logging.getLogger("t"))
    c = SnmpCollector(settings, ctx)
    t = SnmpTarget(
        name="d", site="s", address="127.0.0.1", port=agent.port, auth=user, modules=["system"], timeout=30
    )

    def ours() -> Series:
        fams = asyncio.run(collect_once(c, t))
        text, _ = render_text(
            [
                JobResult(
                    "",
                    "",
                    None,
                    None,
                    tuple(c.families_for_modules(fams, ["system"])),
                    time.time(),
                    0.0,
                    True,
                )
            ],
            [],
            4096,
        )
        return _parse(text.decode() if isinstance(text, bytes) else text)

    g1 = ours()
    ex = _exporter(exporter, agent, f"system_{user}")
    g2 = ours()
    assert g1.get(("snmp_up", frozenset())) == 1.0
    assert ("sysName", frozenset({("sysName", "gs-test-agent")})) in ex
    _compare(user, g1, ex, g2, {})
