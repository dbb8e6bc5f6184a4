"""/proc/mdstat: node_exporter's mdadm collector (software RAID state, disks, sync progress)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/mdstat",)
_HEAD = re.compile(r"^(md\S*)\s*:\s*(\S+)\s*(.*)$")
_STATUS = re.compile(r"(\d+) blocks.*\[(\d+)/(\d+)\]")
_BLOCKS = re.compile(r"^\s*(\d+) blocks")
_SYNC = re.compile(r"(resync|recovery|check|reshape)\s*=\s*[\d.]+%\s*\((\d+)/(\d+)\)")


@dataclass
class MD:
    name: str
    state: str
    action: str = ""
    active: int = 0
    failed: int = 0
    spare: int = 0
    required: int = 0
    blocks: float = 0.0
    synced: float = 0.0


def parse_mdstat(text: str) -> list[MD]:
    out: list[MD] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _HEAD.match(line)
        if not m:
            continue
        state = m.group(2)
        members = m.group(3).split()
        md = MD(m.group(1), "inactive" if state == "inactive" else "active")
        for word in members:
            if "[" not in word:
                continue  # raid level, "(auto-read-only)"
            if word.endswith("(F)"):
                md.failed += 1
            elif word.endswith("(S)"):
                md.spare += 1
        md.active = sum(1 for w in members if "[" in w) - md.failed - md.spare
        status = lines[i + 1] if i + 1 < len(lines) else ""
        s = _STATUS.search(status)
        if s:
            md.blocks, md.required, md.active = float(s.group(1)), int(s.group(2)), int(s.group(3))
        else:
            b = _BLOCKS.match(status)
            if b:
                md.blocks = float(b.group(1))
        md.synced = md.blocks
        for extra in lines[i + 2 : i + 4]:
            y = _SYNC.search(extra)
            if y:
                md.action = {"resync": "resync", "recovery": "recovering", "check": "check"}.get(
                    y.group(1), "resync"
                )
                md.synced = float(y.group(2))
        out.append(md)
    return out


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/mdstat")
    if text is None:
        return []
    arrays = parse_mdstat(text)
    if not arrays:
        return []
    state = GaugeMetricFamily(
        "node_md_state", "Indicates the state of md-device.", labels=["device", "state"]
    )
    disks = GaugeMetricFamily(
        "node_md_disks", "Number of active/failed/spare disks of device.", labels=["device", "state"]
    )
    required = GaugeMetricFamily(
        "node_md_disks_required", "Total number of disks of device.", labels=["device"]
    )
    blocks = GaugeMetricFamily("node_md_blocks", "Total number of blocks on device.", labels=["device"])
    synced = GaugeMetricFamily(
        "node_md_blocks_synced", "Number of blocks synced on device.", labels=["device"]
    )
    for md in arrays:
        current = md.action or md.state
        for s in ("active", "inactive", "recovering", "resync", "check"):
            state.add_metric([md.name, s], 1.0 if s == current else 0.0)
        disks.add_metric([md.name, "active"], md.active)
        disks.add_metric([md.name, "failed"], md.failed)
        disks.add_metric([md.name, "spare"], md.spare)
        required.add_metric([md.name], md.required)
        blocks.add_metric([md.name], md.blocks)
        synced.add_metric([md.name], md.synced)
    return [state, disks, required, blocks, synced]
