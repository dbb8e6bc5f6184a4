"""Metric families from the output of SSH commands: pure functions, tested without SSH.

``df -P`` rows as node_exporter's filesystem families (the ``linux`` module's fallback where ``stat -f``
is missing, busybox; its /proc and /sys files go through the host collector's parts, ``linux.py``), and
command modules' output as the metrics their spec names.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collectors.host.options import FS_TYPES_EXCLUDE, MOUNT_POINTS_EXCLUDE
from collectors.ssh import parsers
from collectors.ssh.settings import CommandModule


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
