"""Metric families from the output of SSH commands: pure functions, tested without SSH.

The ``linux`` module reads ``/proc`` files with ``tail -n +1`` and ``df -P``, giving node_exporter's names;
command modules turn a command's output into the metrics their spec names.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collectors.host.options import FS_TYPES_EXCLUDE, MOUNT_POINTS_EXCLUDE
from collectors.host.options import NETDEV_DEVICE_EXCLUDE as DEVICE_EXCLUDE
from collectors.ssh import parsers
from collectors.ssh.settings import CommandModule

PROC_FILES = ("/proc/loadavg", "/proc/meminfo", "/proc/stat", "/proc/net/dev")


def proc_families(text: str, user_hz: float, netdev_device_exclude: str = DEVICE_EXCLUDE) -> list[Metric]:
    """``tail -n +1`` of PROC_FILES -> node_exporter's loadavg, meminfo, cpu, stat and netdev families."""
    sections = parsers.split_sections(text)
    missing = [f for f in PROC_FILES if f not in sections]
    if missing:
        raise parsers.ParseError(f"no output for {missing}")
    load1, load5, load15 = parsers.parse_loadavg(sections["/proc/loadavg"])
    out: list[Metric] = [
        GaugeMetricFamily("node_load1", "1m load average.", value=load1),
        GaugeMetricFamily("node_load5", "5m load average.", value=load5),
        GaugeMetricFamily("node_load15", "15m load average.", value=load15),
    ]
    for name, value in parsers.parse_meminfo(sections["/proc/meminfo"]).items():
        out.append(GaugeMetricFamily(f"node_memory_{name}", f"Memory information field {name}.", value=value))

    st = parsers.parse_stat(sections["/proc/stat"], user_hz)
    cpu = CounterMetricFamily(
        "node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"]
    )
    guest = CounterMetricFamily(
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
        labels=["cpu", "mode"],
    )
    for c, modes in st.cpu_seconds.items():
        for mode, seconds in modes.items():
            cpu.add_metric([c, mode], seconds)
    for c, modes in st.guest_seconds.items():
        for mode, seconds in modes.items():
            guest.add_metric([c, mode], seconds)
    out += [cpu, guest]
    scalars: list[tuple[str, str, float | None, bool]] = [
        ("node_boot_time_seconds", "Node boot time, in unixtime.", st.boot_time, False),
        ("node_context_switches_total", "Total number of context switches.", st.context_switches, True),
        ("node_forks_total", "Total number of forks.", st.forks, True),
        ("node_intr_total", "Total number of interrupts serviced.", st.interrupts, True),
        ("node_procs_running", "Number of processes in runnable state.", st.procs_running, False),
        (
            "node_procs_blocked",
            "Number of processes blocked waiting for I/O to complete.",
            st.procs_blocked,
            False,
        ),
    ]
    for name, doc, scalar, is_counter in scalars:
        if scalar is None:
            continue
        fam: Metric = (
            CounterMetricFamily(name, doc, value=scalar)
            if is_counter
            else GaugeMetricFamily(name, doc, value=scalar)
        )
        out.append(fam)

    net = parsers.parse_net_dev(sections["/proc/net/dev"])
    if netdev_device_exclude:
        skip = re.compile(netdev_device_exclude)
        net = {dev: v for dev, v in net.items() if not skip.match(dev)}
    for field in parsers.NET_DEV_FIELDS:
        fam_net = CounterMetricFamily(
            f"node_network_{field}_total", f"Network device statistic {field}.", labels=["device"]
        )
        for device in sorted(net):
            fam_net.add_metric([device], net[device][field])
        out.append(fam_net)
    return out


def filesystem_families(
    rows: list[parsers.DfRow],
    mount_points_exclude: str = MOUNT_POINTS_EXCLUDE,
    fs_types_exclude: str = FS_TYPES_EXCLUDE,
) -> list[Metric]:
    """``df -P`` rows -> node_exporter's filesystem families, with its (Debian) default exclusions."""
    skip_mount, skip_type = re.compile(mount_points_exclude), re.compile(fs_types_exclude)
    labels = ["device", "fstype", "mountpoint"]
    size = GaugeMetricFamily("node_filesystem_size_bytes", "Filesystem size in bytes.", labels=labels)
    free = GaugeMetricFamily("node_filesystem_free_bytes", "Filesystem free space in bytes.", labels=labels)
    avail = GaugeMetricFamily(
        "node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", labels=labels
    )
    seen: set[str] = set()
    for r in rows:
        if skip_mount.match(r.mountpoint) or (r.fstype and skip_type.match(r.fstype)):
            continue
        if r.mountpoint in seen:  # df lists a mount point once per mount; keep the first
            continue
        seen.add(r.mountpoint)
        lv = [r.device, r.fstype, r.mountpoint]
        size.add_metric(lv, r.size_bytes)
        free.add_metric(lv, r.free_bytes)
        avail.add_metric(lv, r.avail_bytes)
    return [size, free, avail]


def command_families(module: str, spec: CommandModule, text: str) -> list[Metric]:
    """A command module's output -> its metric families, as the module's metric specs say."""
    records: list[dict[str, Any]]
    if spec.parser == "number":
        number = parsers.parse_number(text)
        records = [{"": number}]
    elif spec.parser == "regex":
        records = list(parsers.parse_regex(text, spec.compiled()))
        if not records:
            raise parsers.ParseError(f"{module}: pattern matched nothing")
    elif spec.parser == "keyvalue":
        records = [dict(parsers.parse_keyvalue(text, spec.separator))]
    else:
        doc = parsers.parse_json(text)
        records = [{m.value: parsers.json_path(doc, m.value) for m in spec.metrics}]
    if len(records) > spec.max_series:
        raise parsers.ParseError(f"{module}: {len(records)} matches, more than max_series {spec.max_series}")
    out: list[Metric] = []
    for m in spec.metrics:
        names = sorted([*m.labels, *m.label_groups])
        doc_text = m.help or f"{m.name} from the ssh command module {module}."
        fam: GaugeMetricFamily | CounterMetricFamily = (
            CounterMetricFamily(m.name, doc_text, labels=names)
            if m.type == "counter"
            else GaugeMetricFamily(m.name, doc_text, labels=names)
        )
        seen: set[tuple[str, ...]] = set()
        for rec in records:
            if m.value not in rec:
                raise parsers.ParseError(f"{module}: no {m.value!r} in the output")
            value = parsers.to_number(rec[m.value], f"{module}.{m.name}")
            values = {
                **m.labels,
                **{label: str(rec.get(group, "")) for label, group in m.label_groups.items()},
            }
            lv = tuple(values[n] for n in names)
            if lv in seen:
                raise parsers.ParseError(
                    f"{module}: two matches give {m.name} the same labels {dict(zip(names, lv, strict=True))}"
                )
            seen.add(lv)
            fam.add_metric(list(lv), value)
        out.append(fam)
    return out
