"""/metrics latency, CPU per scrape and RSS: giamsat (host collector alone) vs node_exporter, same run.

Usage: .venv/bin/python bench/scrape.py [--scrapes 300] [--write docs/benchmarks.md]

Both serve on loopback; scrapes alternate between the two so machine noise hits both alike.
node_exporter collects at scrape time; giamsat collects on its schedule (15 s here) and a scrape only
serialises the store, so giamsat's CPU is reported both per scrape and including its background work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import cpu_seconds, free_port, median, percentile, rss_bytes, update_section

ROOT = Path(__file__).resolve().parent.parent
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


READING = """Reading the RSS row (issue 2's target: at most 40 MiB with the host collector alone). The libraries
the design names cost most of it before any agent code runs: Python 3.11 itself about 10.9 MiB; asyncio
9.6 (it imports ssl, and OpenSSL's initialisation alone is ~5 MiB; prometheus_client imports ssl too, so
it cannot be avoided); pydantic about 7 (its Rust core's code pages and each model's validator);
prometheus_client with http.server 4.5; APScheduler 2.7; PyYAML and psutil 2.4. What giamsat adds
on top is its modules and its configuration schema (measured as installed, from compiled bytecode;
compiling the sources at start-up would add ~0.4 MiB of allocator fragmentation). Only what a configuration uses is imported or built:
collectors (pysnmp, gufo-snmp, paramiko, dnspython, httpx stay out of a host-only agent), the site-links
and remote-write schemas, the web-config schema, and the Rust regex engine (site ids are matched
with Python's re). Tried and not kept, each under 0.1 MiB here: pydantic's defer_build, a glibc arena
cap (MALLOC_ARENA_MAX=1), fewer host threads; malloc_trim() needs ctypes, which costs more (0.8 MiB) than it
returns (0.5)."""


def wait_ready(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not become ready")


def scrape(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback
        body = r.read()
    return time.perf_counter() - t0, len(body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=300)
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args()

    # The agent as installed: pip compiles every module to bytecode at install time (deploy/install.sh).
    # A source checkout with PYTHONDONTWRITEBYTECODE set (as on our build machines) would otherwise compile
    # all of them at every start, which costs the process ~0.4 MiB of RSS the installed agent never pays.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "agent", "collectors", "exporters"], cwd=ROOT, check=True
    )
    tmp = Path(tempfile.mkdtemp(prefix="giamsat-bench-"))
    cfg = tmp / "giamsat.yml"
    # What a commune office's agent runs: the host collector, its own site and the one above it.
    cfg.write_text(
        f"agent:\n  interval: 15s\n  state_dir: {tmp}\n  site: xa-1\n"
        "sites:\n  - {id: tinh, name: Tỉnh, level: province}\n"
        "  - {id: xa-1, name: Xã Một, level: commune, parent: tinh}\n"
        "collectors:\n  host: {}\n"
    )
    gport, nport = free_port(), free_port()
    giamsat = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/giamsat"),
            "run",
            "--config.file",
            str(cfg),
            "--web.listen-address",
            f"127.0.0.1:{gport}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    node = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{nport}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fport = free_port()
    floor = subprocess.Popen([sys.executable, str(ROOT / "bench/rss_floor.py"), str(fport)])
    try:
        gurl, nurl = f"http://127.0.0.1:{gport}/metrics", f"http://127.0.0.1:{nport}/metrics"
        wait_ready(f"http://127.0.0.1:{gport}/-/ready")
        wait_ready(nurl)
        furl = f"http://127.0.0.1:{fport}/"
        wait_ready(furl)
        for _ in range(20):  # warm-up
            scrape(gurl)
            scrape(nurl)
        lat: dict[str, list[float]] = {"giamsat": [], "node_exporter": []}
        size = {"giamsat": 0, "node_exporter": 0}
        cpu0 = {"giamsat": cpu_seconds(giamsat.pid), "node_exporter": cpu_seconds(node.pid)}
        wall0 = time.monotonic()
        for _ in range(args.scrapes):
            for name, url in (("giamsat", gurl), ("node_exporter", nurl)):
                t, n = scrape(url)
                lat[name].append(t)
                size[name] = n
            scrape(furl)  # served as often, so its RSS is measured in the same state
        wall = time.monotonic() - wall0
        cpu = {
            "giamsat": cpu_seconds(giamsat.pid) - cpu0["giamsat"],
            "node_exporter": cpu_seconds(node.pid) - cpu0["node_exporter"],
        }
        rss = {"giamsat": rss_bytes(giamsat.pid), "node_exporter": rss_bytes(node.pid)}
        floor_rss = rss_bytes(floor.pid)
    finally:
        for p in (giamsat, node, floor):
            p.terminate()
            p.wait(10)

    g_scrape_cpu = cpu["giamsat"] / args.scrapes  # includes any background collection in the loop
    n_scrape_cpu = cpu["node_exporter"] / args.scrapes
    rows = [
        ("median latency (ms)", median(lat["giamsat"]) * 1e3, median(lat["node_exporter"]) * 1e3),
        (
            "p99 latency (ms)",
            percentile(lat["giamsat"], 99) * 1e3,
            percentile(lat["node_exporter"], 99) * 1e3,
        ),
        ("process CPU per scrape (ms)", g_scrape_cpu * 1e3, n_scrape_cpu * 1e3),
        ("RSS (MiB)", rss["giamsat"] / 2**20, rss["node_exporter"] / 2**20),
        ("response size (KiB)", size["giamsat"] / 1024, size["node_exporter"] / 1024),
    ]
    lines = [
        f"`python bench/scrape.py --scrapes {args.scrapes}` — {args.scrapes} scrapes each, alternating, loopback, "
        f"host collector alone (interval 15 s) vs Debian's node_exporter 1.5 (default collectors). "
        f"Process CPU is all the CPU each process used during the loop ({wall:.1f} s wall), divided by the "
        "number of scrapes; giamsat's includes its background collection in that time.",
        "",
        "| figure | giamsat | node_exporter | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, g, n in rows:
        lines.append(f"| {label} | {g:.2f} | {n:.2f} | {g / n if n else float('nan'):.2f}× |")
    lines += [
        "",
        f"Library floor, same run: bench/rss_floor.py — the agent's libraries and nothing else (asyncio with "
        f"ssl, http.server, prometheus_client, pydantic with one model, APScheduler on asyncio, psutil, "
        f"PyYAML), one scheduled reading served over HTTP — RSS **{floor_rss / 2**20:.2f} MiB**; giamsat's own "
        f"code, schemas and state add {(rss['giamsat'] - floor_rss) / 2**20:.2f} MiB to it.",
        "",
        READING,
    ]
    out = "\n".join(lines)
    print(out)
    if args.write:
        update_section(args.write, "Scrape latency and footprint (issue 2)", out)


if __name__ == "__main__":
    main()
