"""Host collector: this machine's CPU, memory, filesystems, disks, network, load and services.

Metric names and labels follow node_exporter 1.5 so existing dashboards work unchanged. Each part runs
in the blocking-call pool under its own deadline, so a hung NFS mount stalls only the filesystem part
(node_exporter issues #244, #2065), and reports its own success like node_exporter's
``node_scrape_collector_success``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Annotated

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import AfterValidator, Field, field_validator

from agent.kernel.collector import Collector, CollectorSettings, Deadline, TargetConfig
from agent.kernel.errors import CollectError
from collectors.host import cpu, disk, filesystem, load, memory, network, system, systemd

PARTS = ("cpu", "loadavg", "meminfo", "filesystem", "diskstats", "netdev", "system", "systemd")


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


class HostSettings(CollectorSettings):
    """``collectors.host``."""

    parts: list[str] = Field(default_factory=lambda: list(PARTS))
    systemd_units: list[str] = Field(default_factory=list, description="units whose state to report")
    systemctl_path: str = "systemctl"
    # Defaults are Debian's node_exporter 1.5 defaults, so both report the same series.
    filesystem_mount_points_exclude: Regex = filesystem.MOUNT_POINTS_EXCLUDE
    filesystem_fs_types_exclude: Regex = filesystem.FS_TYPES_EXCLUDE
    diskstats_device_exclude: Regex = disk.DEVICE_EXCLUDE
    netdev_device_exclude: Regex = network.DEVICE_EXCLUDE

    @field_validator("parts")
    @classmethod
    def _known_parts(cls, v: list[str]) -> list[str]:
        unknown = [p for p in v if p not in PARTS]
        if unknown:
            raise ValueError(f"unknown host part(s) {unknown}; known: {list(PARTS)}")
        return v


class HostCollector(Collector):
    kind = "host"
    settings_model = HostSettings
    target_model = None
    blocking_threads = 4

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        settings = self.settings
        assert isinstance(settings, HostSettings)
        # Leave room to report: a part that overruns fails alone, the rest of the host is still served.
        budget = deadline.left(margin=0.1)
        s = settings
        available: dict[str, Callable[[], list[Metric]]] = {
            "cpu": cpu.collect,
            "loadavg": load.collect,
            "meminfo": memory.collect,
            "filesystem": lambda: filesystem.collect(
                s.filesystem_mount_points_exclude, s.filesystem_fs_types_exclude
            ),
            "diskstats": lambda: disk.collect(s.diskstats_device_exclude),
            "netdev": lambda: network.collect(s.netdev_device_exclude),
            "system": system.collect,
        }
        if s.systemd_units:
            available["systemd"] = lambda: systemd.collect(
                list(s.systemd_units), s.systemctl_path, timeout=budget
            )
        calls = {p: available[p] for p in s.parts if p in available}
        names = list(calls)
        results = await asyncio.gather(*(self._part(n, calls[n], budget) for n in names))
        duration = GaugeMetricFamily(
            "node_scrape_collector_duration_seconds",
            "Duration of a host collector part.",
            labels=["collector"],
        )
        success = GaugeMetricFamily(
            "node_scrape_collector_success", "Whether a host collector part succeeded.", labels=["collector"]
        )
        out: list[Metric] = []
        for name, (fams, took, ok) in zip(names, results, strict=True):
            out.extend(fams)
            duration.add_metric([name], took)
            success.add_metric([name], 1.0 if ok else 0.0)
        return [*out, duration, success]

    async def _part(
        self, name: str, fn: Callable[[], list[Metric]], timeout: float
    ) -> tuple[list[Metric], float, bool]:
        start = time.monotonic()
        try:
            fams = await self.ctx.blocking.run(f"host/{name}", timeout, fn)
            return fams, time.monotonic() - start, True
        except CollectError as exc:
            self.ctx.log.debug(
                "host part failed", extra={"part": name, "reason": exc.reason, "detail": exc.message}
            )
        except Exception as exc:
            self.ctx.log.debug("host part failed", extra={"part": name, "detail": repr(exc)})
        return [], time.monotonic() - start, False
