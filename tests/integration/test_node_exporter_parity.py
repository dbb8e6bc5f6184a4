"""The host collector agrees with node_exporter 1.5 (Debian's prometheus-node-exporter) run side by side.

Counters are checked by sandwiching: node_exporter is scraped just before and just after giamsat
collects, and giamsat's value must lie between the two. Static figures must be equal.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.kernel.collector import BlockingRunner, CollectorContext
from agent.kernel.results import JobResult
from collectors.host import HostCollector, HostSettings
from exporters.exposition import render_text
from tests.helpers import collect_once, free_port, http_get, stop_process, wait_for

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def series(
    data: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, *keep: str
) -> dict[tuple[str, ...], float]:
    """name's samples keyed by the values of the ``keep`` labels."""
    out = {}
    for (n, labels), v in data.items():
        if n == name:
            d = dict(labels)
            out[tuple(d.get(k, "") for k in keep)] = v
    return out


@pytest.fixture(scope="module")
def node_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--no-collector.systemd"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: http_get(url)[0] == 200, 15, what="node_exporter")
        yield url
    finally:
        stop_process(proc)


async def giamsat_host() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    ctx = CollectorContext("host", Path("/nonexistent"), BlockingRunner("parity", 4))
    collector = HostCollector(HostSettings(), ctx)
    fams = await collect_once(collector, None)
    ctx.blocking.shutdown()
    r = JobResult("host", "host", None, None, tuple(fams), time.time(), 0.0, True)
    return parse(render_text([r], [], 1024)[0].decode())


@pytest.fixture
async def sandwich(node_exporter: str) -> tuple[dict, dict, dict]:  # type: ignore[type-arg]
    before = parse(http_get(node_exporter)[1])
    ours = await giamsat_host()
    after = parse(http_get(node_exporter)[1])
    return before, ours, after


def assert_between(
    name: str, keys: tuple[str, ...], before: dict, ours: dict, after: dict, slack: float = 0.0
) -> None:  # type: ignore[type-arg]
    b, o, a = series(before, name, *keys), series(ours, name, *keys), series(after, name, *keys)
    assert o, f"giamsat has no {name}"
    assert set(o) == set(b) == set(a), (
        f"{name}: label sets differ: giamsat {sorted(o)} vs node_exporter {sorted(b)}"
    )
    for k, v in o.items():
        assert b[k] - slack <= v <= a[k] + slack, f"{name}{k}: {v} not within [{b[k]}, {a[k]}]"


async def test_cpu_seconds_agree(sandwich: tuple[dict, dict, dict]) -> None:  # type: ignore[type-arg]
    # /proc/stat ticks are 10 ms; node_exporter and psutil read the same counters.
    assert_between("node_cpu_seconds_total", ("cpu", "mode"), *sandwich, slack=0.011)


async def test_network_counters_agree(sandwich: tuple[dict, dict, dict]) -> None:  # type: ignore[type-arg]
    for name in (
        "node_network_receive_bytes_total",
        "node_network_transmit_packets_total",
        "node_network_receive_drop_total",
    ):
        assert_between(name, ("device",), *sandwich)


async def test_disk_counters_agree(sandwich: tuple[dict, dict, dict]) -> None:  # type: ignore[type-arg]
    before, ours, _after = sandwich
    if not series(before, "node_disk_reads_completed_total", "device"):
        # node_exporter reports no disks where /proc/diskstats has only excluded devices; neither may we.
        assert not series(ours, "node_disk_reads_completed_total", "device")
        return
    for name in (
        "node_disk_reads_completed_total",
        "node_disk_written_bytes_total",
        "node_disk_io_time_seconds_total",
    ):
        assert_between(name, ("device",), *sandwich, slack=0.001)


async def test_memory_and_static_figures_agree(sandwich: tuple[dict, dict, dict]) -> None:  # type: ignore[type-arg]
    before, ours, after = sandwich
    for name in ("node_memory_MemTotal_bytes", "node_memory_SwapTotal_bytes", "node_boot_time_seconds"):
        assert series(ours, name) == series(before, name) == series(after, name), name
    for name in (
        "node_memory_MemAvailable_bytes",
        "node_memory_Cached_bytes",
        "node_memory_MemFree_bytes",
        "node_memory_Buffers_bytes",
    ):
        lo = min(series(before, name)[()], series(after, name)[()])
        hi = max(series(before, name)[()], series(after, name)[()])
        assert lo - 64 * 2**20 <= series(ours, name)[()] <= hi + 64 * 2**20, name
    ne_mem = {n for (n, _l) in before if n.startswith("node_memory_")}
    our_mem = {n for (n, _l) in ours if n.startswith("node_memory_")}
    assert ne_mem == our_mem
    uname_keys = ("sysname", "release", "version", "machine", "nodename", "domainname")
    assert series(ours, "node_uname_info", *uname_keys) == series(before, "node_uname_info", *uname_keys)
    assert abs(series(ours, "node_time_seconds")[()] - series(before, "node_time_seconds")[()]) < 5


async def test_filesystems_agree(sandwich: tuple[dict, dict, dict]) -> None:  # type: ignore[type-arg]
    before, ours, _after = sandwich
    keys = ("device", "fstype", "mountpoint")
    for name in ("node_filesystem_size_bytes", "node_filesystem_files", "node_filesystem_readonly"):
        assert series(ours, name, *keys) == series(before, name, *keys), name
    ne_avail, our_avail = (
        series(before, "node_filesystem_avail_bytes", *keys),
        series(ours, "node_filesystem_avail_bytes", *keys),
    )
    assert set(ne_avail) == set(our_avail)
    for k, v in our_avail.items():
        assert abs(v - ne_avail[k]) <= 256 * 2**20, k


async def test_load_average_agrees(sandwich: tuple[dict, dict, dict]) -> None:  # type: ignore[type-arg]
    before, ours, after = sandwich
    for name in ("node_load1", "node_load5", "node_load15"):
        lo = min(series(before, name)[()], series(after, name)[()])
        hi = max(series(before, name)[()], series(after, name)[()])
        assert lo - 0.5 <= series(ours, name)[()] <= hi + 0.5
