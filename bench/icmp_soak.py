"""Soak: an agent probing N ICMP targets every 15 s and scraped every 15 s; its RSS every minute.

Usage (as root: raw ICMP sockets; traffic to 127.0.0.0/8 only):

    .venv/bin/python bench/icmp_soak.py                  # 5 000 targets, 10 minutes
    .venv/bin/python bench/icmp_soak.py --minutes 3      # the short version
    .venv/bin/python bench/icmp_soak.py --minutes 3 --tracemalloc 120   # what holds memory at 2 min

It starts ``giamsat run`` from this tree with N ICMP targets in 127.0.0.0/8 (3 echoes each, interval
15 s), scrapes /metrics every 15 s as Prometheus does (OpenMetrics asked for first, gzip), and prints
once a minute: the agent's RSS (the lowest seen just before a scrape, so a scrape's own memory is
not mistaken for growth) and peak RSS (VmHWM), its CPU over the minute, the scrapes' latency and
size, and the machine's load. At the end: the peak, and the growth of RSS from the second minute to
the last (the first minute holds start-up: loading the configuration, the first rounds).

``--malloc-stats`` prints pymalloc's and glibc's figures before a scrape each minute (with
GIAMSAT_TRIM=1 in the environment, what ``malloc_trim`` then returns; GIAMSAT_TYPES=1, the live
objects' sizes by type). ``--tracemalloc SECONDS`` traces the agent's allocations from readiness on (slower, and its RSS is not
comparable; what start-up allocated, the configuration's models, is not seen) and prints, that long
after start, the largest holders of memory: by the line that allocated it, and by the innermost line
of this project's code on the way there (what a pydantic or library allocation was for).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import LoadMeter, cpu_seconds, free_port, rss_bytes

ROOT = Path(__file__).resolve().parent.parent
ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def targets(n: int) -> list[str]:
    return [f"127.{10 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}" for i in range(n)]


def config(tmp: Path, n: int, interval: int) -> Path:
    lines = [
        "agent:",
        f"  state_dir: {tmp / 'state'}",
        f"  interval: {interval}s",
        "  timeout: 10s",
        "sites:",
        "  - {id: tinh, name: Tinh, level: province}",
        "collectors:",
        "  host: {enabled: false}",
        "targets:",
        "  icmp:",
    ]
    lines += [
        f"    - {{name: t{i}, site: tinh, address: {a}, count: 3, packet_interval: 100ms, packet_timeout: 1s}}"
        for i, a in enumerate(targets(n))
    ]
    path = tmp / "soak.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def hwm_bytes(pid: int) -> int:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) * 1024 if m else 0


def scrape(url: str, timeout: float = 30) -> tuple[float, int, int]:
    """Latency, compressed and plain size of one scrape as Prometheus makes it."""
    req = urllib.request.Request(url, headers={"Accept": ACCEPT, "Accept-Encoding": "gzip"})  # noqa: S310
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - loopback
        body = r.read()
        zipped = r.headers.get("Content-Encoding") == "gzip"
    took = time.perf_counter() - t0
    return took, len(body), len(gzip.decompress(body)) if zipped else len(body)


#: The agent under tracemalloc: SIGUSR1 dumps a snapshot to the file named by GIAMSAT_SNAPSHOT.
TRACED = """
import os, signal, sys, tracemalloc
def dump(*_):
    if not tracemalloc.is_tracing():  # the first signal: start (start-up itself is not traced)
        tracemalloc.start(6)
        return
    tracemalloc.take_snapshot().dump(os.environ["GIAMSAT_SNAPSHOT"])
signal.signal(signal.SIGUSR1, dump)
from agent.cli import main
sys.exit(main())
"""


#: The agent with SIGUSR2 printing where its heap is: pymalloc's arenas and glibc's malloc (into its log).
MALLOC_STATS = """
import ctypes, os, signal, sys
class _Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _Info
def stats(*_):
    sys._debugmallocstats()
    i = _libc.mallinfo2()
    print(f"glibc: heap {i.arena >> 20} MiB (in use {i.uordblks >> 20}, free {i.fordblks >> 20}, "
          f"top {i.keepcost >> 20}), mmapped {i.hblkhd >> 20} MiB in {i.hblks} blocks", file=sys.stderr, flush=True)
    if os.environ.get("GIAMSAT_TRIM"):
        before = rss()
        _libc.malloc_trim(0)
        print(f"malloc_trim: RSS {before:.1f} -> {rss():.1f} MiB", file=sys.stderr, flush=True)
    if os.environ.get("GIAMSAT_TYPES"):  # after the trim: its own walk takes memory
        types()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
def types():
    # every object reachable from a gc-tracked one, counted once: bytes, str and floats are not tracked
    import gc
    seen, size, count = set(), {}, {}
    for o in gc.get_objects():
        for x in (o, *gc.get_referents(o)):
            if id(x) in seen:
                continue
            seen.add(id(x))
            t = type(x).__name__
            size[t] = size.get(t, 0) + sys.getsizeof(x)
            count[t] = count.get(t, 0) + 1
    top = sorted(size.items(), key=lambda kv: -kv[1])[:15]
    print("types: " + "; ".join(f"{t} {n / 2**20:.1f} MiB/{count[t]}" for t, n in top), file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR2, stats)
from agent.cli import main
sys.exit(main())
"""


def show_malloc_stats(log: Path, since: int) -> None:
    """The summary lines of the last SIGUSR2 report in the agent's log."""
    text = log.read_text(errors="replace")[since:]
    wanted = (
        "# arenas allocated current",
        "bytes in allocated blocks",
        "bytes in available blocks",
        "bytes in unused pools",
        "bytes lost to",
        "Total",
        "glibc:",
        "types:",
        "malloc_trim:",
    )
    for line in text.splitlines():
        if line.strip().startswith(wanted):
            print("  " + line.strip())


def _settled(path: Path) -> bool:
    """The snapshot file has stopped growing (the agent writes it in one go)."""
    size = path.stat().st_size
    time.sleep(1.0)
    return path.stat().st_size == size


def show_snapshot(path: Path, top: int) -> None:
    import tracemalloc

    snap = tracemalloc.Snapshot.load(str(path)).filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<unknown>")]
    )
    total = sum(t.size for t in snap.traces)
    print(f"tracemalloc: {total / 2**20:.1f} MiB in {len(snap.traces)} blocks; by the line that allocated:")
    for st in snap.statistics("lineno")[:top]:
        f = st.traceback[0]
        print(f"  {st.size / 2**20:7.2f} MiB {st.count:8d}  {short(f.filename)}:{f.lineno}")
    by_own: dict[tuple[str, int], list[int]] = {}
    root = str(ROOT)
    for t in snap.traces:
        frames = [f for f in t.traceback if f.filename.startswith(root) and "/.venv/" not in f.filename]
        key = (frames[-1].filename, frames[-1].lineno) if frames else ("(outside the project)", 0)
        acc = by_own.setdefault(key, [0, 0])
        acc[0] += t.size
        acc[1] += 1
    print("by the innermost line of the project on the way:")
    for (file, line), (size, count) in sorted(by_own.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {size / 2**20:7.2f} MiB {count:8d}  {short(file)}:{line}")


def short(filename: str) -> str:
    for prefix in (str(ROOT) + "/.venv/lib/", str(ROOT) + "/"):
        if filename.startswith(prefix):
            return filename[len(prefix) :]
    return filename


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=5000)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--interval", type=int, default=15, help="probe and scrape interval, seconds")
    ap.add_argument("--limit-mib", type=float, default=120.0, help="the peak RSS to stay under")
    ap.add_argument("--tracemalloc", type=float, default=0.0, metavar="SECONDS", help="largest holders then")
    ap.add_argument("--top", type=int, default=15, help="holders shown with --tracemalloc")
    ap.add_argument(
        "--malloc-stats", action="store_true", help="print pymalloc's and glibc's heap figures each minute"
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="giamsat-soak-"))
    cfg = config(tmp, args.targets, args.interval)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-c",
        TRACED
        if args.tracemalloc
        else MALLOC_STATS
        if args.malloc_stats
        else "import sys; from agent.cli import main; sys.exit(main())",
        "run",
        "--config.file",
        str(cfg),
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]
    log = (tmp / "agent.log").open("w")
    snapshot = tmp / "agent.snapshot"
    env = {**os.environ, "GIAMSAT_SNAPSHOT": str(snapshot)}
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    print(
        f"giamsat soak: {args.targets} ICMP targets, probed and scraped every {args.interval} s, "
        f"{args.minutes:g} min; {os.cpu_count()} cores; agent pid {proc.pid}, log {tmp / 'agent.log'}",
        flush=True,
    )
    rss_by_minute: list[float] = []
    try:
        t_start = time.monotonic()
        deadline = t_start + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/-/ready", timeout=5) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the agent did not become ready; see {tmp / 'agent.log'}")
            time.sleep(0.5)
        print(f"ready after {time.monotonic() - t_start:.1f} s", flush=True)
        if args.tracemalloc:  # traced from readiness on: what lives then was allocated by the rounds
            proc.send_signal(signal.SIGUSR1)
        print(
            "minute | RSS MiB before a scrape (lowest) | peak RSS MiB | agent CPU s/min | scrape p50/max ms | size MB (gzip) | machine"
        )
        end = t_start + args.minutes * 60
        traced_at = t_start + args.tracemalloc if args.tracemalloc else None
        minute = 0
        while time.monotonic() < end:
            minute += 1
            lat: list[float] = []
            before: list[float] = []
            size = plain = 0
            cpu0 = cpu_seconds(proc.pid)
            with LoadMeter() as meter:
                stop = min(end, t_start + minute * 60)
                next_scrape = time.monotonic()
                while time.monotonic() < stop:
                    if traced_at is not None and time.monotonic() >= traced_at:
                        traced_at = None
                        proc.send_signal(signal.SIGUSR1)
                        for _ in range(600):
                            if snapshot.exists() and snapshot.stat().st_size and _settled(snapshot):
                                break
                            time.sleep(0.5)
                        show_snapshot(snapshot, args.top)
                    if time.monotonic() >= next_scrape:
                        before.append(rss_bytes(proc.pid) / 2**20)  # between scrapes: no answer in memory
                        took, size, plain = scrape(base + "/metrics", 300 if args.tracemalloc else 30)
                        lat.append(took)
                        next_scrape += args.interval
                    time.sleep(0.2)
                meter.exclude(cpu_seconds(proc.pid) - cpu0)  # the agent is not this process's reaped child
            if proc.poll() is not None:
                raise SystemExit(f"the agent exited ({proc.returncode}); see {tmp / 'agent.log'}")
            cpu = cpu_seconds(proc.pid) - cpu0
            if args.malloc_stats:  # just before the next scrape: no answer in memory
                mark = (tmp / "agent.log").stat().st_size
                proc.send_signal(signal.SIGUSR2)
                time.sleep(10.0 if os.environ.get("GIAMSAT_TYPES") else 1.0)
                print(f"heap at minute {minute} (RSS {rss_bytes(proc.pid) / 2**20:.1f} MiB):")
                show_malloc_stats(tmp / "agent.log", mark)
            rss, hwm = rss_bytes(proc.pid) / 2**20, hwm_bytes(proc.pid) / 2**20
            if before:
                rss = min(before)
            rss_by_minute.append(rss)
            lat.sort()
            p50 = lat[len(lat) // 2] * 1e3 if lat else float("nan")
            print(
                f"{minute:6d} | {rss:7.1f} | {hwm:12.1f} | {cpu:15.2f} | {p50:7.0f}/{(lat[-1] * 1e3 if lat else 0):.0f} | "
                f"{plain / 1e6:.1f} ({size / 1e6:.1f}) | {meter.load.text()}",
                flush=True,
            )
        peak = hwm_bytes(proc.pid) / 2**20
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    growth = rss_by_minute[-1] - rss_by_minute[1] if len(rss_by_minute) > 2 else float("nan")
    verdict = "under" if peak <= args.limit_mib else "OVER"
    print(
        f"peak RSS {peak:.1f} MiB ({verdict} {args.limit_mib:g} MiB); RSS minute 2 -> {len(rss_by_minute)}: "
        f"{growth:+.1f} MiB"
    )


if __name__ == "__main__":
    main()
