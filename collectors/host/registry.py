"""The host parts by node_exporter collector name, in one table, with which are on by default."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.core import Metric

from collectors.host.files import Files
from collectors.host.options import Options
from collectors.host.parts import (
    arp,
    bonding,
    conntrack,
    diskstats,
    edac,
    entropy,
    filefd,
    filesystem,
    hwmon,
    loadavg,
    mdadm,
    meminfo,
    netclass,
    netdev,
    netstat,
    os_release,
    power_supply,
    pressure,
    schedstat,
    selinux,
    sockstat,
    softnet,
    stat,
    systemd,
    thermal_zone,
    time,
    timex,
    udp_queues,
    uname,
    vmstat,
)  # fmt: skip


@dataclass(frozen=True)
class Part:
    name: str
    collect: Callable[[Files, Options], list[Metric]]
    #: files and directories it reads (globs), copied from a remote host by the SSH transport
    paths: tuple[str, ...]
    default_on: bool = True


PARTS: dict[str, Part] = {
    p.name: p
    for p in (
        Part("arp", arp.collect, arp.PATHS),
        Part("bonding", bonding.collect, bonding.PATHS),
        Part("conntrack", conntrack.collect, conntrack.PATHS),
        Part("cpu", stat.collect_cpu, stat.PATHS),
        Part("diskstats", diskstats.collect, diskstats.PATHS),
        Part("edac", edac.collect, edac.PATHS),
        Part("entropy", entropy.collect, entropy.PATHS),
        Part("filefd", filefd.collect, filefd.PATHS),
        Part("filesystem", filesystem.collect, filesystem.PATHS),
        Part("hwmon", hwmon.collect, hwmon.PATHS),
        Part("loadavg", loadavg.collect, loadavg.PATHS),
        Part("mdadm", mdadm.collect, mdadm.PATHS),
        Part("meminfo", meminfo.collect, meminfo.PATHS),
        Part("netclass", netclass.collect, netclass.PATHS),
        Part("netdev", netdev.collect, netdev.PATHS),
        Part("netstat", netstat.collect, netstat.PATHS),
        Part("os", os_release.collect, os_release.PATHS),
        Part("powersupplyclass", power_supply.collect, power_supply.PATHS),
        Part("pressure", pressure.collect, pressure.PATHS),
        Part("schedstat", schedstat.collect, schedstat.PATHS),
        Part("selinux", selinux.collect, selinux.PATHS),
        Part("sockstat", sockstat.collect, sockstat.PATHS),
        Part("softnet", softnet.collect, softnet.PATHS),
        Part("stat", stat.collect_stat, stat.PATHS),
        Part("systemd", systemd.collect, systemd.PATHS, default_on=False),
        Part("thermal_zone", thermal_zone.collect, thermal_zone.PATHS),
        Part("time", time.collect, time.PATHS),
        Part("timex", timex.collect, timex.PATHS),
        Part("udp_queues", udp_queues.collect, udp_queues.PATHS),
        Part("uname", uname.collect, uname.PATHS),
        Part("vmstat", vmstat.collect, vmstat.PATHS),
    )
}
DEFAULT_ON = tuple(n for n, p in PARTS.items() if p.default_on)
#: older part names still accepted in ``parts``
ALIASES = {"system": ("stat", "time", "uname")}


def resolve(parts: list[str] | None, toggles: dict[str, bool]) -> list[str]:
    """The parts to run: ``parts`` (or the defaults), then each ``collectors: {name: bool}`` applied."""
    chosen: list[str] = []
    for name in parts if parts is not None else DEFAULT_ON:
        for n in ALIASES.get(name, (name,)):
            if n not in chosen:
                chosen.append(n)
    for name, on in toggles.items():
        if on and name not in chosen:
            chosen.append(name)
        elif not on and name in chosen:
            chosen.remove(name)
    return chosen


def collect_all(fs: Files, opts: Options, names: list[str]) -> list[Metric]:
    """Every named part in turn (the SSH transport: one snapshot, every part fed from it)."""
    out: list[Metric] = []
    for n in names:
        out += PARTS[n].collect(fs, opts)
    return out
