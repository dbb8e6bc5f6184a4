"""/metrics latency, CPU per scrape and RSS: giamsat (host collector alone) vs node_exporter, same run.

Usage: .venv/bin/python bench/scrape.py [--scrapes 300] [--python PY ...] [--write docs/benchmarks.md]
       .venv/bin/python bench/scrape.py --mixed 5000 [--seconds 120] [--write docs/benchmarks.md]

``--mixed N``: an agent (run from this tree) with N probe targets on loopback, a third each ICMP
(127.0.0.0/8), TCP and HTTP (one ``python -m http.server`` on 127.0.0.1), probed every 15 s, scraped
back to back as Prometheus asks (OpenMetrics first, gzip) for ``--seconds``: /metrics latency (p50, p99,
max), response size, the agent's CPU and RSS. Needs root (raw ICMP sockets).

giamsat is measured as deployed: deploy/install.sh installs it into a scratch root, once per
interpreter (by default Debian 12's /usr/bin/python3, which install.sh and the README use on the
machines giamsat runs on, and the bench's own interpreter when that is another build). All processes
serve on loopback and are scraped in turn, so machine noise hits each alike. node_exporter collects at
scrape time; giamsat collects on its schedule (15 s here) and a scrape only serialises the store, so
giamsat's CPU is reported per scrape including its background work.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import LoadMeter, cpu_seconds, free_port, median, percentile, rss_bytes, update_section

ROOT = Path(__file__).resolve().parent.parent
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


READING = """Reading the RSS row (the target: at most 40 MiB with the host collector alone). The libraries
the design names cost most of it before any agent code runs: the interpreter itself; asyncio, which
imports ssl (OpenSSL's initialisation alone is ~5 MiB, and prometheus_client imports ssl too, so it cannot
be avoided); pydantic about 7 (its Rust core's code pages and each model's validator); prometheus_client
with http.server 4.5; APScheduler 2.7; PyYAML and psutil 2.4. The interpreter's build matters: Debian's
python3.11 links libpython and most C extension modules (math, _socket, _datetime, _pickle, zlib, ...)
into its executable, while a default pyenv build loads libpython and each extension as a shared object,
whose relocated data pages cost ~0.6 MiB more in the same program. What giamsat adds on top is its modules
(about 0.9 MiB of live Python objects, mostly code) and its configuration schema. Only what a
configuration uses is imported or built: collectors (pysnmp, gufo-snmp, paramiko, dnspython, httpx stay
out of a host-only agent), the site-links and remote-write schemas, the web-config schema, and the Rust
regex engine (site ids are matched with Python's re). Measured as installed, from compiled bytecode:
compiling the sources at every start (an editable checkout with PYTHONDONTWRITEBYTECODE set) adds ~0.4 MiB
of allocator fragmentation. Tried and not kept, each under 0.1 MiB (or within run-to-run noise): pydantic's
defer_build, a glibc arena cap (MALLOC_ARENA_MAX=1 or 2), one host thread instead of four, bytecode
without column tables (-X no_debug_ranges); malloc_trim() needs ctypes, which costs more (0.8 MiB) than it
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


def interpreter_label(python: str) -> str:
    """``3.11.2 /usr/bin/python3.11 (static libpython)``: how the interpreter was linked moves RSS by
    ~0.6 MiB (see READING). Read from the process's own mappings: Debian's sysconfig says
    Py_ENABLE_SHARED although its python3.11 executable has libpython linked in."""
    code = (
        "import sys; maps = open('/proc/self/maps').read(); "
        "print('%d.%d.%d' % sys.version_info[:3], 'shared' if 'libpython' in maps else 'static')"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return f"{out[0]} {Path(python).resolve()} ({out[1]} libpython)"


def install(python: str, root: Path) -> Path:
    """The agent as deploy/install.sh installs it (pip install of the tree into a fresh virtualenv, which
    compiles every module to bytecode), under ``root`` instead of /: returns the virtualenv."""
    argv = ["sh", str(ROOT / "deploy/install.sh"), "--root", str(root), "--python", python, "--no-enable"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return root / "opt/giamsat"


def start(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def default_interpreters() -> list[str]:
    """Debian 12's python3 (what install.sh and the README use on the machines giamsat runs on), then
    the interpreter running this bench if it is another build."""
    found: list[str] = []
    for candidate in ("/usr/bin/python3", sys.executable):
        if Path(candidate).exists() and all(Path(candidate).resolve() != Path(f).resolve() for f in found):
            found.append(candidate)
    return found


FIGURES = [
    "median latency (ms)",
    "p99 latency (ms)",
    "process CPU per scrape (ms)",
    "RSS (MiB)",
    "response size (KiB)",
]


def one_run(venvs: list[Path], cfg: Path, scrapes: int) -> tuple[dict[str, list[float]], float]:
    """Start node_exporter, and giamsat and the library floor per virtualenv; scrape all in turn.

    Returns each process's figures (in FIGURES order) and the loop's wall time."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    try:
        nport = free_port()
        procs["node_exporter"] = start([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{nport}"])
        urls["node_exporter"] = f"http://127.0.0.1:{nport}/metrics"
        for i, venv in enumerate(venvs):
            gport, fport = free_port(), free_port()
            argv = [str(venv / "bin/giamsat"), "run", "--config.file", str(cfg)]
            procs[f"giamsat{i}"] = start([*argv, "--web.listen-address", f"127.0.0.1:{gport}"])
            urls[f"giamsat{i}"] = f"http://127.0.0.1:{gport}/metrics"
            procs[f"floor{i}"] = start(
                [str(venv / "bin/python"), str(ROOT / "bench/rss_floor.py"), str(fport)]
            )
            urls[f"floor{i}"] = f"http://127.0.0.1:{fport}/"
        for name, url in urls.items():
            wait_ready(url.replace("/metrics", "/-/ready") if name.startswith("giamsat") else url)
        for _ in range(20):  # warm-up
            for url in urls.values():
                scrape(url)
        lat: dict[str, list[float]] = {name: [] for name in urls}
        size: dict[str, int] = {}
        cpu0 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        wall0 = time.monotonic()
        for _ in range(scrapes):
            # All in turn, so machine noise hits each alike; the floors are served as often, so their
            # RSS is measured in the same state.
            for name, url in urls.items():
                t, n = scrape(url)
                lat[name].append(t)
                size[name] = n
        wall = time.monotonic() - wall0
        cpu = {name: cpu_seconds(p.pid) - cpu0[name] for name, p in procs.items()}
        rss = {name: rss_bytes(p.pid) for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(10)
    return {
        name: [
            median(lat[name]) * 1e3,
            percentile(lat[name], 99) * 1e3,
            cpu[name] / scrapes * 1e3,  # includes any background collection in the loop
            rss[name] / 2**20,
            size[name] / 1024,
        ]
        for name in procs
    }, wall


ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def mixed(n: int, seconds: float, write: Path | None, tree: Path = ROOT) -> None:
    """/metrics of an agent with ``n`` mixed probe targets, scraped back to back for ``seconds``."""
    tmp = Path(tempfile.mkdtemp(prefix="giamsat-mixed-"))
    http_port, port = free_port(), free_port()
    n_icmp = n - 2 * (n // 3)
    lines = [
        f"agent: {{interval: 15s, timeout: 10s, state_dir: {tmp / 'state'}}}",
        "sites:\n  - {id: tinh, name: Tinh, level: province}",
        "collectors: {host: {enabled: false}, textfile: {enabled: false}}",
        "targets:",
        "  icmp:",
    ]
    lines += [
        f"    - {{name: i{i}, site: tinh, address: 127.{10 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}, "
        "count: 3, packet_interval: 100ms, packet_timeout: 1s}"
        for i in range(n_icmp)
    ]
    lines.append("  tcp:")
    lines += [
        f"    - {{name: t{i}, site: tinh, address: 127.0.0.1, port: {http_port}}}" for i in range(n // 3)
    ]
    lines.append("  http:")
    lines += [
        f"    - {{name: h{i}, site: tinh, url: 'http://127.0.0.1:{http_port}/'}}" for i in range(n // 3)
    ]
    cfg = tmp / "mixed.yml"
    cfg.write_text("\n".join(lines) + "\n")
    (tmp / "www").mkdir()
    (tmp / "www/index.html").write_text("ok\n")
    server = start(
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(tmp / "www"),
            str(http_port),
        ]
    )
    agent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from agent.cli import main; sys.exit(main())",
            "run",
            "--config.file",
            str(cfg),
            "--web.listen-address",
            f"127.0.0.1:{port}",
        ],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "agent.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}/metrics"
    lat: list[float] = []
    sizes: list[int] = []
    zsizes: list[int] = []
    try:
        wait_ready(url.replace("/metrics", "/-/ready"), timeout=180)
        time.sleep(20)  # past the first round of every kind
        with LoadMeter() as meter:
            cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
            while time.monotonic() - t0 < seconds:
                req = urllib.request.Request(url, headers={"Accept": ACCEPT, "Accept-Encoding": "gzip"})
                t = time.perf_counter()
                with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - loopback
                    body = r.read()
                    zipped = r.headers.get("Content-Encoding") == "gzip"
                lat.append(time.perf_counter() - t)
                sizes.append(len(gzip.decompress(body)) if zipped else len(body))
                zsizes.append(len(body))
            cpu = cpu_seconds(agent.pid) - cpu0
            meter.exclude(cpu)
        rss = rss_bytes(agent.pid) / 2**20
        hwm = int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{agent.pid}/status").read_text()).group(1)) / 1024  # type: ignore[union-attr]
    finally:
        for p in (agent, server):
            p.terminate()
            p.wait(20)
    out = (
        f"`python bench/scrape.py --mixed {n} --seconds {seconds:g}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{meter.load.text()} during the run): an agent from {'this tree' if tree == ROOT else tree} with {n} probe targets on loopback "
        f"({n_icmp} ICMP, {n // 3} TCP, {n // 3} HTTP against one `python -m http.server`), every 15 s, "
        f"scraped back to back for {seconds:g} s as Prometheus asks (OpenMetrics, gzip), so about one scrape in "
        "every few renders a round's new results and the others reuse them.\n\n"
        "| scrapes | p50 latency (ms) | p99 latency (ms) | max (ms) | response size MB, median (min-max; gzip) "
        "| agent CPU per scrape incl. probing (ms) | RSS / peak RSS (MiB) |\n|---:|---:|---:|---:|---:|---:|---|\n"
        f"| {len(lat)} | {percentile(lat, 50) * 1e3:.0f} | {percentile(lat, 99) * 1e3:.0f} | {max(lat) * 1e3:.0f} | "
        f"{median([float(x) for x in sizes]) / 1e6:.1f} ({min(sizes) / 1e6:.1f}-{max(sizes) / 1e6:.1f}; "
        f"{median([float(x) for x in zsizes]) / 1e6:.2f}) | {cpu / len(lat) * 1e3:.0f} | {rss:.0f} / {hwm:.0f} |"
    )
    print(out)
    if write:
        update_section(write, "Scrape latency with 5 000 mixed probe targets", out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mixed", type=int, default=0, help="N mixed probe targets instead (see above)")
    ap.add_argument("--seconds", type=float, default=120.0, help="with --mixed: how long to scrape")
    ap.add_argument("--tree", type=Path, default=ROOT, help="with --mixed: run the agent from this tree")
    ap.add_argument("--scrapes", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3, help="fresh processes per run; the table shows medians")
    ap.add_argument("--write", type=Path, default=None)
    ap.add_argument(
        "--python",
        action="append",
        default=None,
        help="interpreter to install and measure the agent with (repeatable; default: /usr/bin/python3, "
        "then this bench's interpreter if it is another build). The first one is the headline column.",
    )
    args = ap.parse_args()
    if args.mixed:
        mixed(args.mixed, args.seconds, args.write, args.tree.resolve())
        return
    pythons = args.python or default_interpreters()

    tmp = Path(tempfile.mkdtemp(prefix="giamsat-bench-"))
    cfg = tmp / "giamsat.yml"
    # What a commune office's agent runs: the host collector, its own site and the one above it.
    cfg.write_text(
        f"agent:\n  interval: 15s\n  state_dir: {tmp}\n  site: xa-1\n"
        "sites:\n  - {id: tinh, name: Tỉnh, level: province}\n"
        "  - {id: xa-1, name: Xã Một, level: commune, parent: tinh}\n"
        "collectors:\n  host: {}\n"
    )
    labels = [interpreter_label(p) for p in pythons]
    venvs = [install(p, tmp / f"install-{i}") for i, p in enumerate(pythons)]
    runs = [one_run(venvs, cfg, args.scrapes) for _ in range(args.runs)]

    def med(name: str, row: int) -> float:
        return median([figures[name][row] for figures, _ in runs])

    def spread(name: str, row: int) -> str:
        values = [figures[name][row] for figures, _ in runs]
        return f"{min(values):.2f}–{max(values):.2f}"

    heads = [f"giamsat on {label.split(' (')[0]}" for label in labels]
    walls = ", ".join(f"{wall:.1f}" for _, wall in runs)
    lines = [
        f"`python bench/scrape.py --scrapes {args.scrapes} --runs {args.runs}` — {args.runs} runs with fresh "
        f"processes; in each, {args.scrapes} scrapes of every process in turn, on loopback. giamsat runs the "
        "host collector (interval 15 s; a commune agent's config with its own site and its parent) and is "
        "installed by deploy/install.sh into a scratch root, once per interpreter: "
        + "; ".join(labels)
        + ". node_exporter is Debian's 1.5 (default collectors). Process CPU is all the CPU a process used "
        f"during the loop (wall {walls} s), divided by the number of scrapes; giamsat's includes its "
        "background collection. The table shows medians over the runs; ratios are the first giamsat column "
        "to node_exporter.",
        "",
        "| figure | " + " | ".join(heads) + " | node_exporter | ratio |",
        "| --- | " + " | ".join("---:" for _ in heads) + " | ---: | ---: |",
    ]
    for row, label in enumerate(FIGURES):
        values = [med(f"giamsat{i}", row) for i in range(len(venvs))]
        ref = med("node_exporter", row)
        cells = " | ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {label} | {cells} | {ref:.2f} | {values[0] / ref if ref else float('nan'):.2f}× |")
    rss_row = FIGURES.index("RSS (MiB)")
    lines += [
        "",
        "RSS against the library floor (bench/rss_floor.py: the agent's libraries and nothing else — asyncio "
        "with ssl, http.server, prometheus_client, pydantic with one model, APScheduler on asyncio, psutil, "
        "PyYAML — one scheduled reading served over HTTP, run from the same virtualenv, same runs); medians, "
        "with the range over the runs:",
        "",
    ]
    for i, label in enumerate(labels):
        floor, agent = med(f"floor{i}", rss_row), med(f"giamsat{i}", rss_row)
        lines.append(
            f"- {label}: giamsat **{agent:.2f} MiB** ({spread(f'giamsat{i}', rss_row)}), floor "
            f"{floor:.2f} MiB ({spread(f'floor{i}', rss_row)}): giamsat's own code, schemas and state add "
            f"{agent - floor:.2f} MiB."
        )
    lines += ["", READING]
    out = "\n".join(lines)
    print(out)
    if args.write:
        update_section(args.write, "Scrape latency and footprint", out)


if __name__ == "__main__":
    main()
