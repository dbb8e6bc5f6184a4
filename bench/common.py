"""Shared measurement helpers for the benchmarks: process CPU and RSS from /proc, percentiles, ports."""

from __future__ import annotations

import os
import socket
import statistics
from pathlib import Path

from prometheus_client.core import Metric

from agent.kernel.collector import Collector, Deadline, TargetConfig

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def update_section(doc: Path, title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section of a Markdown file, keeping the other sections."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    header = f"## {title}\n"
    start = text.find(header)
    block = header + "\n" + body.strip() + "\n\n"
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        end = text.find("\n## ", start + len(header))
        text = text[:start] + block + (text[end + 1 :] if end != -1 else "")
    doc.write_text(text, encoding="utf-8")


async def collect_once(collector: Collector, target: TargetConfig | None) -> list[Metric]:
    """One ``collect`` with the deadline the scheduler would hand it (target's, collector's or 10 s)."""
    timeout = (target.timeout if target is not None else None) or collector.settings.timeout or 10.0
    return await collector.collect(target, Deadline.after(timeout))
