"""The host collector agrees with node_exporter 1.5 (Debian's prometheus-node-exporter) run side by side.

node_exporter is scraped just before and just after giamsat collects. For every family both export:
the same series (label sets), counters between the two node_exporter readings (the rate over any window
is then the same), gauges at the same moment equal, or between the two readings for the ones that move.
The SSH ``linux`` module against a real sshd on loopback must give the series the local host gives.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import Metric

from agent.kernel.collector import BlockingRunner, CollectorContext
from agent.kernel.results import JobResult
from collectors.host import HostCollector, HostSettings
from collectors.ssh.collector import SSHCollector
from collectors.ssh.settings import SSHSettings, SSHTarget
from collectors.textfile import TextfileCollector, TextfileSettings
from exporters.exposition import render_text
from tests.helpers import collect_once, free_port, http_get, stop_process, wait_for
from tests.integration.sshd_server import keygen, start_sshd

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
Key = tuple[str, frozenset[tuple[str, str]]]
Data = dict[Key, float]

#: node_exporter's own families, and its collectors giamsat does not have (no such files on Linux
#: servers it runs on, or node_exporter's internals)
NOT_OURS = re.compile(r"^(node_exporter_build_info|node_scrape_collector_.*|go_.*|process_.*|promhttp_.*)$")
#: gauges that move by themselves between two readings; (absolute slack, relative slack)
MOVING: dict[str, tuple[float, float]] = {
    r"node_load\d+": (0.5, 0.0),
    r"node_memory_.*": (64 * 2**20, 0.0),
    r"node_procs_(running|blocked)": (16, 0.0),
    r"node_filefd_allocated": (512, 0.0),
    r"node_sockstat_.*": (256, 0.0),
    r"node_netstat_Tcp_CurrEstab": (64, 0.0),
    r"node_timex_(maxerror|estimated_error)_seconds": (0.01, 0.0),
    r"node_time_seconds": (5, 0.0),
    r"node_disk_io_now": (64, 0.0),
    r"node_filesystem_(free|avail)_bytes": (256 * 2**20, 0.0),
    r"node_filesystem_files_free": (65536, 0.0),
    r"node_nf_conntrack_entries": (256, 0.0),
    r"node_udp_queues": (2**20, 0.0),
    r"node_entropy_available_bits": (4096, 0.0),
    r"node_arp_entries": (16, 0.0),
}
#: counters whose ticks are coarser than a scrape (/proc/stat is in 10 ms ticks)
COUNTER_SLACK = {"node_cpu_seconds_total": 0.011, "node_cpu_guest_seconds_total": 0.011}


def parse(text: str) -> tuple[Data, dict[str, str]]:
    out: Data = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out, types


def families(data: Data) -> dict[str, set[frozenset[tuple[str, str]]]]:
    out: dict[str, set[frozenset[tuple[str, str]]]] = {}
    for name, labels in data:
        out.setdefault(name, set()).add(labels)
    return out


@pytest.fixture(scope="module")
def textfile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("textfile")
    (d / "backup.prom").write_text(
        "# HELP backup_last_success_seconds When the last backup finished.\n"
        "# TYPE backup_last_success_seconds gauge\n"
        'backup_last_success_seconds{job="hoso"} 1.7e9\n'
    )
    return d


@pytest.fixture(scope="module")
def node_exporter(textfile_dir: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            NODE_EXPORTER,
            f"--web.listen-address=127.0.0.1:{port}",
            "--no-collector.systemd",
            f"--collector.textfile.directory={textfile_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: http_get(url)[0] == 200, 15, what="node_exporter")
        yield url
    finally:
        stop_process(proc)


def render(fams: list[Metric]) -> str:
    r = JobResult("host", "host", None, None, tuple(fams), time.time(), 0.0, True)
    return render_text([r], [], 1024)[0].decode()


async def giamsat_host(textfile_dir: Path) -> list[Metric]:
    ctx = CollectorContext("host", Path("/nonexistent"), BlockingRunner("parity", 4))
    tctx = CollectorContext("textfile", Path("/nonexistent"), BlockingRunner("parity-tf", 1))
    try:
        host = await collect_once(HostCollector(HostSettings(), ctx), None)
        text = await collect_once(
            TextfileCollector(TextfileSettings(directory=str(textfile_dir)), tctx), None
        )
    finally:
        ctx.blocking.shutdown()
        tctx.blocking.shutdown()
    return host + text


@pytest.fixture
def sandwich(node_exporter: str, textfile_dir: Path) -> tuple[Data, Data, Data, dict[str, str]]:
    before, types = parse(http_get(node_exporter)[1])
    ours, _ = parse(render(asyncio.run(giamsat_host(textfile_dir))))
    after, _ = parse(http_get(node_exporter)[1])
    return before, ours, after, types


def test_every_family_node_exporter_has_here_is_exported(
    sandwich: tuple[Data, Data, Data, dict[str, str]],
) -> None:
    before, ours, _after, _types = sandwich
    theirs = {n for n in families(before) if not NOT_OURS.match(n)}
    mine = {n for n in families(ours) if not n.startswith("giamsat_") and not NOT_OURS.match(n)}
    assert theirs - mine == set()
    assert mine - theirs == set()


def test_same_series_and_values(sandwich: tuple[Data, Data, Data, dict[str, str]]) -> None:
    before, ours, after, types = sandwich
    fb, fo, fa = families(before), families(ours), families(after)
    problems: list[str] = []
    checked = 0
    for name in sorted(fo):
        if NOT_OURS.match(name) or name not in fb:
            continue
        # devices come and go (other tests add links): ours must hold what both readings hold, and
        # nothing that neither holds
        stable, seen = fb[name] & fa.get(name, set()), fb[name] | fa.get(name, set())
        if not stable <= fo[name] or not fo[name] <= seen:
            problems.append(
                f"{name}: series differ: only giamsat {fo[name] - seen}, missing {stable - fo[name]}"
            )
            continue
        base = name
        typ = types.get(base) or types.get(re.sub(r"_(total|bucket|sum|count)$", "", base), "untyped")
        slack = next((s for pat, s in MOVING.items() if re.fullmatch(pat, name)), None)
        for labels in sorted(stable, key=sorted):
            b, o, a = before[(name, labels)], ours[(name, labels)], after[(name, labels)]
            lo, hi = min(b, a), max(b, a)
            # float formatting: the same figure computed in another order may differ in its last bit
            lo, hi = lo - abs(lo) * 1e-12, hi + abs(hi) * 1e-12
            if typ == "counter":
                eps = COUNTER_SLACK.get(name, 0.0) + abs(b) * 1e-12
                ok = b - eps <= o <= a + eps
            elif slack is not None:
                ok = lo - slack[0] - abs(lo) * slack[1] <= o <= hi + slack[0] + abs(hi) * slack[1]
            elif typ == "untyped":  # vmstat and netstat: counters, a few gauges
                ok = lo <= o <= hi
            else:
                ok = lo <= o <= hi
            checked += 1
            if not ok:
                problems.append(f"{name}{dict(labels)} ({typ}): giamsat {o}, node_exporter {b} then {a}")
    assert not problems, "\n".join(problems)
    # a floor, not a figure: links other tests add and remove meanwhile leave fewer stable series
    assert checked > 250


def test_help_and_type_are_node_exporters(node_exporter: str, textfile_dir: Path) -> None:
    theirs = http_get(node_exporter)[1]
    ours = render(asyncio.run(giamsat_host(textfile_dir)))
    meta = re.compile(r"^# (HELP|TYPE) (node_\S+) (.*)$", re.M)
    mine = {(k, n): v for k, n, v in meta.findall(ours) if not NOT_OURS.match(n)}
    ref = {(k, n): v for k, n, v in meta.findall(theirs)}
    assert {key: (v, ref.get(key)) for key, v in mine.items() if ref.get(key) != v} == {}


# ---------------------------------------------------------------------------------------------------
# agentless: the SSH linux module over a real sshd on loopback gives the local host's series
# ---------------------------------------------------------------------------------------------------
@pytest.mark.root
def test_ssh_linux_module_gives_the_local_hosts_series(tmp_path: Path) -> None:
    client = keygen(tmp_path / "client")
    server = start_sshd(tmp_path / "sshd", client.with_suffix(".pub"), client)
    try:
        algo, b64 = server.host_key.with_suffix(".pub").read_text().split()[:2]
        (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {algo} {b64}\n")
        settings = SSHSettings.model_validate(
            {
                "known_hosts_file": str(tmp_path / "known_hosts"),
                "auths": {"root": {"username": "root", "key_file": str(client)}},
                "command_timeout": "20s",
            }
        )
        ctx = CollectorContext("ssh", tmp_path, BlockingRunner("parity-ssh", 4), logging.getLogger("t.ssh"))
        collector = SSHCollector(settings, ctx)
        target = SSHTarget.model_validate(
            {
                "name": "self",
                "site": "s",
                "address": "127.0.0.1",
                "port": server.port,
                "auth": "root",
                "timeout": "30s",
            }
        )

        async def both() -> tuple[list[Metric], list[Metric]]:
            await collector.start()
            try:
                remote = await collect_once(collector, target)
            finally:
                await collector.close()
                ctx.blocking.shutdown()
            hctx = CollectorContext("host", tmp_path, BlockingRunner("parity-host", 4))
            local = await collect_once(HostCollector(HostSettings(), hctx), None)
            hctx.blocking.shutdown()
            return remote, local

        remote, local = asyncio.run(both())
    finally:
        server.stop()
    r, _ = parse(render(remote))
    lo, _ = parse(render(local))
    assert r[("ssh_up", frozenset())] == 1
    assert r[("ssh_module_success", frozenset({("module", "linux")}))] == 1
    fr = {n: s for n, s in families(r).items() if n.startswith("node_")}
    fl = {
        n: s
        for n, s in families(lo).items()
        if n.startswith("node_") and not n.startswith(("node_timex_", "node_scrape_collector_"))
    }
    assert sorted(fr) == sorted(fl)
    for name in fl:
        if name.startswith(("node_network_", "node_arp_", "node_softnet_")):
            continue  # links come and go while other tests run; their names are compared above
        assert fr[name] == fl[name], name


def test_promtool_findings_only_where_node_exporter_has_the_same(
    node_exporter: str, textfile_dir: Path
) -> None:
    """node_exporter's camelCase names stay (the dashboards use them): promtool's findings on them are
    accepted exactly where node_exporter's own output gets the same finding, and nowhere else."""

    def findings(text: str) -> set[str]:
        out = subprocess.run(
            ["promtool", "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return {ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip()}

    theirs = findings(http_get(node_exporter)[1])
    ours = findings(render(asyncio.run(giamsat_host(textfile_dir))))
    assert any("camelCase" in f for f in theirs)  # the check does find things on node_exporter's output
    assert ours - theirs == set()
