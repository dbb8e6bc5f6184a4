"""Host collector: this machine's CPU, memory, filesystems, disks, network, load and services.

Metric names and labels follow node_exporter 1.5 so existing dashboards work unchanged. Each part runs
in the blocking-call pool under its own deadline, so a hung NFS mount stalls only the filesystem part
(node_exporter issues #244, #2065), and reports its own success like node_exporter's
``node_scrape_collector_success``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import Field

from agent.errors import CollectError
from collectors.base import Collector, CollectorSettings, TargetConfig, time_left
from collectors.host import cpu, disk, filesystem, load, memory, network, system, systemd

PARTS: dict[str, Callable[[], list[Metric]]] = {
    "cpu": cpu.collect,
    "loadavg": load.collect,
    "meminfo": memory.collect,
    "filesystem": filesystem.collect,
    "diskstats": disk.collect,
    "netdev": network.collect,
    "system": system.collect,
}


class HostSettings(CollectorSettings):
    """``collectors.host``."""

    parts: list[str] = Field(default_factory=lambda: [*PARTS, "systemd"])
    systemd_units: list[str] = Field(default_factory=list, description="units whose state to report")
    systemctl_path: str = "systemctl"

    def model_post_init(self, _ctx: object) -> None:
        unknown = [p for p in self.parts if p not in PARTS and p != "systemd"]
        if unknown:
            raise ValueError(f"unknown host part(s) {unknown}; known: {[*PARTS, 'systemd']}")


class HostCollector(Collector):
    kind = "host"
    settings_model = HostSettings
    target_model = None
    blocking_threads = 4

    async def collect(self, target: TargetConfig | None) -> list[Metric]:
        settings = self.settings
        assert isinstance(settings, HostSettings)
        # Leave room to report: a part that overruns fails alone, the rest of the host is still served.
        budget = time_left(settings.timeout or 10.0, margin=0.1)
        calls: dict[str, Callable[[], list[Metric]]] = {p: PARTS[p] for p in settings.parts if p in PARTS}
        if "systemd" in settings.parts and settings.systemd_units:
            units, path = list(settings.systemd_units), settings.systemctl_path

            def _systemd() -> list[Metric]:
                return systemd.collect(units, path, timeout=budget)

            calls["systemd"] = _systemd
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
