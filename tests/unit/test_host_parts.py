"""Host parts over a fixture tree of /proc and /sys (tests/fixtures/linux): names, labels and values
as node_exporter gives them, and hostile trees (truncated files, odd device names, missing files)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client.core import Metric

from collectors.host import HostSettings
from collectors.host.files import Files, Snapshot, parse_grep_dump
from collectors.host.options import Options
from collectors.host.registry import DEFAULT_ON, PARTS, collect_all, resolve

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "linux"


def samples(fams: list[Metric]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for f in fams for s in f.samples}


def value(fams: list[Metric], metric: str, **labels: str) -> float:
    return samples(fams)[(metric, frozenset(labels.items()))]


@pytest.fixture(scope="module")
def tree() -> list[Metric]:
    return collect_all(Files(FIXTURE), Options(), list(PARTS))


def test_stat_and_cpu(tree: list[Metric]) -> None:
    text = (FIXTURE / "proc/stat").read_text().splitlines()
    cpu0 = next(ln.split() for ln in text if ln.startswith("cpu0 "))
    assert value(tree, "node_cpu_seconds_total", cpu="0", mode="user") == int(cpu0[1]) / 100
    ctxt = next(ln.split()[1] for ln in text if ln.startswith("ctxt"))
    assert value(tree, "node_context_switches_total") == int(ctxt)
    for name in ("node_forks_total", "node_intr_total", "node_procs_running", "node_boot_time_seconds"):
        assert (name, frozenset()) in samples(tree)


def test_network_class_and_odd_device_names(tree: list[Metric]) -> None:
    assert value(tree, "node_network_up", device="eth0") == 1
    assert value(tree, "node_network_speed_bytes", device="br-lan.10") == 1000 * 125000
    info = [k for k in samples(tree) if k[0] == "node_network_info" and ("device", "br-lan.10") in k[1]]
    assert ("ifalias", 'uplink "tỉnh" = A') in info[0][1]
    # netdev: all 16 /proc/net/dev fields plus nohandler, lo excluded by Debian's default
    assert value(tree, "node_network_receive_bytes_total", device="br-lan.10") >= 0
    assert not any(
        k[0].startswith("node_network_receive_bytes") and ("device", "lo") in k[1] for k in samples(tree)
    )
    fields = {k[0] for k in samples(tree) if k[0].startswith("node_network_") and k[0].endswith("_total")}
    assert len({f for f in fields if f.startswith(("node_network_receive_", "node_network_transmit_"))}) == 17


def test_filesystem_mounts_with_escapes_and_excludes(tree: list[Metric]) -> None:
    mps = {dict(k[1])["mountpoint"] for k in samples(tree) if k[0] == "node_filesystem_device_error"}
    assert mps == {"/", "/srv/with space"}  # /proc excluded by fs type and mount point
    assert (
        value(
            tree,
            "node_filesystem_device_error",
            device="/dev/sdb1",
            fstype="xfs",
            mountpoint="/srv/with space",
        )
        == 1
    )


def test_hardware_parts(tree: list[Metric]) -> None:
    assert value(tree, "node_hwmon_temp_celsius", chip="coretemp", sensor="temp1") == 45.0
    assert value(tree, "node_hwmon_temp_crit_celsius", chip="coretemp", sensor="temp1") == 100.0
    assert value(tree, "node_hwmon_fan_rpm", chip="coretemp", sensor="fan1") == 1200
    assert value(tree, "node_hwmon_in_volts", chip="coretemp", sensor="in0") == 12.0
    assert value(tree, "node_hwmon_sensor_label", chip="coretemp", sensor="temp1", label="Package id 0") == 1
    assert value(tree, "node_thermal_zone_temp", zone="0", type="x86_pkg_temp") == 51.0
    assert value(tree, "node_cooling_device_max_state", name="0", type="Processor") == 3
    assert value(tree, "node_edac_correctable_errors_total", controller="0") == 2
    assert value(tree, "node_edac_csrow_correctable_errors_total", controller="0", csrow="0") == 2
    assert value(tree, "node_power_supply_online", power_supply="AC") == 1


def test_bonding(tree: list[Metric]) -> None:
    assert value(tree, "node_bonding_slaves", master="bond0") == 2
    assert value(tree, "node_bonding_active", master="bond0") == 1


def test_mdadm(tree: list[Metric]) -> None:
    assert value(tree, "node_md_state", device="md0", state="active") == 1
    assert value(tree, "node_md_state", device="md127", state="recovering") == 1
    assert value(tree, "node_md_state", device="md9", state="inactive") == 1
    assert value(tree, "node_md_disks", device="md127", state="failed") == 1
    assert value(tree, "node_md_disks", device="md127", state="spare") == 1
    assert value(tree, "node_md_disks_required", device="md127") == 3
    assert value(tree, "node_md_blocks_synced", device="md127") == 166182656


def test_schedstat_diskstats_and_uname(tree: list[Metric]) -> None:
    assert value(tree, "node_schedstat_timeslices_total", cpu="1") == 6349
    assert value(tree, "node_schedstat_running_seconds_total", cpu="0") == pytest.approx(2045936.778163039)
    info = [k for k in samples(tree) if k[0] == "node_disk_info"]
    assert any(("model", "QEMU HARDDISK") in k[1] and ("serial", "QM0001") in k[1] for k in info)
    assert ("node_uname_info", frozenset()) not in samples(tree)
    uname = next(dict(k[1]) for k in samples(tree) if k[0] == "node_uname_info")
    assert uname["nodename"] == "host-fixture" and uname["sysname"] == "Linux"


def test_missing_tree_gives_nothing_and_no_error(tmp_path: Path) -> None:
    # selinux says "not enabled" and time reads the clock, with or without files, as node_exporter does
    for name, part in PARTS.items():
        if name not in ("selinux", "time"):
            assert part.collect(Files(tmp_path), Options()) == [], name


def test_truncated_and_garbage_files_never_raise(tmp_path: Path) -> None:
    """Every file of the tree cut short at several points, or replaced by garbage: parts report what
    they can and never raise."""
    files = [p for p in FIXTURE.rglob("*") if p.is_file()]
    for cut in (0, 1, 7, 33, 100):
        root = tmp_path / f"cut{cut}"
        shutil.copytree(FIXTURE, root)
        for p in files:
            target = root / p.relative_to(FIXTURE)
            data = p.read_bytes()
            target.write_bytes(data[: min(len(data), cut + len(data) // 3)])
        collect_all(Files(root), Options(), list(PARTS))
    root = tmp_path / "garbage"
    shutil.copytree(FIXTURE, root)
    for p in files:
        (root / p.relative_to(FIXTURE)).write_bytes(b"\xff\xfe garbage: x y z\n{}\n0x 1 2 3\n")
    collect_all(Files(root), Options(), list(PARTS))


def test_snapshot_feeds_the_same_parts() -> None:
    """A grep dump of the tree (the SSH transport's format) gives the same families as the tree."""
    files = {"/" + str(p.relative_to(FIXTURE)): p.read_text() for p in FIXTURE.rglob("*") if p.is_file()}
    dump = b"".join(
        b"".join(f"{path}\0{line}\n".encode() for line in text.splitlines()) for path, text in files.items()
    )
    snap = Snapshot(parse_grep_dump(dump))
    names = [n for n in PARTS if n not in ("filesystem", "timex", "time", "systemd")]
    local = samples(collect_all(Files(FIXTURE), Options(), names))
    remote = samples(collect_all(snap, Options(), names))
    assert remote == local


def test_part_selection_like_node_exporter_flags() -> None:
    assert "systemd" not in DEFAULT_ON and "hwmon" in DEFAULT_ON
    assert "hwmon" not in resolve(None, {"hwmon": False})
    assert resolve(["loadavg", "system"], {}) == ["loadavg", "stat", "time", "uname"]
    assert (
        HostSettings(collectors={"systemd": True}, systemd_units=["a.service"]).enabled_parts()[-1]
        == "systemd"
    )
    with pytest.raises(ValueError, match="unknown host collector"):
        HostSettings(collectors={"gpu": True})


def test_filters_follow_options(tree: list[Metric]) -> None:
    fams = collect_all(
        Files(FIXTURE),
        Options(vmstat_fields="^nr_free_pages$", netstat_fields="^Tcp_.*"),
        ["vmstat", "netstat"],
    )
    names = {f.name for f in fams}
    assert names == {"node_vmstat_nr_free_pages"} | {n for n in names if n.startswith("node_netstat_Tcp_")}
    assert all(f.type == "unknown" for f in fams)
