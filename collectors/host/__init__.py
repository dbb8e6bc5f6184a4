"""Host collector: this machine's /proc and /sys with node_exporter's Linux collectors' names.

Each part (``collectors/host/parts``) is one node_exporter collector, on or off like its
``--collector.X`` flag, reading files through ``Files`` so fixture trees and SSH feed the same code.
The /proc and /sys parts run together in the blocking-call pool (they never hang); the filesystem
part (a hung NFS mount, node_exporter issues #244 and #2065) and systemd (a program) each run under
their own deadline, so one stalling fails alone. Each part reports ``node_scrape_collector_success``.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Annotated

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import AfterValidator, Field, field_validator

from agent.kernel.collector import Collector, CollectorSettings, Deadline, TargetConfig
from agent.kernel.errors import CollectError
from collectors.host import options
from collectors.host.files import Files
from collectors.host.options import Options
from collectors.host.registry import ALIASES, PARTS, resolve

#: parts that may block (network filesystems, a program): each gets its own thread and deadline
_APART = ("filesystem", "systemd")


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


def _known(names: list[str], what: str) -> list[str]:
    unknown = [p for p in names if p not in PARTS and p not in ALIASES]
    if unknown:
        raise ValueError(f"unknown host {what} {unknown}; known: {sorted(PARTS)}")
    return names


class HostSettings(CollectorSettings):
    """``collectors.host``."""

    parts: list[str] | None = Field(
        default=None, description="exactly these parts (node_exporter collector names); default: its defaults"
    )
    collectors: dict[str, bool] = Field(
        default_factory=dict, description="turn single parts on or off, like --collector.X / --no-collector.X"
    )
    systemd_units: list[str] = Field(
        default_factory=list, description="units whose state to report (turns the systemd part on)"
    )
    systemctl_path: str = "systemctl"
    # Defaults are Debian's node_exporter 1.5 defaults, so both report the same series.
    filesystem_mount_points_exclude: Regex = options.MOUNT_POINTS_EXCLUDE
    filesystem_fs_types_exclude: Regex = options.FS_TYPES_EXCLUDE
    diskstats_device_exclude: Regex = options.DISKSTATS_DEVICE_EXCLUDE
    netdev_device_exclude: Regex = options.NETDEV_DEVICE_EXCLUDE
    netclass_ignored_devices: Regex = options.NETCLASS_IGNORED_DEVICES
    netstat_fields: Regex = options.NETSTAT_FIELDS
    vmstat_fields: Regex = options.VMSTAT_FIELDS
    #: where /proc and /sys are read (a container with the host's mounted elsewhere, like --path.rootfs)
    root: str = "/"

    @field_validator("parts")
    @classmethod
    def _known_parts(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _known(v, "part(s)")

    @field_validator("collectors")
    @classmethod
    def _known_collectors(cls, v: dict[str, bool]) -> dict[str, bool]:
        _known(list(v), "collector(s)")
        return v

    def options(self, timeout: float = 5.0) -> Options:
        return Options(
            filesystem_mount_points_exclude=self.filesystem_mount_points_exclude,
            filesystem_fs_types_exclude=self.filesystem_fs_types_exclude,
            diskstats_device_exclude=self.diskstats_device_exclude,
            netdev_device_exclude=self.netdev_device_exclude,
            netclass_ignored_devices=self.netclass_ignored_devices,
            netstat_fields=self.netstat_fields,
            vmstat_fields=self.vmstat_fields,
            systemd_units=tuple(self.systemd_units),
            systemctl_path=self.systemctl_path,
            timeout=timeout,
        )

    def enabled_parts(self) -> list[str]:
        names = resolve(self.parts, self.collectors)
        # Listing units turns systemd on (unless parts or collectors say otherwise); without units it
        # has nothing to report and is not run (nor reported as a part).
        if self.systemd_units and self.parts is None and "systemd" not in self.collectors:
            names.append("systemd")
        return [n for n in names if n != "systemd" or self.systemd_units]


PartResult = tuple[str, list[Metric], float, bool]


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
        fs = Files(settings.root)
        opts = settings.options(timeout=budget)
        names = settings.enabled_parts()
        together = [n for n in names if n not in _APART]
        apart = [n for n in names if n in _APART]
        groups = await asyncio.gather(
            self._run(f"host/{'+'.join(together) or 'none'}", together, fs, opts, budget),
            *(self._run(f"host/{n}", [n], fs, opts, budget) for n in apart),
        )
        results = {r[0]: r for group in groups for r in group}
        duration = GaugeMetricFamily(
            "node_scrape_collector_duration_seconds",
            "node_exporter: Duration of a collector scrape.",
            labels=["collector"],
        )
        success = GaugeMetricFamily(
            "node_scrape_collector_success",
            "node_exporter: Whether a collector succeeded.",
            labels=["collector"],
        )
        out: list[Metric] = []
        for name in sorted(results):
            _, fams, took, ok = results[name]
            out.extend(fams)
            duration.add_metric([name], took)
            success.add_metric([name], 1.0 if ok else 0.0)
        return [*out, duration, success]

    async def _run(
        self, key: str, names: list[str], fs: Files, opts: Options, timeout: float
    ) -> list[PartResult]:
        if not names:
            return []
        start = time.monotonic()
        try:
            return await self.ctx.blocking.run(key, timeout, self._parts, names, fs, opts)
        except CollectError as exc:
            self.ctx.log.debug(
                "host part failed", extra={"part": key, "reason": exc.reason, "detail": exc.message}
            )
        except Exception as exc:
            self.ctx.log.debug("host part failed", extra={"part": key, "detail": repr(exc)})
        took = time.monotonic() - start
        return [(n, [], took, False) for n in names]

    def _parts(self, names: list[str], fs: Files, opts: Options) -> list[PartResult]:
        """Runs in a pool thread: each part alone, so one that breaks on odd input fails alone."""
        out: list[PartResult] = []
        for name in names:
            start = time.monotonic()
            try:
                fams = PARTS[name].collect(fs, opts)
                out.append((name, fams, time.monotonic() - start, True))
            except CollectError as exc:
                self.ctx.log.debug(
                    "host part failed", extra={"part": name, "reason": exc.reason, "detail": exc.message}
                )
                out.append((name, [], time.monotonic() - start, False))
            except Exception as exc:
                self.ctx.log.debug("host part failed", extra={"part": name, "detail": repr(exc)})
                out.append((name, [], time.monotonic() - start, False))
        return out
