"""SSH collector against a real OpenSSH sshd on loopback: values, host keys, auth, hangs and kills.

The sshd runs on this machine, so the ``linux`` module's figures are compared with this machine's own,
read locally just before and after (counters must lie in between; gauges within a tolerance).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import psutil
import pytest
from paramiko.common import AUTH_SUCCESSFUL, OPEN_SUCCEEDED
from prometheus_client.core import Metric

from agent.kernel.collector import BlockingRunner, CollectorContext
from agent.kernel.errors import CollectError
from collectors.ssh.collector import SSHCollector
from collectors.ssh.errors import REASONS, SSHError
from collectors.ssh.settings import SSHSettings, SSHTarget
from tests.helpers import GIAMSAT, collect_once, free_port, http_get, parse_exposition, stop_process, wait_for
from tests.integration.sshd_server import (
    CommandWatch,
    Sshd,
    children,
    cmdline,
    fingerprint_of,
    keygen,
    start_sshd,
)

pytestmark = pytest.mark.root
_REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sshkeys")
    return {
        "client": keygen(d / "client"),
        "other": keygen(d / "other"),  # a key sshd does not know
        "locked": keygen(d / "locked", passphrase="correct horse"),
        "rogue_host": keygen(d / "rogue_host"),  # what an impostor host would present
    }


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Iterator[Sshd]:
    base = tmp_path_factory.mktemp("sshd")
    pubs = (
        Path(keys["client"].with_suffix(".pub")).read_text() + keys["locked"].with_suffix(".pub").read_text()
    )
    (base / "client_keys.pub").write_text(pubs)
    server = start_sshd(base, base / "client_keys.pub", keys["client"])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sshd2(tmp_path: Path, keys: dict[str, Path]) -> Iterator[Sshd]:
    """A second, per-test sshd (to be killed or hung) next to the shared healthy one."""
    server = start_sshd(tmp_path / "sshd2", keys["client"].with_suffix(".pub"), keys["client"])
    try:
        yield server
    finally:
        server.stop()


def known_hosts_line(server: Sshd, pub: Path | None = None) -> str:
    algo, b64 = (pub or server.host_key.with_suffix(".pub")).read_text().split()[:2]
    return f"[127.0.0.1]:{server.port} {algo} {b64}\n"


def known_hosts_line_for(port: int, pub: Path) -> str:
    algo, b64 = pub.read_text().split()[:2]
    return f"[127.0.0.1]:{port} {algo} {b64}\n"


def make_collector(state: Path, **settings: Any) -> SSHCollector:
    cfg = SSHSettings.model_validate(settings)
    ctx = CollectorContext(
        kind="ssh",
        state_dir=state,
        blocking=BlockingRunner("test-ssh", 2),
        log=logging.getLogger("giamsat.collector.ssh"),
    )
    return SSHCollector(cfg, ctx)


def default_settings(
    tmp_path: Path, servers: list[Sshd], keys: dict[str, Path], **extra: Any
) -> dict[str, Any]:
    kh = tmp_path / "known_hosts"
    if not kh.exists():
        kh.write_text("".join(known_hosts_line(s) for s in servers))
    settings: dict[str, Any] = {
        "known_hosts_file": str(kh),
        "auths": {"root": {"username": "root", "key_file": str(keys["client"])}},
        "connect_timeout": "5s",
        "command_timeout": "10s",
    }
    settings.update(extra)
    return settings


def target(server: Sshd | None, name: str = "t1", port: int | None = None, **extra: Any) -> SSHTarget:
    data: dict[str, Any] = {
        "name": name,
        "site": "s1",
        "address": "127.0.0.1",
        "port": port or (server.port if server else 22),
        "auth": "root",
        "timeout": "30s",
    }
    data.update(extra)
    return SSHTarget.model_validate(data)


def collect_rounds(collector: SSHCollector, tgt: SSHTarget, rounds: int) -> list[list[Metric]]:
    """Start the collector, collect ``tgt`` ``rounds`` times in a row, close it."""

    async def go() -> list[list[Metric]]:
        await collector.start()
        try:
            return [await collect_once(collector, tgt) for _ in range(rounds)]
        finally:
            await collector.close()
            collector.ctx.blocking.shutdown()

    return asyncio.run(go())


@contextlib.contextmanager
def direct_connection(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> Iterator[Any]:
    """One authenticated ``Connection`` to ``sshd`` from a pool of its own (closed afterwards)."""
    from collectors.ssh.client import ConnectionPool, HostKeyStore, SSHEndpoint, Timeouts, load_private_key

    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts_line(sshd))
    pool = ConnectionPool(HostKeyStore(kh, False, logging.getLogger("t")), Timeouts(), logging.getLogger("t"))
    ep = SSHEndpoint("127.0.0.1", sshd.port, "root", pkey=load_private_key(keys["client"], None))
    try:
        conn, reused = pool.get("t", ep, [(socket.AF_INET, ("127.0.0.1", sshd.port))], time.monotonic() + 10)
        assert not reused
        yield conn
    finally:
        pool.close_all()


async def collect_all(collector: SSHCollector, *targets: SSHTarget) -> list[list[Metric]]:
    await collector.start()
    try:
        return list(await asyncio.gather(*(collect_once(collector, t) for t in targets)))
    finally:
        await collector.close()
        collector.ctx.blocking.shutdown()


def value(families: list[Metric], name: str, **labels: str) -> float:
    found = [
        s.value
        for f in families
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return float(found[0])


def has(families: list[Metric], name: str, **labels: str) -> bool:
    return any(
        s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        for f in families
        for s in f.samples
    )


def failure(families: list[Metric]) -> str | None:
    reasons = [s.labels["reason"] for f in families for s in f.samples if s.name == "ssh_failure_reason"]
    assert len(reasons) <= 1
    return reasons[0] if reasons else None


def module_failure(families: list[Metric], module: str) -> str | None:
    reasons = [
        s.labels["reason"]
        for f in families
        for s in f.samples
        if s.name == "ssh_module_failure_reason" and s.labels["module"] == module
    ]
    return reasons[0] if reasons else None


# ---------------------------------------------------------------------------------------------------
# the linux module against this machine's own figures
# ---------------------------------------------------------------------------------------------------
def test_linux_module_matches_local_proc(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    # Loopback is excluded by default (as Debian's node_exporter does); keep it: it carries the session.
    settings = default_settings(tmp_path, [sshd], keys, netdev_device_exclude="")
    collector = make_collector(tmp_path, **settings)
    cpu_before = psutil.cpu_times(percpu=True)
    net_before = psutil.net_io_counters(pernic=True)
    ctxt_before = psutil.cpu_stats().ctx_switches
    [fams] = asyncio.run(collect_all(collector, target(sshd)))
    cpu_after = psutil.cpu_times(percpu=True)
    net_after = psutil.net_io_counters(pernic=True)
    ctxt_after = psutil.cpu_stats().ctx_switches
    load_local = os.getloadavg()

    assert value(fams, "ssh_up") == 1
    assert failure(fams) is None
    assert value(fams, "ssh_module_success", module="linux") == 1

    # CPU: every cpu and mode psutil sees, each counter between the local readings before and after.
    eps = 1e-6
    for i, (before, after) in enumerate(zip(cpu_before, cpu_after, strict=True)):
        for mode in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"):
            remote = value(fams, "node_cpu_seconds_total", cpu=str(i), mode=mode)
            assert getattr(before, mode) - eps <= remote <= getattr(after, mode) + eps, (i, mode)
    assert not has(fams, "node_cpu_seconds_total", cpu=str(len(cpu_before)))
    assert ctxt_before <= value(fams, "node_context_switches_total") <= ctxt_after
    assert value(fams, "node_boot_time_seconds") == pytest.approx(psutil.boot_time(), abs=1)

    # Memory: the total is fixed; available moves, so within 5% of the total.
    vm = psutil.virtual_memory()
    assert value(fams, "node_memory_MemTotal_bytes") == vm.total
    assert value(fams, "node_memory_MemAvailable_bytes") == pytest.approx(vm.available, abs=vm.total * 0.05)
    assert has(fams, "node_memory_HugePages_Total")  # no unit in /proc/meminfo, so no _bytes suffix

    # Load: a moving average; allow for the machine being shared.
    for name, local in zip(("node_load1", "node_load5", "node_load15"), load_local, strict=True):
        assert value(fams, name) == pytest.approx(local, abs=max(1.0, local * 0.3)), name

    # Network: loopback carries the SSH session itself, so its counters moved between the readings.
    # Other jobs on this machine add and remove veth links at any moment: compare the devices present
    # in all three readings, which always include loopback.
    remote_devs = {
        s.labels["device"] for f in fams for s in f.samples if s.name == "node_network_receive_bytes_total"
    }
    stable = set(net_before) & set(net_after) & remote_devs
    assert "lo" in stable
    for dev in sorted(stable):
        rb = value(fams, "node_network_receive_bytes_total", device=dev)
        assert net_before[dev].bytes_recv <= rb <= net_after[dev].bytes_recv, dev
        tp = value(fams, "node_network_transmit_packets_total", device=dev)
        assert net_before[dev].packets_sent <= tp <= net_after[dev].packets_sent, dev

    # Filesystem: the root file system's size exactly, available space within 1% of the size.
    st = os.statvfs("/")
    size = value(fams, "node_filesystem_size_bytes", mountpoint="/")
    assert size == st.f_blocks * st.f_frsize
    avail = value(fams, "node_filesystem_avail_bytes", mountpoint="/")
    assert avail == pytest.approx(st.f_bavail * st.f_frsize, abs=size * 0.01)
    root_fstype = next(p.fstype for p in psutil.disk_partitions(all=True) if p.mountpoint == "/")
    assert has(fams, "node_filesystem_size_bytes", mountpoint="/", fstype=root_fstype)
    assert not has(fams, "node_filesystem_size_bytes", mountpoint="/proc")


def test_connection_is_reused_across_collections(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    collector = make_collector(tmp_path, **default_settings(tmp_path, [sshd], keys))

    async def twice() -> tuple[list[Metric], list[Metric], int]:
        await collector.start()
        try:
            first = await collect_once(collector, target(sshd))
            sessions_between = len([p for p in children(sshd.pid) if "sshd" in " ".join(cmdline(p))])
            second = await collect_once(collector, target(sshd))
            return first, second, sessions_between
        finally:
            await collector.close()
            collector.ctx.blocking.shutdown()

    first, second, sessions = asyncio.run(twice())
    assert value(first, "ssh_session_reused") == 0
    assert value(second, "ssh_session_reused") == 1
    assert value(second, "ssh_up") == 1
    assert sessions >= 1  # the connection stayed open between the two collections


# ---------------------------------------------------------------------------------------------------
# host keys
# ---------------------------------------------------------------------------------------------------
def test_unknown_host_key_is_refused_when_strict(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    collector = make_collector(tmp_path, **default_settings(tmp_path, [], keys))
    [fams] = asyncio.run(collect_all(collector, target(sshd)))
    assert value(fams, "ssh_up") == 0
    assert failure(fams) == "host_key_unknown"
    assert value(fams, "ssh_module_success", module="linux") == 0
    assert not has(fams, "node_load1")
    assert kh.read_text() == ""  # strict mode never writes


def test_ipv6_target_with_bracketed_known_hosts_name(
    tmp_path: Path, sshd: Sshd, keys: dict[str, Path]
) -> None:
    algo, b64 = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    (tmp_path / "known_hosts").write_text(f"[::1]:{sshd.port} {algo} {b64}\n")
    collector = make_collector(tmp_path, **default_settings(tmp_path, [], keys))
    [fams] = asyncio.run(collect_all(collector, target(sshd, address="::1")))
    assert value(fams, "ssh_up") == 1, sshd.log()[-1000:]


def test_trust_on_first_use_records_the_key(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    kh = tmp_path / "state" / "ssh_known_hosts"  # the default place, under state_dir
    settings = default_settings(tmp_path, [], keys, trust_on_first_use=True)
    del settings["known_hosts_file"]
    collector = make_collector(tmp_path / "state", **settings)
    [fams] = asyncio.run(collect_all(collector, target(sshd)))
    assert value(fams, "ssh_up") == 1
    assert kh.read_text() == known_hosts_line(sshd)

    # The recorded key is then enforced strictly: a fresh strict collector with that file logs in.
    strict = make_collector(tmp_path / "state", **{**settings, "trust_on_first_use": False})
    [fams2] = asyncio.run(collect_all(strict, target(sshd)))
    assert value(fams2, "ssh_up") == 1


def test_wrong_host_key_is_a_mismatch_with_both_fingerprints_logged(
    tmp_path: Path, sshd: Sshd, keys: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    rogue_pub = keys["rogue_host"].with_suffix(".pub")
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts_line(sshd, rogue_pub))
    # Even with trust on first use, a host that is in the file with another key is refused.
    collector = make_collector(tmp_path, **default_settings(tmp_path, [], keys, trust_on_first_use=True))
    with caplog.at_level(logging.ERROR, logger="giamsat.collector.ssh"):
        [fams] = asyncio.run(collect_all(collector, target(sshd)))
    assert value(fams, "ssh_up") == 0
    assert failure(fams) == "host_key_mismatch"
    assert kh.read_text() == known_hosts_line(sshd, rogue_pub)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert fingerprint_of(sshd.host_key.with_suffix(".pub")) in text
    assert fingerprint_of(rogue_pub) in text


def test_ssh_keyscan_workflow_with_hashed_names(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    """The documented workflow: ssh-keyscan -H into the agent's known_hosts, then strict checking."""
    scanned = subprocess.run(
        ["ssh-keyscan", "-H", "-t", "ed25519", "-p", str(sshd.port), "127.0.0.1"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert scanned.startswith("|1|")
    kh = tmp_path / "known_hosts"
    kh.write_text(scanned)
    collector = make_collector(tmp_path, **default_settings(tmp_path, [], keys))
    [fams] = asyncio.run(collect_all(collector, target(sshd)))
    assert value(fams, "ssh_up") == 1


# ---------------------------------------------------------------------------------------------------
# authentication
# ---------------------------------------------------------------------------------------------------
def test_wrong_user_key_is_auth_failed(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    settings = default_settings(tmp_path, [sshd], keys)
    settings["auths"]["root"]["key_file"] = str(keys["other"])
    collector = make_collector(tmp_path, **settings)
    [fams] = asyncio.run(collect_all(collector, target(sshd)))
    assert value(fams, "ssh_up") == 0
    assert failure(fams) == "auth_failed"


def test_wrong_password_from_env_is_auth_failed(
    tmp_path: Path, sshd: Sshd, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIAMSAT_TEST_SSH_PASSWORD", "not-the-password")
    settings = default_settings(tmp_path, [sshd], keys)
    settings["auths"] = {"root": {"username": "root", "password_env": "GIAMSAT_TEST_SSH_PASSWORD"}}
    collector = make_collector(tmp_path, **settings)
    [fams] = asyncio.run(collect_all(collector, target(sshd)))
    assert failure(fams) == "auth_failed"


@pytest.fixture
def password_user() -> Iterator[tuple[str, str]]:
    """A throw-away local account with a password, removed afterwards (sshd checks it via shadow)."""
    import secrets as _secrets

    name = f"gs-sshpw-{os.getpid() % 100000}"
    password = _secrets.token_urlsafe(16)
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True, capture_output=True
    )
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}", text=True, check=True, capture_output=True)
        yield name, password
    finally:
        # sshd's session process for a reused connection may still run as the user.
        subprocess.run(["pkill", "-KILL", "-u", name], check=False, capture_output=True)
        subprocess.run(["userdel", "--force", name], check=False, capture_output=True)
        assert subprocess.run(["id", name], capture_output=True).returncode != 0, f"{name} not removed"


@pytest.mark.root
def test_password_from_file_logs_in(
    tmp_path: Path, sshd: Sshd, keys: dict[str, Path], password_user: tuple[str, str]
) -> None:
    user, password = password_user
    pw = tmp_path / "password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    settings = default_settings(tmp_path, [sshd], keys)
    settings["auths"] = {"root": {"username": user, "password_file": str(pw)}}
    collector = make_collector(tmp_path, **settings)
    [fams] = asyncio.run(collect_all(collector, target(sshd)))
    assert failure(fams) is None and value(fams, "ssh_up") == 1


def test_key_with_passphrase_from_file(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    pw = tmp_path / "passphrase"
    pw.write_text("correct horse\n")
    pw.chmod(0o600)
    settings = default_settings(tmp_path, [sshd], keys)
    settings["auths"] = {
        "root": {"username": "root", "key_file": str(keys["locked"]), "passphrase_file": str(pw)}
    }
    collector = make_collector(tmp_path, **settings)
    [fams] = asyncio.run(collect_all(collector, target(sshd)))
    assert value(fams, "ssh_up") == 1


def test_unreadable_key_is_a_config_error_naming_it(tmp_path: Path, keys: dict[str, Path]) -> None:
    from pydantic import ValidationError

    for auth, problem in (
        ({"username": "root", "key_file": str(tmp_path / "missing-key")}, "No such file or directory"),
        ({"username": "root", "key_file": str(keys["locked"])}, "the key is encrypted: give its passphrase"),
        ({"username": "root", "key_file": str(keys["locked"]), "passphrase": "wrong"}, "cannot load"),
    ):
        settings = default_settings(tmp_path, [], keys)
        settings["auths"]["root"] = auth
        with pytest.raises(ValidationError) as err:
            SSHSettings.model_validate(settings)
        [e] = err.value.errors()
        assert e["loc"] == ("auths", "root") and problem in e["msg"], e
        assert "wrong" not in str(err.value)


def test_a_key_that_goes_bad_after_the_check_is_a_collector_error_not_target_data(
    tmp_path: Path, sshd: Sshd, keys: dict[str, Path]
) -> None:
    """The file changed between the config check and the collector's start: refused at collection."""
    for replace in (None, keys["locked"]):  # removed; an encrypted key without its passphrase
        key = tmp_path / "key"
        key.write_bytes(keys["client"].read_bytes())
        key.chmod(0o600)
        settings = default_settings(tmp_path, [sshd], keys)
        settings["auths"]["root"] = {"username": "root", "key_file": str(key)}
        collector = make_collector(tmp_path, **settings)
        if replace is None:
            key.unlink()
        else:
            key.write_bytes(replace.read_bytes())
        with pytest.raises(CollectError) as err:
            asyncio.run(collect_all(collector, target(sshd)))
        assert err.value.reason == "key_error", replace


# ---------------------------------------------------------------------------------------------------
# failures that must stay with their own target
# ---------------------------------------------------------------------------------------------------
async def _race(
    collector: SSHCollector, slow: SSHTarget, fast: SSHTarget
) -> tuple[list[str], dict[str, list[Metric]]]:
    """Collect both at once; return the order in which they finished and their families."""
    await collector.start()
    order: list[str] = []
    results: dict[str, list[Metric]] = {}

    async def one(t: SSHTarget) -> None:
        results[t.name] = await collect_once(collector, t)
        order.append(t.name)

    try:
        await asyncio.gather(one(slow), one(fast))
    finally:
        await collector.close()
        collector.ctx.blocking.shutdown()
    return order, results


@pytest.mark.parametrize(
    "scenario",
    ["host_key_unknown", "host_key_mismatch", "auth_failed", "connection_refused", "connect_timeout"],
)
def test_session_failure_stays_with_its_target(
    scenario: str, tmp_path: Path, sshd: Sshd, sshd2: Sshd, keys: dict[str, Path]
) -> None:
    """Each way a session can fail, run next to a healthy target in the same collector at the same time."""
    kh = tmp_path / "known_hosts"
    lines = known_hosts_line(sshd)
    bad = target(sshd2, "bad")
    settings = default_settings(tmp_path, [], keys, connect_timeout="3s")
    settings["auths"]["wrong"] = {"username": "root", "key_file": str(keys["other"])}
    listener: socket.socket | None = None
    if scenario == "host_key_mismatch":
        lines += known_hosts_line(sshd2, keys["rogue_host"].with_suffix(".pub"))
    elif scenario != "host_key_unknown":
        lines += known_hosts_line(sshd2)
    if scenario == "auth_failed":
        bad = target(sshd2, "bad", auth="wrong")
    elif scenario == "connection_refused":
        sshd2.stop()
    elif scenario == "connect_timeout":  # accepts TCP, never speaks
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        bad = target(None, "bad", port=listener.getsockname()[1])
    kh.write_text(lines)
    collector = make_collector(tmp_path, **settings)
    try:
        _order, res = asyncio.run(_race(collector, bad, target(sshd, "healthy")))
    finally:
        if listener is not None:
            listener.close()
    assert value(res["bad"], "ssh_up") == 0
    assert failure(res["bad"]) == scenario
    assert value(res["healthy"], "ssh_up") == 1
    assert value(res["healthy"], "ssh_module_success", module="linux") == 1


def test_hung_command_times_out_and_other_target_is_unaffected(
    tmp_path: Path, sshd: Sshd, sshd2: Sshd, keys: dict[str, Path]
) -> None:
    settings = default_settings(
        tmp_path,
        [sshd, sshd2],
        keys,
        commands={
            "hang": {
                "command": ["sleep", "60"],
                "parser": "number",
                "timeout": "4s",
                "metrics": [{"name": "never_seen"}],
            }
        },
    )
    collector = make_collector(tmp_path, **settings)
    slow = target(sshd2, "hung", modules=["hang", "linux"])
    fast = target(sshd, "healthy")
    with CommandWatch(sshd2.pid, ["sleep", "60"]) as watch:
        order, res = asyncio.run(_race(collector, slow, fast))
    assert watch.pids  # the command did run remotely
    assert order == ["healthy", "hung"]
    assert value(res["healthy"], "ssh_module_success", module="linux") == 1
    hung = res["hung"]
    assert value(hung, "ssh_up") == 1
    assert module_failure(hung, "hang") == "command_timeout"
    assert not has(hung, "never_seen")
    # The thread came back and the session is still usable: the next module on it ran normally.
    assert value(hung, "ssh_module_success", module="linux") == 1
    assert collector.ctx.blocking.abandoned_total == 0


def test_sshd_killed_mid_session_is_disconnected(
    tmp_path: Path, sshd: Sshd, sshd2: Sshd, keys: dict[str, Path]
) -> None:
    settings = default_settings(
        tmp_path,
        [sshd, sshd2],
        keys,
        commands={
            "slow": {
                "command": ["sleep", "59"],
                "parser": "number",
                "timeout": "25s",
                "metrics": [{"name": "never_seen"}],
            }
        },
    )
    collector = make_collector(tmp_path, **settings)
    victim = target(sshd2, "victim", modules=["slow"])
    fast = target(sshd, "healthy")

    healthy_done = threading.Event()

    def kill_when_running() -> None:
        """Once the victim's command runs and the healthy target has finished meanwhile, kill sshd."""
        end = time.monotonic() + 20
        while time.monotonic() < end:
            running = any(cmdline(p)[:2] == ["sleep", "59"] for p in children(sshd2.pid))
            if running and healthy_done.wait(0.05):
                sshd2.kill()
                return
            time.sleep(0.05)

    async def scenario() -> dict[str, list[Metric]]:
        await collector.start()
        try:
            victim_task = asyncio.create_task(collect_once(collector, victim))
            healthy = await collect_once(collector, fast)
            healthy_done.set()
            return {"healthy": healthy, "victim": await victim_task}
        finally:
            await collector.close()
            collector.ctx.blocking.shutdown()

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    try:
        res = asyncio.run(scenario())
    finally:
        healthy_done.set()
        killer.join()
    assert sshd2.proc.poll() is not None  # it was killed while the victim's command ran
    assert value(res["healthy"], "ssh_up") == 1
    assert value(res["healthy"], "ssh_module_success", module="linux") == 1
    assert value(res["victim"], "ssh_up") == 1
    assert module_failure(res["victim"], "slow") == "disconnected"

    # Next time round the server is gone: connection refused, as data.
    again = make_collector(tmp_path, **settings)
    [fams] = asyncio.run(collect_all(again, victim))
    assert value(fams, "ssh_up") == 0
    assert failure(fams) == "connection_refused"


def test_silent_server_is_connect_timeout_and_other_target_finishes_first(
    tmp_path: Path, sshd: Sshd, keys: dict[str, Path]
) -> None:
    """A port that accepts TCP but never speaks SSH (a hung sshd) must not hold anyone else up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        settings = default_settings(tmp_path, [sshd], keys, connect_timeout="4s")
        collector = make_collector(tmp_path, **settings)
        order, res = asyncio.run(_race(collector, target(None, "silent", port=port), target(sshd, "healthy")))
    finally:
        listener.close()
    assert order == ["healthy", "silent"]
    assert value(res["healthy"], "ssh_up") == 1
    assert value(res["silent"], "ssh_up") == 0
    assert failure(res["silent"]) == "connect_timeout"


def test_not_an_ssh_server_is_protocol_error(tmp_path: Path, keys: dict[str, Path]) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def answer_http() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    server = threading.Thread(target=answer_http)
    server.start()
    try:
        collector = make_collector(tmp_path, **default_settings(tmp_path, [], keys))
        [fams] = asyncio.run(collect_all(collector, target(None, port=port)))
    finally:
        server.join(10)
        listener.close()
    assert failure(fams) == "protocol_error"


def test_max_concurrency_bounds_targets_in_flight(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    """With max_concurrency 1, two targets never run commands at the same time (a mkdir lock shows it)."""
    lock = tmp_path / "lock"
    script = 'mkdir "$1" || exit 1; sleep 0.5; rmdir "$1"'  # fixed script; the path is an argument
    commands = {
        "exclusive": {
            "command": ["sh", "-c", script, "sh", str(lock)],
            "parser": "number",
            "metrics": [{"name": "never_seen"}],
        }
    }
    collector = make_collector(
        tmp_path, **default_settings(tmp_path, [sshd], keys, commands=commands, max_concurrency=1)
    )
    targets = [target(sshd, f"t{i}", modules=["exclusive"]) for i in range(3)]
    results = asyncio.run(collect_all(collector, *targets))
    # Each ran and exited 0 (then "" is not a number: parse_error); a collision would be command_failed.
    assert [module_failure(r, "exclusive") for r in results] == ["parse_error"] * 3


def test_without_reuse_every_collection_connects(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    collector = make_collector(tmp_path, **default_settings(tmp_path, [sshd], keys, reuse_connections=False))

    results = collect_rounds(collector, target(sshd), 2)
    assert [value(r, "ssh_session_reused") for r in results] == [0, 0]
    assert [value(r, "ssh_up") for r in results] == [1, 1]
    assert len(collector.pool) == 0


def test_nothing_listening_is_connection_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connects are refused
        collector = make_collector(tmp_path, **default_settings(tmp_path, [], keys))
        [fams] = asyncio.run(collect_all(collector, target(None, port=port)))
    assert failure(fams) == "connection_refused"
    assert failure(fams) in REASONS


# ---------------------------------------------------------------------------------------------------
# user-defined command modules over real SSH
# ---------------------------------------------------------------------------------------------------
def test_command_modules_parse_real_output(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    commands = {
        "pidmax": {
            "command": ["cat", "/proc/sys/kernel/pid_max"],
            "parser": "number",
            "metrics": [{"name": "kernel_pid_max", "help": "pid_max", "labels": {"source": "proc"}}],
        },
        "mounts": {
            "command": ["cat", "/proc/self/mountinfo"],
            "parser": "regex",
            "pattern": r"^(?P<id>\d+) (?P<parent>\d+) ",
            "max_series": 100000,
            "metrics": [{"name": "mount_parent_id", "value": "parent", "label_groups": {"mount_id": "id"}}],
        },
        "osrel": {
            "command": ["cat", "/etc/os-release"],
            "parser": "keyvalue",
            "metrics": [{"name": "os_version_id", "value": "VERSION_ID"}],
        },
        "json": {
            "command": ["printf", "%s", '{"a": {"b": [1, 2.5]}, "ok": true}'],
            "parser": "json",
            "metrics": [{"name": "json_b1", "value": "a.b.1"}, {"name": "json_ok", "value": "ok"}],
        },
        "quoting": {
            # One argument full of shell syntax: it must reach printf as is, never run by the shell.
            "command": [
                "printf",
                "%s\\n",
                f"x=$(touch {tmp_path}/pwned); `id` ; echo 7 > {tmp_path}/pwned2 'q' \"d\"",
            ],
            "parser": "regex",
            "pattern": r"^(?P<all>x=.*)$",
            "metrics": [{"name": "quoted_len", "value": "all"}],
        },
    }
    collector = make_collector(tmp_path, **default_settings(tmp_path, [sshd], keys, commands=commands))
    modules = ["pidmax", "mounts", "osrel", "json", "quoting"]
    [fams] = asyncio.run(collect_all(collector, target(sshd, modules=modules)))
    for m in modules[:-1]:
        assert value(fams, "ssh_module_success", module=m) == 1, m
    assert value(fams, "kernel_pid_max", source="proc") == int(Path("/proc/sys/kernel/pid_max").read_text())
    first = Path("/proc/self/mountinfo").read_text().split()
    assert value(fams, "mount_parent_id", mount_id=first[0]) == float(first[1])
    version = next(
        line.split("=", 1)[1].strip('"')
        for line in Path("/etc/os-release").read_text().splitlines()
        if line.startswith("VERSION_ID=")
    )
    assert value(fams, "os_version_id") == float(version)
    assert value(fams, "json_b1") == 2.5
    assert value(fams, "json_ok") == 1
    # The argument came back verbatim (so it is not a number: parse_error) and nothing was executed.
    assert module_failure(fams, "quoting") == "parse_error"
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "pwned2").exists()


def test_failing_command_and_unparsable_output(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    commands = {
        "exit3": {
            "command": ["sh", "-c", "echo oops >&2; exit 3"],
            "parser": "number",
            "metrics": [{"name": "a"}],
        },
        "words": {"command": ["echo", "not a number"], "parser": "number", "metrics": [{"name": "b"}]},
        "huge": {
            "command": ["head", "-c", "5000000", "/dev/zero"],
            "parser": "number",
            "metrics": [{"name": "c"}],
        },
    }
    collector = make_collector(
        tmp_path, **default_settings(tmp_path, [sshd], keys, commands=commands, max_output_bytes=1048576)
    )
    [fams] = asyncio.run(collect_all(collector, target(sshd, modules=["exit3", "words", "huge", "linux"])))
    assert value(fams, "ssh_up") == 1
    assert module_failure(fams, "exit3") == "command_failed"
    assert module_failure(fams, "words") == "parse_error"
    assert module_failure(fams, "huge") == "command_failed"
    assert value(fams, "ssh_module_success", module="linux") == 1


def test_stdout_and_stderr_are_drained_together(tmp_path: Path, sshd: Sshd, keys: dict[str, Path]) -> None:
    """Megabytes on both streams: waiting on one while the other's window is full would deadlock."""
    with direct_connection(tmp_path, sshd, keys) as conn:
        script = "head -c 3000000 /dev/zero >&2; head -c 3000001 /dev/zero; head -c 7 /dev/zero >&2; exit 4"
        result = conn.run(["sh", "-c", script], 30, 64 * 1024 * 1024)
    assert result.exit_status == 4
    assert len(result.stdout) == 3000001
    assert len(result.stderr) == 3000007


def test_output_cut_short_mid_stream_leaves_the_connection_usable(
    tmp_path: Path, sshd: Sshd, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel closed while the server still streams into it (output over the limit) must not kill
    the transport. paramiko's ``Channel.fileno()`` pipe is closed by ``close()`` without the lock its
    transport thread holds while signalling it; with that pipe, a close racing incoming data wrote to
    a closed descriptor and the transport thread died (seen once in CI). The pipe's close is slowed
    here so that the race, if the pipe is ever used again, is hit on nearly every command."""
    import paramiko.pipe

    def slow_close(self: Any) -> None:
        os.close(self._rfd)
        os.close(self._wfd)
        time.sleep(0.002)
        self._closed = True

    monkeypatch.setattr(paramiko.pipe.PosixPipe, "close", slow_close)
    with direct_connection(tmp_path, sshd, keys) as conn:
        for i in range(40):
            with pytest.raises(SSHError) as caught:
                conn.run(["head", "-c", "4000000", "/dev/zero"], 30, 1024 * 1024)
            assert caught.value.reason == "command_failed", (i, caught.value)
            assert conn.is_active(), f"transport died after cut-short command {i}"
        result = conn.run(["echo", "still here"], 30, 1024)
    assert result.exit_status == 0
    assert result.stdout == b"still here\n"


def test_frozen_server_mid_command_times_out_and_is_not_reused(
    tmp_path: Path, sshd2: Sshd, keys: dict[str, Path]
) -> None:
    """sshd stopped (SIGSTOP) while a command runs: its TCP stack still answers, SSH never does."""
    settings = default_settings(
        tmp_path,
        [sshd2],
        keys,
        commands={
            "slow": {
                "command": ["sleep", "58"],
                "parser": "number",
                "timeout": "2s",
                "metrics": [{"name": "never_seen"}],
            }
        },
    )
    collector = make_collector(tmp_path, **settings)
    frozen: list[int] = []

    def freeze_when_running() -> None:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if any(cmdline(p)[:2] == ["sleep", "58"] for p in children(sshd2.pid)):
                for p in [sshd2.pid, *children(sshd2.pid)]:
                    os.kill(p, signal.SIGSTOP)
                    frozen.append(p)
                return
            time.sleep(0.05)

    async def scenario() -> tuple[list[Metric], list[Metric]]:
        await collector.start()
        try:
            first = await collect_once(collector, target(sshd2, modules=["slow"]))
            for p in frozen:
                os.kill(p, signal.SIGCONT)
            second = await collect_once(collector, target(sshd2, modules=["linux"]))
            return first, second
        finally:
            await collector.close()
            collector.ctx.blocking.shutdown()

    freezer = threading.Thread(target=freeze_when_running)
    freezer.start()
    try:
        first, second = asyncio.run(scenario())
    finally:
        freezer.join()
        for p in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
        # The command outlives its session (it runs in its own session, so it is orphaned rather than
        # a child of sshd any more): stop it by the PID seen earlier.
        for p in frozen:
            if cmdline(p)[:2] == ["sleep", "58"]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
    assert frozen
    assert module_failure(first, "slow") == "command_timeout"
    assert collector.ctx.blocking.abandoned_total == 0  # the thread returned on its own deadline
    assert value(second, "ssh_session_reused") == 0  # the suspect session was dropped
    assert value(second, "ssh_module_success", module="linux") == 1


# ---------------------------------------------------------------------------------------------------
# the agent as operators run it
# ---------------------------------------------------------------------------------------------------
def test_agent_serves_ssh_targets_and_promtool_accepts_them(
    tmp_path: Path, sshd: Sshd, keys: dict[str, Path]
) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts_line(sshd))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    config = tmp_path / "giamsat.yml"
    config.write_text(
        f"""
agent:
  site: tinh
  interval: 15s
  timeout: 10s   # generous: the machine running the tests is shared and often loaded
  state_dir: {tmp_path / "state"}
sites:
  - {{id: tinh, name: "Tỉnh", level: province}}
  - {{id: huyen-a, name: "Huyện A", level: district, parent: tinh}}
collectors:
  host: {{enabled: false}}
  ssh:
    known_hosts_file: {kh}
    auths:
      root: {{username: root, key_file: {keys["client"]}}}
    commands:
      pidmax:
        command: [cat, /proc/sys/kernel/pid_max]
        parser: number
        metrics: [{{name: kernel_pid_max}}]
targets:
  ssh:
    - {{name: healthy, site: huyen-a, address: 127.0.0.1, port: {sshd.port}, auth: root, modules: [linux, pidmax]}}
    - {{name: gone, site: huyen-a, address: 127.0.0.1, port: {dead_port}, auth: root}}
""",
        encoding="utf-8",
    )
    port = free_port()
    log = tmp_path / "agent.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [GIAMSAT, "run", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, 30, what="agent ready")
        status, body, _ = http_get(f"http://127.0.0.1:{port}/metrics")
    finally:
        stop_process(proc)
    assert status == 200, log.read_text()
    m = parse_exposition(body)
    assert m['ssh_up{site="huyen-a",target="healthy"}'] == 1
    assert m['ssh_module_success{module="linux",site="huyen-a",target="healthy"}'] == 1
    assert m['kernel_pid_max{site="huyen-a",target="healthy"}'] > 0
    assert any(k.startswith("node_cpu_seconds_total{") and 'target="healthy"' in k for k in m)
    assert m['ssh_up{site="huyen-a",target="gone"}'] == 0
    assert m['ssh_failure_reason{reason="connection_refused",site="huyen-a",target="gone"}'] == 1
    # A down target is data: the collector itself stays healthy for both.
    assert m['giamsat_collector_success{collector="ssh",site="huyen-a",target="gone"}'] == 1
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    findings = [ln for ln in (lint.stdout + lint.stderr).splitlines() if ln.strip()]
    # only node_exporter's own spellings, which promtool flags identically on node_exporter's output
    inherited = [
        f
        for f in findings
        if (f.startswith(("node_memory_", "node_netstat_")) and "camelCase" in f)
        or (f.startswith("node_entropy_") and 'base unit "bytes" instead of "bits"' in f)
    ]
    assert [f for f in findings if f not in inherited] == []


# ---------------------------------------------------------------------------------------------------
# known_hosts files as they are found in the field
# ---------------------------------------------------------------------------------------------------
def test_bad_known_hosts_line_is_skipped_with_one_warning(
    tmp_path: Path, sshd: Sshd, keys: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Guards reading known_hosts line by line: one torn line (bad base64, e.g. a trust-on-first-use
    append cut short by a full disk) made paramiko's loader raise InvalidHostKey, which is not an
    SSHException, so every target's collection raised instead of connecting."""
    kh = tmp_path / "known_hosts"
    torn = "[127.0.0.1]:2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\n"
    kh.write_text("# scanned 2026-11-20\n" + torn + "only-a-name\n" + known_hosts_line(sshd))
    collector = make_collector(tmp_path, **default_settings(tmp_path, [sshd], keys))

    with caplog.at_level(logging.WARNING, logger="giamsat.collector.ssh"):
        results = collect_rounds(collector, target(sshd), 2)
    assert [value(r, "ssh_up") for r in results] == [1, 1]
    warnings = [r.getMessage() for r in caplog.records if "known_hosts" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per change of the file, not once per connection
    assert str(kh) in warnings[0] and "line 2" in warnings[0] and "line 3" in warnings[0]
    assert not any("AAAAC3" in r.getMessage() for r in caplog.records)  # no key material in logs


def test_unreadable_known_hosts_is_a_collector_error(
    tmp_path: Path, sshd: Sshd, keys: dict[str, Path]
) -> None:
    """Guards the known_hosts read: a file that exists but cannot be read is the collector's failure
    (no host key can be checked), raised as CollectError("known_hosts"), not an OSError escaping
    connect() with the freshly opened socket left open."""
    kh = tmp_path / "known_hosts"
    kh.touch()  # readable when the configuration is checked (check-config refuses an unreadable one)
    collector = make_collector(tmp_path, **default_settings(tmp_path, [sshd], keys))
    kh.unlink()
    kh.mkdir()  # root reads any file; a directory cannot be read as one
    with pytest.raises(CollectError) as caught:
        asyncio.run(collect_all(collector, target(sshd)))
    assert caught.value.reason == "known_hosts"
    assert str(kh) in caught.value.message


def test_trust_on_first_use_appends_on_a_line_of_its_own(
    tmp_path: Path, sshd: Sshd, sshd2: Sshd, keys: dict[str, Path]
) -> None:
    """Guards HostKeyStore.record: when the operator's file did not end in a newline, the recorded key
    was glued onto its last line, breaking both entries."""
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts_line(sshd).rstrip("\n"))
    tofu = make_collector(tmp_path, **default_settings(tmp_path, [], keys, trust_on_first_use=True))
    [first] = asyncio.run(collect_all(tofu, target(sshd2, "new")))
    assert value(first, "ssh_up") == 1
    assert kh.read_text().count("\n") == 2
    strict = make_collector(tmp_path, **default_settings(tmp_path, [], keys))
    results = asyncio.run(collect_all(strict, target(sshd, "old"), target(sshd2, "new")))
    assert [value(r, "ssh_up") for r in results] == [1, 1]


def test_key_that_cannot_be_recorded_is_not_trusted(tmp_path: Path) -> None:
    """Guards HostKeyStore.record's check of os.write: a short write (full disk, here RLIMIT_FSIZE in
    a process of its own) left a torn line and trusted the host anyway. Now the host is refused
    (host_key_unknown), and once there is room the torn line is skipped and the key recorded."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.ssh_netns_helper", "fsize", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=_REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["full"] == {"up": 0, "reason": "host_key_unknown"}
    assert res["freed"] == {"up": 1, "reason": None}
    assert res["lines"] == 3  # the operator's line (a newline added), the torn one, the key recorded
    assert "short write" in proc.stderr


# ---------------------------------------------------------------------------------------------------
# peers that break paramiko, and closing while a connect is under way
# ---------------------------------------------------------------------------------------------------
def _ssh_packet(payload: bytes) -> bytes:
    """An unencrypted SSH binary packet (RFC 4253 section 6) around ``payload``."""
    pad = 8 - (5 + len(payload)) % 8
    pad += 8 if pad < 4 else 0
    return struct.pack(">IB", 1 + len(payload) + pad, pad) + payload + b"\0" * pad


def test_malformed_kexinit_is_protocol_error(tmp_path: Path, keys: dict[str, Path]) -> None:
    """Guards the catch-all in connect(): a peer whose KEXINIT algorithm list is not UTF-8 killed
    paramiko's transport thread with UnicodeDecodeError, which connect() re-raised past its handlers:
    a collector error instead of ``ssh_up 0``, and the socket was left to the garbage collector."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    closed_by_client = threading.Event()

    def broken_device() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"SSH-2.0-BrokenDevice_1.0\r\n")
            kexinit = bytes([20]) + b"\x11" * 16 + struct.pack(">I", 4) + b"\xff\xfe\xfd\xfc"
            conn.sendall(_ssh_packet(kexinit))
            conn.settimeout(15)
            with contextlib.suppress(OSError):
                while conn.recv(4096):
                    pass
                closed_by_client.set()

    server = threading.Thread(target=broken_device)
    server.start()
    try:
        collector = make_collector(tmp_path, **default_settings(tmp_path, [], keys))
        [fams] = asyncio.run(collect_all(collector, target(None, port=listener.getsockname()[1])))
    finally:
        server.join(20)
        listener.close()
    assert value(fams, "ssh_up") == 0
    assert failure(fams) == "protocol_error"
    assert closed_by_client.is_set()


class _HostileSession(paramiko.ServerInterface):
    """Logs anyone in, then answers an exec request with a global request whose name is not UTF-8."""

    def __init__(self, transport: paramiko.Transport) -> None:
        self.transport = transport

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        m = paramiko.Message()
        m.add_byte(bytes([80]))  # SSH_MSG_GLOBAL_REQUEST
        m.add_string(b"\xff\xfe-not-utf-8")
        m.add_boolean(False)
        # no public API sends a malformed request, on purpose (private: not in types-paramiko)
        self.transport._send_message(m)  # type: ignore[attr-defined]
        return True


def test_transport_dying_of_a_malformed_packet_mid_command_is_disconnected(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    """Guards the catch-all in Connection.run: exec_command re-raises whatever paramiko's transport
    thread died of (here UnicodeDecodeError from a global request name that is not UTF-8), which
    escaped run() and collect() as a collector error instead of the module's ``disconnected``."""
    host_key = paramiko.Ed25519Key.from_private_key_file(str(keys["rogue_host"]))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            t = paramiko.Transport(conn)
            transports.append(t)
            t.add_server_key(host_key)
            t.start_server(server=_HostileSession(t))

    server = threading.Thread(target=serve)
    server.start()
    (tmp_path / "known_hosts").write_text(known_hosts_line_for(port, keys["rogue_host"].with_suffix(".pub")))
    commands = {"one": {"command": ["true"], "parser": "number", "metrics": [{"name": "never_seen"}]}}
    collector = make_collector(tmp_path, **default_settings(tmp_path, [], keys, commands=commands))
    try:
        [fams] = asyncio.run(collect_all(collector, target(None, port=port, modules=["one"])))
    finally:
        server.join(10)
        listener.close()
        for t in transports:
            t.close()
    assert value(fams, "ssh_up") == 1
    assert module_failure(fams, "one") == "disconnected"


class _DelayProxy:
    """A TCP relay to 127.0.0.1:``port`` that holds every connection ``delay`` seconds before relaying
    (a slow link: the SSH handshake is still under way long after the TCP connect)."""

    def __init__(self, port: int, delay: float) -> None:
        self.target, self.delay = port, delay
        self.accepted = threading.Event()
        self._socks: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._socks.append(conn)
            self.accepted.set()
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        time.sleep(self.delay)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            conn.close()
            return
        self._socks.append(upstream)
        threading.Thread(target=self._pump, args=(upstream, conn), daemon=True).start()
        self._pump(conn, upstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for s in self._socks:
            s.close()


def test_close_during_connect_closes_the_new_connection(
    tmp_path: Path, sshd2: Sshd, keys: dict[str, Path]
) -> None:
    """Guards ConnectionPool.close_all: a reload or shutdown cancels a collection whose connect is
    still running in a thread and closes the collector; the connection that thread finished opening
    afterwards used to be stored in the closed pool and kept for good (a paramiko transport thread,
    the TCP connection and an sshd session per reload)."""
    proxy = _DelayProxy(sshd2.port, 1.5)
    algo, b64 = sshd2.host_key.with_suffix(".pub").read_text().split()[:2]
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{proxy.port} {algo} {b64}\n")
    collector = make_collector(tmp_path, **default_settings(tmp_path, [], keys))

    async def reload_while_connecting() -> None:
        await collector.start()
        job = asyncio.create_task(collect_once(collector, target(None, "slow", port=proxy.port)))
        assert await asyncio.to_thread(proxy.accepted.wait, 10)
        job.cancel()  # what the scheduler's shutdown does to jobs in flight
        with contextlib.suppress(asyncio.CancelledError):
            await job
        await collector.close()
        # The abandoned thread finishes its connect meanwhile.
        await asyncio.to_thread(wait_for, lambda: collector.ctx.blocking.stuck == 0, 15, 0.05, "the thread")
        collector.ctx.blocking.shutdown()

    try:
        asyncio.run(reload_while_connecting())
        assert collector.ctx.blocking.abandoned_total == 1
        assert collector.ctx.blocking.stuck == 0
        assert "Accepted publickey for root" in sshd2.log()  # that connect did finish, after close()
        assert len(collector.pool) == 0
        wait_for(lambda: not children(sshd2.pid), timeout=10, what="the sshd session to end")
    finally:
        proxy.close()


# ---------------------------------------------------------------------------------------------------
# name resolution and several addresses, in a private network and mount namespace
# ---------------------------------------------------------------------------------------------------
# In the namespace: 127.0.0.3 is a host that never answers, 127.0.0.53 a name server that never answers.
_NETNS_RULES = """
table ip giamsat_ssh_test {
    chain input { type filter hook input priority 0; ip daddr { 127.0.0.3, 127.0.0.53 } drop; }
}
"""


def run_in_private_netns(scenario: str, base: Path) -> dict[str, Any]:
    """Run ``ssh_netns_helper.py SCENARIO`` in a fresh network namespace (loopback only, the rules
    above) and mount namespace (its own /etc/hosts and /etc/resolv.conf from ``base``); its JSON."""
    ns = f"gsssh{os.getpid()}{scenario}"
    hosts, resolv = base / "hosts", base / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n")
    resolv.write_text("nameserver 127.0.0.53\noptions timeout:10 attempts:3\n")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=_NETNS_RULES, text=True, check=True
        )
        script = (
            'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && '
            'exec "$3" -m tests.integration.ssh_netns_helper "$4" "$5"'
        )
        proc = subprocess.run(
            [
                *("ip", "netns", "exec", ns, "unshare", "-m", "--propagation", "private", "sh", "-c", script),
                *("sh", str(hosts), str(resolv), sys.executable, scenario, str(base)),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=_REPO,
        )
    finally:
        # Whatever the helper left running in the namespace (its sshd, if it was killed) goes first.
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_hung_resolver_fails_named_targets_alone_and_last_good_answer_is_kept(tmp_path: Path) -> None:
    """Guards name resolution outside the SSH thread pool, with a deadline: four targets whose names
    only a black-holed name server could resolve (each lookup would block 30 s) used to pin the pool's
    max_concurrency + 2 threads, so the IP-addressed target next to them starved (command_timeout).
    Also guards the last-good-answer cache: a name that resolved once still connects while the
    resolver does not answer, also after a reload (a new collector)."""
    res = run_in_private_netns("dns", tmp_path)
    first = res["first"]
    assert first["by_ip"] == {"up": 1, "reason": None}
    for i in range(4):
        assert first[f"dns{i}"] == {"up": 0, "reason": "dns_failed"}
    assert first["flappy"] == {"up": 1, "reason": None}
    # flappy.test is no longer in /etc/hosts and the name server is dead: the last answer is used.
    assert res["flappy_again"] == {"up": 1, "reason": None}
    assert res["flappy_after_reload"] == {"up": 1, "reason": None}


def test_first_address_black_holed_connects_to_the_next(tmp_path: Path) -> None:
    """Guards per-address connect timeouts: a name whose first address drops SYNs and whose second is
    a live sshd connects (as OpenSSH with ConnectTimeout does); with the whole connect_timeout spent
    on the first address, and the handshake deadline fixed before TCP connect, it never did."""
    res = run_in_private_netns("multi", tmp_path)
    assert res["order"] == ["127.0.0.3", "127.0.0.2"]  # the dead address really is tried first
    assert res["result"] == {"up": 1, "reason": None}
