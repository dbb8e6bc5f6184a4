"""Shared measurement helpers for the benchmarks: process CPU and RSS from /proc, machine load, percentiles,
ports."""

from __future__ import annotations

import os
import resource
import socket
import statistics
import time
from dataclasses import dataclass
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


def _busy_jiffies() -> int:
    """CPU time of the whole machine in processes (all cores), in clock ticks. Interrupt time is left
    out: on loopback the kernel answers a tool's echoes in softirq time that is not charged to the
    tool, and would count as other processes' load."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + steal


def _own_cpu() -> float:
    """CPU seconds of this process and of its reaped children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Load:
    """How busy the machine was around one measurement: its 1-minute load average at the start and the
    share of all cores that other processes used meanwhile (the machine's busy time minus this process
    and the children it reaped: measure children that are waited for inside the span)."""

    loadavg: float
    others: float  # 0..1 of all cores
    wall: float

    def busy(self, max_load: float, max_others: float) -> bool:
        return self.loadavg > max_load or self.others > max_others

    def text(self) -> str:
        return f"load {self.loadavg:.1f}, others {self.others * 100:.0f} %"


class LoadMeter:
    """``with LoadMeter() as m: ...``, then ``m.load``; extra CPU of processes that this one did not reap
    (a server it scraped) is subtracted with ``exclude(seconds)``."""

    def __enter__(self) -> LoadMeter:
        self._load = os.getloadavg()[0]
        self._excluded = 0.0
        self._busy0, self._own0, self._t0 = _busy_jiffies(), _own_cpu(), time.monotonic()
        return self

    def exclude(self, cpu_seconds: float) -> None:
        self._excluded += cpu_seconds

    def __exit__(self, *_exc: object) -> None:
        wall = time.monotonic() - self._t0
        busy = (_busy_jiffies() - self._busy0) / CLK_TCK
        own = _own_cpu() - self._own0 + self._excluded
        cores = os.cpu_count() or 1
        others = max(0.0, busy - own) / (wall * cores) if wall > 0 else 0.0
        self.load = Load(self._load, min(1.0, others), wall)


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
