"""The .deb under a real systemd: installed with apt into a booted Debian 12 container, then exercised.

`systemd-analyze` on the unit file (tests/integration/test_systemd_unit.py) only analyses the sandbox;
here the shipped package, with the shipped unit and configuration, runs under systemd as PID 1 of a
systemd-nspawn container: Type=notify, the watchdog, CAP_NET_RAW inside the sandbox, reload, the state
directory, the journal, and the package's install, upgrade, remove and purge.

The tests run in order on one container and build on each other (install, upgrade, run, remove,
purge). Timing figures are printed (pytest -s, or the captured output of a failure), never asserted.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system import debroot
from tests.system.nspawn import Container

pytestmark = [pytest.mark.root, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
FIGURES: dict[str, str] = {}
PORT = 9469
# A TCP listener that never answers: the HTTP probe to it takes its whole timeout, so the first
# collection round (and READY=1) comes only after that.
BLACKHOLE_UNIT = """\
[Unit]
Description=a listener that accepts and never answers (test fixture)
[Service]
ExecStart=/usr/bin/python3 -c "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 18080)); s.listen(64); time.sleep(86400)"
"""
TARGETS = """
targets:
  icmp:
    - {name: loopback, site: this-site, address: 127.0.0.1}
  http:
    - {name: slow, site: this-site, url: "http://127.0.0.1:18080/", timeout: 3s}
"""
SHIPPED_CONFIG = (REPO / "deploy" / "giamsat.yml").read_text()
# The operator's edit: the state of this machine's services, and targets.
EDITED_CONFIG = (
    re.sub(
        r"^  host: \{\}.*$",
        "  host:\n    systemd_units: [giamsat.service, blackhole.service]",
        SHIPPED_CONFIG,
        count=1,
        flags=re.M,
    )
    + TARGETS
)


def figure(name: str, value: str) -> None:
    FIGURES[name] = value
    print(f"figure: {name}: {value}")


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(previous, current): `make deb`, then the same wheel set as an older package version."""
    out = tmp_path_factory.mktemp("deb")
    t0 = time.monotonic()
    r = subprocess.run(
        ["make", "-s", "deb", f"BUILD={out / 'build'}", f"DIST={out / 'dist'}", f"PYTHON={sys.executable}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (current,) = (out / "dist").glob("giamsat_*.deb")
    figure("make deb (wheels and package)", f"{time.monotonic() - t0:.1f} s")
    (wheel,) = (out / "build" / "wheels").glob("giamsat_agent-*.whl")
    version = wheel.name.split("-")[1]
    deb_version = deb_field(current, "Version")
    r = subprocess.run(
        [
            "bash",
            str(REPO / "deploy/debian/build-deb.sh"),
            "--wheels",
            str(out / "build" / "wheels"),
            "--version",
            version,
            "--deb-version",
            f"{deb_version}~prev1",
            "--python",
            sys.executable,
            "--out",
            str(out / "prev"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (previous,) = (out / "prev").glob("giamsat_*.deb")
    return previous, current


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, debs: tuple[Path, Path]) -> Iterator[Container]:
    t0 = time.monotonic()
    root, built = debroot.pristine_root()
    if built is not None:
        figure("debootstrap of the cached root (cold cache)", f"{built:.0f} s")
    c = Container(root, tmp_path_factory.mktemp("nspawn"))
    try:
        figure("container boot", f"{c.boot():.1f} s")
        for deb in debs:
            shutil.copy(deb, c.root / "root" / deb.name)
        c.write("/etc/systemd/system/blackhole.service", BLACKHOLE_UNIT)
        c.run("systemctl daemon-reload && systemctl start blackhole.service")
        figure("container ready (root, boot, fixtures)", f"{time.monotonic() - t0:.1f} s")
        yield c
    finally:
        c.stop()
        print("\n".join(f"figure: {k}: {v}" for k, v in FIGURES.items()))


def http_get(box: Container, path: str, timeout: float = 10) -> tuple[int, str]:
    """GET http://127.0.0.1:9469<path> from inside the container: (status, body); status 0: no answer."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    r = urllib.request.urlopen('http://127.0.0.1:{PORT}{path}', timeout={timeout})\n"
        "    print(r.status); sys.stdout.write(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
        "except OSError:\n"
        "    print(0)\n"
    )
    out = box.run(f"python3 -c {shlex.quote(script)}", timeout=timeout + 10).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def metrics(box: Container) -> str:
    status, body = http_get(box, "/metrics")
    assert status == 200, status
    return body


def sample(text: str, metric: str, /, **labels: str) -> float | None:
    for line in text.splitlines():
        m = re.match(rf"{re.escape(metric)}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            return float(m.group(2))
    return None


def wait_for(what: str, check: object, timeout: float, interval: float = 0.5) -> float:
    """Poll ``check()`` until true; return the seconds it took."""
    t0 = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - t0


def show(box: Container, prop: str) -> str:
    return box.out(f"systemctl show -P {prop} giamsat.service")


def journal(box: Container) -> list[str]:
    """What the agent itself wrote to the journal during this boot."""
    return box.out("journalctl -b _SYSTEMD_UNIT=giamsat.service -o cat --no-pager").splitlines()


def main_pid(box: Container) -> int:
    return int(show(box, "MainPID"))


# --- the package --------------------------------------------------------------------------------------


def test_lintian_is_clean(debs: tuple[Path, Path]) -> None:
    """No error or warning; every override in the package carries its reason."""
    current = debs[1]
    r = subprocess.run(
        ["lintian", "--fail-on", "error,warning", "--info", str(current)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert not re.search(r"^[EW]: ", r.stdout, re.M), r.stdout
    assert "unused-override" not in r.stdout and "mismatched-override" not in r.stdout, r.stdout
    figure(".deb size", f"{current.stat().st_size / 2**20:.1f} MiB ({current.name})")
    figure("installed size", f"{int(deb_field(current, 'Installed-Size')) / 1024:.1f} MiB")


def test_the_packaged_unit_is_the_shipped_one(debs: tuple[Path, Path], tmp_path: Path) -> None:
    """Only the program's and the docs' paths differ from deploy/systemd/giamsat.service."""
    subprocess.run(["dpkg-deb", "-x", str(debs[1]), str(tmp_path)], check=True)
    packaged = (tmp_path / "lib/systemd/system/giamsat.service").read_text().splitlines()
    shipped = (REPO / "deploy/systemd/giamsat.service").read_text().splitlines()
    assert len(packaged) == len(shipped)
    differ = [(a, b) for a, b in zip(shipped, packaged, strict=True) if a != b]
    for a, b in differ:
        assert a.startswith(("ExecStart=", "Documentation=", "# Installed by")), (a, b)
    assert "ExecStart=/usr/lib/giamsat/bin/giamsat run --config.file=/etc/giamsat/giamsat.yml" in packaged
    assert (tmp_path / "etc/giamsat/giamsat.yml").read_text() == SHIPPED_CONFIG


# --- install and upgrade ------------------------------------------------------------------------------


def test_apt_install_offline_creates_user_and_files_and_starts_the_service(
    box: Container, debs: tuple[Path, Path]
) -> None:
    previous = debs[0]
    t0 = time.monotonic()
    r = box.run(f"apt-get install -y --no-install-recommends /root/{previous.name}", timeout=300)
    ready = wait_for("/-/ready", lambda: http_get(box, "/-/ready")[0] == 200, 60)
    figure(
        "apt install -> /-/ready",
        f"{time.monotonic() - t0:.1f} s (of which after apt returned: {ready:.1f} s)",
    )
    assert "giamsat:" not in r.stderr, r.stderr  # no complaint from the maintainer scripts
    assert box.out("systemctl is-enabled giamsat") == "enabled"
    assert box.out("systemctl is-active giamsat") == "active"
    assert box.out("dpkg-query -W -f '${Version}' giamsat") == deb_field(previous, "Version")

    user = box.out("getent passwd giamsat").split(":")
    assert user[5:] == ["/var/lib/giamsat", "/usr/sbin/nologin"]
    assert int(user[2]) < 1000  # a system user
    modes = box.out(
        "stat -c '%n %U:%G %a' /etc/giamsat /etc/giamsat/giamsat.yml /etc/giamsat/web-config.example.yml "
        "/etc/giamsat/secrets /var/lib/giamsat"
    ).splitlines()
    assert modes == [
        "/etc/giamsat root:giamsat 750",
        "/etc/giamsat/giamsat.yml root:giamsat 640",
        "/etc/giamsat/web-config.example.yml root:giamsat 640",
        "/etc/giamsat/secrets root:giamsat 750",
        "/var/lib/giamsat giamsat:giamsat 750",
    ]
    assert box.out("command -v giamsat") == "/usr/bin/giamsat"
    assert "OK" in box.out("giamsat check-config /etc/giamsat/giamsat.yml")
    assert box.out("runuser -u giamsat -- giamsat --version")
    for path in (
        "/usr/share/giamsat/prometheus/rules/giamsat.rules.yml",
        "/usr/share/giamsat/prometheus/alertmanager.example.yml",
        "/usr/share/giamsat/grafana/dashboards/province-overview.json",
        "/usr/share/doc/giamsat/copyright",
        "/usr/share/doc/giamsat/deploy.md.gz",
        "/usr/share/doc/giamsat/examples/example.yml",
        "/usr/share/man/man1/giamsat.1.gz",
    ):
        box.run(f"test -s {path}")
    # The postinst compiled the tree for the Python that runs it.
    box.run("test -n \"$(find /usr/lib/giamsat/lib -name '*.cpython-3*.pyc' -print -quit)\"")


def test_upgrade_keeps_the_edited_conffile_and_restarts_the_service(
    box: Container, debs: tuple[Path, Path]
) -> None:
    previous, current = debs
    box.write("/etc/giamsat/giamsat.yml", EDITED_CONFIG)  # the operator's edit
    before = main_pid(box)
    t0 = time.monotonic()
    r = box.run(f"apt-get install -y --no-install-recommends /root/{current.name}", timeout=300)
    figure("apt upgrade (with restart)", f"{time.monotonic() - t0:.1f} s")
    assert (
        f"Unpacking giamsat ({deb_field(current, 'Version')}) over ({deb_field(previous, 'Version')})"
        in r.stdout
    )
    assert box.read("/etc/giamsat/giamsat.yml") == EDITED_CONFIG
    assert box.out("ls /etc/giamsat") == "giamsat.yml\nsecrets\nweb-config.example.yml"  # no .dpkg-* files
    assert box.out("systemctl is-active giamsat") == "active"
    after = main_pid(box)
    assert after not in (0, before)
    # The restarted agent runs the edited configuration.
    assert sample(metrics(box), "probe_success", target="loopback") is not None


# --- the service under systemd ------------------------------------------------------------------------


def test_start_returns_only_after_ready(box: Container) -> None:
    """With Type=notify, `systemctl start` waits for READY=1, which the agent sends after its first round:
    when start returns the unit is active and the first scrape already has every target's result,
    including the one that takes its whole 3 s timeout."""
    box.run("systemctl stop giamsat")
    t0 = time.monotonic()
    box.run("systemctl start giamsat")
    figure("systemctl start (first round includes a 3 s timeout)", f"{time.monotonic() - t0:.1f} s")
    assert show(box, "ActiveState") == "active" and show(box, "SubState") == "running"
    text = metrics(box)
    assert sample(text, "probe_success", target="slow") == 0
    assert sample(text, "probe_success", target="loopback") == 1


def test_icmp_works_under_the_sandbox_with_the_units_capability(box: Container) -> None:
    # ICMP datagram sockets are off in the container: only CAP_NET_RAW makes the probe work.
    assert box.out("cat /proc/sys/net/ipv4/ping_group_range").split() == ["1", "0"]
    status = box.out(f"cat /proc/{main_pid(box)}/status")
    caps = {k: int(v, 16) for k, v in re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M)}
    cap_net_raw = 1 << 13
    assert caps["CapBnd"] == cap_net_raw
    assert caps["CapAmb"] == cap_net_raw and caps["CapEff"] == cap_net_raw
    opened = [line for line in journal(box) if "ICMP sockets open" in line]
    assert opened and "mode=raw" in opened[-1]
    text = metrics(box)
    assert sample(text, "probe_success", target="loopback") == 1


def test_host_collector_works_under_the_sandbox(box: Container) -> None:
    text = metrics(box)
    parts = re.findall(r'^node_scrape_collector_success\{collector="([^"]+)"[^}]*\} (\S+)$', text, re.M)
    assert parts, "no host collector parts"
    assert [p for p, v in parts if float(v) != 1] == []
    assert {"cpu", "meminfo", "filesystem", "netdev", "timex"} <= {p for p, _ in parts}
    assert sample(text, "node_memory_MemTotal_bytes") is not None
    # adjtimex() read-only: allowed by the unit's SystemCallFilter (ProtectClock=yes would refuse it).
    assert sample(text, "node_timex_sync_status") is not None
    # `systemctl show` run by the agent, as giamsat, through D-Bus, from inside the sandbox.
    assert sample(text, "node_systemd_unit_state", name="blackhole.service", state="active") == 1


def test_reload_applies_a_changed_config_and_keeps_the_old_one_on_a_bad_one(box: Container) -> None:
    pid = main_pid(box)
    changed = EDITED_CONFIG + (
        f"  tcp:\n    - {{name: agent-port, site: this-site, address: 127.0.0.1, port: {PORT}}}\n"
    )
    box.write("/etc/giamsat/giamsat.yml", changed)
    box.run("systemctl reload giamsat")
    took = wait_for(
        "the reloaded target", lambda: sample(metrics(box), "probe_success", target="agent-port") == 1, 60
    )
    figure("systemctl reload -> new target collected", f"{took:.1f} s")
    assert main_pid(box) == pid
    assert sample(metrics(box), "giamsat_config_last_reload_successful") == 1

    box.write("/etc/giamsat/giamsat.yml", changed + "  bogus_collector: []\n")
    box.run("systemctl reload giamsat")
    wait_for(
        "the rejected reload", lambda: sample(metrics(box), "giamsat_config_last_reload_successful") == 0, 30
    )
    assert show(box, "ActiveState") == "active" and main_pid(box) == pid
    assert sample(metrics(box), "probe_success", target="agent-port") == 1  # the old config runs on
    assert any("reload rejected" in line for line in journal(box))

    box.write("/etc/giamsat/giamsat.yml", EDITED_CONFIG)
    box.run("systemctl reload giamsat")
    wait_for(
        "the good reload", lambda: sample(metrics(box), "giamsat_config_last_reload_successful") == 1, 30
    )


def test_state_directory_survives_a_restart(box: Container) -> None:
    box.run("runuser -u giamsat -- sh -c 'echo kept > /var/lib/giamsat/marker'")
    before = set(box.out("ls /var/lib/giamsat").split())
    assert before - {"marker"}, "the agent keeps no state"
    box.run("systemctl restart giamsat")
    assert box.out("cat /var/lib/giamsat/marker") == "kept"
    assert before <= set(box.out("ls /var/lib/giamsat").split())
    assert box.out("stat -c '%U:%G %a' /var/lib/giamsat") == "giamsat:giamsat 750"


def test_journal_holds_structured_lines_and_no_traceback(box: Container) -> None:
    lines = journal(box)
    assert len(lines) > 5
    unstructured = [
        line
        for line in lines
        if not re.match(r"ts=\S+ level=(debug|info|warning|error) logger=\S+ msg=", line)
    ]
    assert unstructured == []
    assert not [line for line in lines if "Traceback" in line]
    assert any('msg="giamsat started"' in line for line in lines)


def test_systemd_analyze_security_at_most_2(box: Container) -> None:
    out = box.out("systemd-analyze security giamsat.service --no-pager")
    m = re.search(r"Overall exposure level for giamsat\.service: (\d+\.\d)", out)
    assert m is not None, out
    figure("systemd-analyze security (running container)", m.group(1))
    assert float(m.group(1)) <= 2.0


def test_watchdog_kills_a_wedged_agent_and_restart_brings_it_back(box: Container) -> None:
    """The shipped WatchdogSec, as it is: SIGSTOP freezes the event loop, so WATCHDOG=1 stops."""
    watchdog = show(box, "WatchdogUSec")
    restarts = int(show(box, "NRestarts"))
    pid = main_pid(box)
    since = box.out("date +%s")
    box.run(f"kill -STOP {pid}")
    t0 = time.monotonic()
    wait_for(
        "the watchdog restart",
        lambda: main_pid(box) not in (0, pid) and show(box, "ActiveState") == "active",
        240,
        1,
    )
    figure(f"watchdog (WatchdogSec={watchdog}): SIGSTOP -> active again", f"{time.monotonic() - t0:.1f} s")
    assert int(show(box, "NRestarts")) == restarts + 1
    log = box.out(f"journalctl -u giamsat --since @{since} -o cat --no-pager")
    assert "Watchdog timeout" in log, log
    assert http_get(box, "/-/ready")[0] == 200


# --- remove and purge ---------------------------------------------------------------------------------


def test_remove_stops_the_service_and_keeps_config_state_and_user(box: Container) -> None:
    box.run("apt-get remove -y giamsat", timeout=300)
    assert box.run("systemctl is-active giamsat", check=False).stdout.strip() in ("inactive", "unknown")
    assert box.out("dpkg-query -W -f '${db:Status-Abbrev}' giamsat").strip() == "rc"
    box.run(
        "test ! -e /usr/lib/giamsat && test ! -e /usr/bin/giamsat && test ! -e /lib/systemd/system/giamsat.service"
    )
    assert box.read("/etc/giamsat/giamsat.yml") == EDITED_CONFIG
    assert box.out("cat /var/lib/giamsat/marker") == "kept"
    box.run("getent passwd giamsat")


def test_purge_removes_config_state_and_user(box: Container) -> None:
    box.run("apt-get purge -y giamsat", timeout=300)
    box.run("test ! -e /etc/giamsat && test ! -e /var/lib/giamsat")
    assert box.run("getent passwd giamsat", check=False).returncode == 2
    assert box.run("getent group giamsat", check=False).returncode == 2
    assert "giamsat" not in box.out("dpkg-statoverride --list")
    assert box.run("dpkg-query -W giamsat", check=False).returncode != 0
    box.run("test -z \"$(find /etc/systemd /var/lib/systemd -name 'giamsat*')\"")


def test_install_after_purge_starts_afresh(box: Container, debs: tuple[Path, Path]) -> None:
    box.run(f"apt-get install -y --no-install-recommends /root/{debs[1].name}", timeout=300)
    assert box.out("systemctl is-active giamsat") == "active"
    assert box.read("/etc/giamsat/giamsat.yml") == SHIPPED_CONFIG
