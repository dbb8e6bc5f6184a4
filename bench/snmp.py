"""SNMP benchmark: giamsat (gufo-snmp and pysnmp engines) against snmp_exporter 0.21, same run, same snmpd.

Needs root (a network namespace with ifb interfaces so each snmpd has 50 interfaces). Prints:

1. if_mib poll of one 50-interface device (the shipped if_mib: snmp_exporter's generated module, the
   same definition given to both): latency (median, p90) and client CPU per poll, the three
   clients polled in turn (interleaved) so the shared machine's load hits them alike. giamsat is
   measured in-process including rendering the exposition text; snmp_exporter via HTTP, CPU read from
   /proc for its PID. 1b: the same for every numeric ifTable+ifXTable column (the issue's workload).
   Each client's requests per poll are counted at the agent (snmpInPkts) in a short pass beforehand.
2. Throughput: 50..500 devices polled in one round (targets spread over several snmpd instances):
   devices per second, client CPU per round (giamsat: polling and rendering each result once; the
   exporter: serving each /snmp request), and the share of one core for an every-60-s schedule.

Usage (as root): .venv/bin/python bench/snmp.py [--polls 30] [--devices 50,200,500] [--agents 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.kernel.collector import BlockingRunner, CollectorContext
from agent.kernel.results import JobResult
from bench.common import collect_once
from collectors.snmp import SnmpCollector
from collectors.snmp.config import SnmpSettings, SnmpTarget
from collectors.snmp.modules import EXPORTER_FILE
from exporters.exposition import render_text
from tests.helpers import free_port
from tests.snmpd import COMMUNITY, Snmpd

PID = os.getpid()
NS = f"gs{PID}bsnmp"
VETH_HOST, VETH_NS = f"gs{PID}ba", f"gs{PID}bb"
HOST_IP, AGENT_IP = "198.18.40.130", "198.18.40.129"  # 198.18.40.128/25; the tests use .0/25
CLK = os.sysconf("SC_CLK_TCK")


def ip(*args: str, stdin: str | None = None) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, input=stdin, text=True)


def setup_netns(n_ifb: int) -> None:
    ip("netns", "add", NS)
    ip("link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS)
    ip("link", "set", VETH_NS, "netns", NS)
    ip("addr", "add", f"{HOST_IP}/25", "dev", VETH_HOST)
    ip("link", "set", VETH_HOST, "up")
    ip("-n", NS, "addr", "add", f"{AGENT_IP}/25", "dev", VETH_NS)
    ip("-n", NS, "link", "set", VETH_NS, "up")
    ip("-n", NS, "link", "set", "lo", "up")
    lines = [f"link add ifb{i} type ifb\nlink set ifb{i} up" for i in range(n_ifb)]
    ip("-n", NS, "-batch", "-", stdin="\n".join(lines))


def teardown_netns() -> None:
    subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)


def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK, int(fields[12]) / CLK


def self_cpu() -> tuple[float, float]:
    t = os.times()
    return t.user, t.system


def delta(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return b[0] - a[0], b[1] - a[1]


IF_ENTRY, IFX_ENTRY = "1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1"
# Every numeric column of ifTable and ifXTable: the "one 2040-varbind ifTable+ifXTable poll".
FULL_COLUMNS = [
    f"{IF_ENTRY}.{c}" for c in (1, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21)
] + [f"{IFX_ENTRY}.{c}" for c in (*range(2, 18), 19)]
LOOKUPS = [("ifName", f"{IFX_ENTRY}.1"), ("ifAlias", f"{IFX_ENTRY}.18"), ("ifDescr", f"{IF_ENTRY}.2")]


def full_module_giamsat() -> dict[str, Any]:
    return {
        "walk": [IF_ENTRY, IFX_ENTRY],
        "metrics": [
            {
                "name": "if_" + col.replace(".", "_"),
                "oid": col,
                "indexes": [{"labelname": "ifIndex"}],
                "lookups": [{"labelname": n, "oid": o} for n, o in LOOKUPS],
            }
            for col in FULL_COLUMNS
        ],
    }


def full_module_exporter() -> dict[str, Any]:
    return {
        "walk": [IF_ENTRY, IFX_ENTRY],
        "version": 2,
        "auth": {"community": COMMUNITY},
        "max_repetitions": 25,
        "retries": 3,
        "timeout": "5s",
        "metrics": [
            {
                "name": "if_" + col.replace(".", "_"),
                "oid": col,
                "type": "gauge",
                "help": col,
                "indexes": [{"labelname": "ifIndex", "type": "gauge"}],
                "lookups": [
                    {"labels": ["ifIndex"], "labelname": n, "oid": o, "type": "DisplayString"}
                    for n, o in LOOKUPS
                ],
            }
            for col in FULL_COLUMNS
        ],
    }


def shipped_module_for_021(name: str) -> dict[str, Any]:
    """A shipped module (snmp_exporter's generated one) in snmp_exporter 0.21's layout: auth inside."""
    mod: dict[str, Any] = yaml.safe_load(EXPORTER_FILE.read_text())["modules"][name]
    for m in mod["metrics"]:
        for key in ("scale", "offset", "datetime_pattern"):  # newer than 0.21 (not used by if_mib)
            m.pop(key, None)
    mod.update(version=2, auth={"community": COMMUNITY})
    return mod


def make_collector(engine: str) -> SnmpCollector:
    cfg = SnmpSettings.model_validate(
        {
            "engine": engine,
            "auths": {"v2": {"version": 2, "community": COMMUNITY}},
            "max_concurrent_devices": 128,
            "modules": {"if_full": full_module_giamsat()},
        }
    )
    ctx = CollectorContext(
        "snmp", Path(tempfile.gettempdir()), BlockingRunner("bench", 1), logging.getLogger("bench")
    )
    return SnmpCollector(cfg, ctx)


def agent_gc(jobs: int = 0) -> None:
    """The garbage-collector settings the agent runs with (agent/lifecycle.py: a higher young-object
    threshold, and what lives as long as the configuration frozen out of the collector's reach once it
    is loaded), so giamsat's CPU here is what it costs in the agent."""
    from agent.lifecycle import gc_thresholds

    gc.collect()
    gc.freeze()
    gc.set_threshold(*gc_thresholds(jobs))


def target(i: int, port: int, module: str = "if_mib") -> SnmpTarget:
    return SnmpTarget(
        name=f"d{i}", site="s", address=AGENT_IP, port=port, auth="v2", modules=[module], timeout=30
    )


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def http_body(url: str) -> bytes:
    """Blocking on purpose: the interleaved measurement runs one client at a time."""
    body: bytes = urllib.request.urlopen(url, timeout=30).read()  # noqa: S310 - loopback
    return body


def rusage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


SNMP_IN_PKTS = "1.3.6.1.2.1.11.1.0"  # SNMPv2-MIB snmpInPkts: packets the agent received


def in_pkts(agent: Snmpd) -> int:
    return int(agent.cli("snmpget", SNMP_IN_PKTS).split()[-1])


async def interleaved_latency(
    agent: Snmpd, polls: int, module: str, url: str, pid: int
) -> dict[str, dict[str, float]]:
    """One poll of each client in turn, so load from the shared machine hits all of them alike.

    giamsat's CPU is summed over its own polls (getrusage around each, microsecond resolution);
    snmp_exporter's is its whole /proc CPU over the run (it is idle between its polls)."""
    collectors = {e: make_collector(e) for e in ("gufo", "pysnmp")}
    agent_gc()
    t = target(0, agent.port, module)
    for c in collectors.values():
        await collect_once(c, t)  # warm-up: session, imports
    http_body(url)
    # Requests each client sends per poll, counted by the agent (snmpInPkts; the reading GET counts
    # itself), in a short pass of its own before the measured one.
    requests: dict[str, float] = {}
    for name in ("gufo", "pysnmp", "exp"):
        before = in_pkts(agent)
        for _ in range(3):
            if name == "exp":
                http_body(url)
            else:
                await collect_once(collectors[name], t)
        requests[name] = (in_pkts(agent) - before - 1) / 3
    lat: dict[str, list[float]] = {"gufo": [], "pysnmp": [], "exp": []}
    cpu = {e: [0.0, 0.0] for e in collectors}
    series: dict[str, int] = {}
    exp0 = proc_cpu(pid)
    for _ in range(polls):
        for engine, c in collectors.items():
            r0, t0 = rusage(), time.perf_counter()
            fams = await collect_once(c, t)
            res = JobResult("snmp/d0", "snmp", "d0", "s", tuple(fams), time.time(), 0.0, True)
            body, _ = render_text([res], [], 256)
            lat[engine].append(time.perf_counter() - t0)
            du, ds = delta(r0, rusage())
            cpu[engine][0] += du
            cpu[engine][1] += ds
            series[engine] = body.count(b"\nif")
        t0 = time.perf_counter()
        body = http_body(url)
        lat["exp"].append(time.perf_counter() - t0)
        series["exp"] = body.count(b"\nif")
    eu, es = delta(exp0, proc_cpu(pid))
    for c in collectors.values():
        await c.close()
    out = {}
    for name in lat:
        user, system = (eu, es) if name == "exp" else cpu[name]
        out[name] = {
            "median": statistics.median(lat[name]),
            "p90": pct(lat[name], 0.9),
            "cpu": (user + system) / polls,
            "user": user / polls,
            "sys": system / polls,
            "series": series[name],
            "requests": requests[name],
        }
    return out


async def giamsat_round(engine: str, ports: list[int], n: int) -> dict[str, float]:
    c = make_collector(engine)
    agent_gc()
    targets = [target(i, ports[i % len(ports)]) for i in range(n)]
    await asyncio.gather(*(collect_once(c, t) for t in targets))  # warm-up round (sockets)
    cpu0, t0 = self_cpu(), time.perf_counter()
    results = await asyncio.gather(*(collect_once(c, t) for t in targets))
    for t, fams in zip(targets, results, strict=True):  # each result is rendered once, as on /metrics
        render_text(
            [JobResult(f"snmp/{t.name}", "snmp", t.name, "s", tuple(fams), time.time(), 0.0, True)], [], 256
        )
    wall, cpu = time.perf_counter() - t0, sum(delta(cpu0, self_cpu()))
    ok = sum(1 for fams in results for f in fams if f.name == "snmp_up" and f.samples[0].value == 1.0)
    await c.close()
    return {"wall": wall, "cpu": cpu, "ok": ok}


def exporter_round(base: str, pid: int, ports: list[int], n: int) -> dict[str, float]:
    urls = [f"{base}&target={AGENT_IP}:{ports[i % len(ports)]}" for i in range(n)]

    def get(u: str) -> bool:
        body = urllib.request.urlopen(u, timeout=120).read()  # noqa: S310 - loopback
        return b"ifHCInOctets{" in body

    with ThreadPoolExecutor(128) as pool:
        list(pool.map(get, urls[: min(n, 50)]))
        cpu0, t0 = proc_cpu(pid), time.perf_counter()
        ok = sum(pool.map(get, urls))
        wall, cpu = time.perf_counter() - t0, sum(delta(cpu0, proc_cpu(pid)))
    return {"wall": wall, "cpu": cpu, "ok": ok}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--polls", type=int, default=30)
    ap.add_argument("--devices", default="50,200,500")
    ap.add_argument("--agents", type=int, default=10, help="snmpd instances sharing the 50 interfaces")
    ap.add_argument(
        "--pysnmp-max-devices", type=int, default=50, help="pysnmp is slow; cap its throughput runs"
    )
    args = ap.parse_args()
    devices = [int(x) for x in args.devices.split(",")]

    agents: list[Snmpd] = []
    exporter: subprocess.Popen[bytes] | None = None
    tmp = Path(tempfile.mkdtemp(prefix="gs-bench-snmp-"))
    try:
        setup_netns(48)  # + lo + the veth end = 50 interfaces
        for k in range(args.agents):
            agents.append(Snmpd(host=AGENT_IP, port=10161 + k, netns=NS, sys_name=f"bench{k}").start())
        ports = [a.port for a in agents]
        n_if = len(agents[0].cli("snmpbulkwalk", "1.3.6.1.2.1.2.2.1.1").splitlines())
        conf = tmp / "snmp.yml"
        exporter_modules = {"if_mib": shipped_module_for_021("if_mib"), "if_full": full_module_exporter()}
        conf.write_text(yaml.safe_dump(exporter_modules))
        eport = free_port()
        exporter = subprocess.Popen(
            [
                "prometheus-snmp-exporter",
                f"--config.file={conf}",
                f"--web.listen-address=127.0.0.1:{eport}",
                "--log.level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{eport}/snmp?module=if_mib"
        base_url = f"http://127.0.0.1:{eport}/snmp?target={AGENT_IP}:{ports[0]}&module="
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{eport}/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        print(
            f"# SNMP benchmark {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs (shared machine), "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(
            f"# device: net-snmp snmpd in a netns, {n_if} interfaces; if_mib = snmp_exporter's, v2c, max-repetitions 25\n"
        )

        for part, module, what in (
            ("1", "if_mib", "if_mib (snmp_exporter's generated module: ifTable and ifXTable walked whole)"),
            (
                "1b",
                "if_full",
                "every numeric ifTable+ifXTable column, 2 subtree walks (the issue's workload)",
            ),
        ):
            print(f"## {part}. One device, {args.polls} polls per client, interleaved: {what}")
            print(
                "| client | requests/poll | median latency ms | p90 ms | client CPU ms/poll | of which user | of which system | if series |"
            )
            print("|---|---|---|---|---|---|---|---|")
            rows = asyncio.run(
                interleaved_latency(agents[0], args.polls, module, base_url + module, exporter.pid)
            )
            for name, label in (
                ("gufo", "giamsat (gufo)"),
                ("pysnmp", "giamsat (pysnmp)"),
                ("exp", "snmp_exporter 0.21"),
            ):
                r = rows[name]
                print(
                    f"| {label} | {r['requests']:.0f} | {r['median'] * 1e3:.1f} | {r['p90'] * 1e3:.1f} | {r['cpu'] * 1e3:.1f} | {r['user'] * 1e3:.1f} | {r['sys'] * 1e3:.1f} | {r['series']:.0f} |"
                )
            print(
                f"\nCPU per poll ratio to snmp_exporter: gufo {rows['gufo']['cpu'] / rows['exp']['cpu']:.2f}, "
                f"pysnmp {rows['pysnmp']['cpu'] / rows['exp']['cpu']:.2f}\n"
            )

        print(
            f"## 2. Throughput: one round over N devices ({len(ports)} snmpd instances, {n_if} interfaces each)"
        )
        print(
            "| client | devices | answered | wall s | devices/s | client CPU s/round | core share at 60 s interval |"
        )
        print("|---|---|---|---|---|---|---|")
        for n in devices:
            for engine in ("gufo", "pysnmp"):
                if engine == "pysnmp" and n > args.pysnmp_max_devices:
                    continue
                r = asyncio.run(giamsat_round(engine, ports, n))
                print(
                    f"| giamsat ({engine}) | {n} | {r['ok']:.0f} | {r['wall']:.2f} | {n / r['wall']:.0f} | {r['cpu']:.2f} | {r['cpu'] / 60:.3f} |"
                )
            r = exporter_round(base, exporter.pid, ports, n)
            print(
                f"| snmp_exporter 0.21 | {n} | {r['ok']:.0f} | {r['wall']:.2f} | {n / r['wall']:.0f} | {r['cpu']:.2f} | {r['cpu'] / 60:.3f} |"
            )
        print(f"\n# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if exporter is not None:
            exporter.terminate()
            exporter.wait(10)
        for a in agents:
            a.stop()
        teardown_netns()


if __name__ == "__main__":
    main()
