"""ICMP probe benchmark: giamsat vs fping vs blackbox_exporter 0.23 on the same loopback targets.

For N targets in 127.0.0.0/8 (default 1000 and 5000), 3 echoes each, it runs in the same invocation:

- giamsat: the real agent path in a child process: config -> Runner (one scheduler batch for the
  targets, as the agent schedules them) -> IcmpCollector.collect_batch -> shared IcmpEngine.ping_many ->
  per-target metric families, JobResults, store and health; with the collector thresholds and
  ``gc.freeze()`` the agent applies at start-up (agent/lifecycle.py). CPU and peak RSS of the probing
  rounds are measured inside it (config loading and a first round excluded; the mean of 4 rounds); the
  CPU of rendering every result once after each round (what the next scrape adds, then cached) is
  measured apart.
- giamsat engine: ``IcmpEngine.ping_many`` alone, the echo path without jobs or metrics.
- fping: ``fping -C 3 -q -i 0 -p <interval> -t <timeout>`` over the same list; CPU and peak RSS from
  wait4() of that child.
- blackbox_exporter: started on a free loopback port with an ``icmp`` module; since its ICMP prober sends
  one echo per /probe, each target is requested 3 times (64 requests in flight); CPU is read from
  /proc/<pid>/stat around the probing phase, RSS is its VmHWM. The HTTP client's own cost is not counted.

Prints a Markdown table and, with --write, replaces the "ICMP probes" section of docs/benchmarks.md.
``--tools "giamsat default GC"`` adds the agent path with CPython's default collector settings (the
agent never runs so; for comparison only).
Needs root (raw sockets; fping -i 0). Traffic goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# A worker measuring another tree (--baseline) imports the agent from there, and nothing of the agent
# before this line (bench.common imports the kernel: it is imported by the parent process only).
if os.environ.get("GIAMSAT_BENCH_TREE"):
    sys.path.insert(0, os.environ["GIAMSAT_BENCH_TREE"])

REPO = Path(__file__).resolve().parents[1]
INTERVAL_MS = 100
#: rounds measured per giamsat run, after a first one (their mean is the run's figure)
ROUNDS = 4
TIMEOUT_MS = 1000
COUNT = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")
READING = """Reading: the `giamsat` row is what the agent spends per round on the whole probing path in its
steady state: the mean of 4 rounds, each followed by a scrape as Prometheus would make it, after a
first round that also builds each target's lasting state (not counted). A mean, not the second round
alone: the cyclic garbage collector runs now and then, and a single round shows it in full or not at
all. Per round: one scheduler
batch for all targets (no task or deadline per target); `IcmpEngine.ping_many` sends echo i to every
target in one sender run (sequence number and checksum written into a prebuilt packet, one `sendto`
each) and one reader drains the replies with kernel timestamps; then per target ~15 metric families
(compact objects that build their samples when read; values most targets share, such as
`probe_success 1`, are shared objects), one `JobResult`, the store swap and the health update. The engine
row is the echo path alone and costs what fping costs.

The whole-round table adds what the agent pays for the next scrape: each target is ~30 series with the
default 13 RTT buckets (~2.7 kB of text), and the first scrape after a round renders what changed in each
new result (the families a result shares with the job's previous one, such as `probe_success 1`, keep
their rendering; the duration, phases, RTT figures and the histogram are new every round), then merges
all results into one answer, built as bytes once. Later scrapes of the same round only merge.

A run is busy when other processes used the machine meanwhile: fping's own cost per echo then rises
(quiet, it was ~6 µs on one VM and 18-22 µs on another; loaded, it rises by half or more) and every
ratio to it shrinks, so only quiet
runs (`--quiet-only`) say whether a ratio target is met; busy runs still compare two trees fairly when
they are interleaved (`--baseline DIR`, e.g. `git archive` of main into DIR)."""
BLACKBOX_MAX = 5000
TOOLS = {
    "giamsat": "the full agent path as it runs: one scheduler batch -> IcmpCollector.collect_batch -> "
    "IcmpEngine.ping_many -> per-target families, JobResult, store, health; the agent's GC settings "
    "(young threshold 50 000 + 40 per job, gc.freeze() once collectors are open: agent/lifecycle.py)",
    "giamsat baseline": "the same path from another tree (--baseline DIR, e.g. the commit before a change; "
    "only with --baseline)",
    "giamsat default GC": "the same with CPython's default GC settings (not how the agent runs; "
    "only with --tools)",
    "giamsat engine": "IcmpEngine.ping_many() alone (the echo path without scheduler, results or metrics)",
    "fping": "fping -C 3 -q -i 0 -p <interval> -t <timeout>",
    "blackbox_exporter": "blackbox_exporter 0.23 /probe?module=icmp, 3 requests per target, 64 in flight "
    "(not run above 5000 targets)",
}


def targets(n: int) -> list[str]:
    return [f"127.{10 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}" for i in range(n)]


# -- giamsat (child process) -------------------------------------------------------------------------


def _gc_thresholds(jobs: int) -> tuple[int, int, int]:
    try:
        from agent.lifecycle import gc_thresholds
    except ImportError:  # a --baseline tree from before the thresholds scaled with the jobs
        return (50_000, 20, 20)
    return gc_thresholds(jobs)


def agent_gc_before_start() -> None:
    """The collector thresholds the agent sets first thing (agent/lifecycle.py, ``Agent.run``)."""
    gc.set_threshold(*_gc_thresholds(0))


def agent_gc_after_start(jobs: int) -> None:
    """What the agent does once a configuration's collectors are open (agent/lifecycle.py, ``_apply``)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_gc_thresholds(jobs))


def agent_gc_after_first_round() -> None:
    """What the agent does once a configuration's first round is in (agent/lifecycle.py, ``settle_gc``)."""
    try:
        from agent.lifecycle import settle_gc
    except ImportError:  # a --baseline tree from before
        return
    settle_gc()


def giamsat_worker(n: int, gc_mode: str) -> None:
    import yaml

    from agent.config import load_config
    from agent.kernel.pipeline import Pipeline
    from agent.kernel.store import Store
    from agent.scheduler import Runner
    from exporters.exposition import ResultRenderCache, render_text

    if gc_mode == "agent":
        agent_gc_before_start()

    tmp = Path(tempfile.mkdtemp(prefix="gs-bench-"))
    cfg = {
        "agent": {"state_dir": str(tmp / "state"), "timeout": "30s", "interval": "60s"},
        "sites": [{"id": "tinh", "name": "Tinh", "level": "province"}],
        "collectors": {"host": {"enabled": False}},
        "targets": {
            "icmp": [
                {
                    "name": f"t{i}",
                    "site": "tinh",
                    "address": a,
                    "count": COUNT,
                    "packet_interval": f"{INTERVAL_MS}ms",
                    "packet_timeout": f"{TIMEOUT_MS}ms",
                }
                for i, a in enumerate(targets(n))
            ]
        },
    }
    (tmp / "c.yml").write_text(yaml.safe_dump(cfg))
    loaded = load_config(tmp / "c.yml")

    async def go() -> dict[str, float]:
        store = Store()
        runner = Runner(loaded, Pipeline(store))
        cache = ResultRenderCache()
        max_len = loaded.config.agent.max_label_length
        await runner.open()
        if gc_mode == "agent":
            agent_gc_after_start(len(runner.jobs))
        try:
            # The first round also builds each target's lasting state (histogram, parsed address): the
            # agent pays that once; the rounds after it, each followed by a scrape (which renders what
            # is new, as Prometheus's next scrape would) and a second scrape of the same round, are the
            # ones measured: the mean of ROUNDS rounds, so what the agent pays only now and then (a
            # collection by the cyclic garbage collector) is counted at its share.
            first = time.process_time()
            await runner.run_once()
            first = time.process_time() - first
            render_text(store.snapshot(), [], max_len, result_cache=cache)
            if gc_mode == "agent":
                agent_gc_after_first_round()
            cpu = wall = render = cached = 0.0
            rss = 0.0
            for _ in range(ROUNDS):
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                results = await runner.run_once()
                wall += time.perf_counter() - t0
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                rss = max(rss, _proc_hwm_mb(os.getpid()))  # before the first scrape needs memory of its own
                c0 = time.process_time()
                body, _ = render_text(store.snapshot(), [], max_len, result_cache=cache)
                render += time.process_time() - c0
                c0 = time.process_time()
                render_text(store.snapshot(), [], max_len, result_cache=cache)
                cached += time.process_time() - c0
        finally:
            await runner.close()
        received = 0
        for r in results:
            for fam in r.families:
                for s in fam.samples:
                    if s.name == "probe_icmp_packets_received":
                        received += int(s.value)
        return {
            "wall": wall / ROUNDS,
            "cpu": cpu / ROUNDS,
            "rss_mb": rss,
            "received": received,
            "render_cpu": render / ROUNDS,
            "cached_scrape_cpu": cached / ROUNDS,
            "render_rss_mb": _proc_hwm_mb(os.getpid()),
            "render_bytes": len(body),
            "first_round_cpu": first,
        }

    print(json.dumps(asyncio.run(go())))


def engine_worker(n: int) -> None:
    from collectors.probes.icmp_engine import IcmpEngine

    agent_gc_before_start()

    async def go() -> dict[str, float]:
        engine = IcmpEngine("auto")
        await engine.start()
        agent_gc_after_start(n)
        addresses = targets(n)
        cpu = wall = 0.0
        try:
            for k in range(1 + ROUNDS):  # as for the agent path: the rounds after the first are measured
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                results = await engine.ping_many(
                    addresses, count=COUNT, interval=INTERVAL_MS / 1000, timeout=TIMEOUT_MS / 1000
                )
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                if not k:
                    agent_gc_after_first_round()
                if k:
                    wall += time.perf_counter() - t0
                    cpu += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        finally:
            await engine.close()
        received = sum(r.received for r in results)
        return {
            "wall": wall / ROUNDS,
            "cpu": cpu / ROUNDS,
            "rss_mb": _proc_hwm_mb(os.getpid()),
            "received": received,
        }

    print(json.dumps(asyncio.run(go())))


BASELINE: list[Path] = []  # --baseline: the tree the "giamsat baseline" row is measured from
WORKER_PYTHON: list[str] = [sys.executable]  # --python: the interpreter the giamsat rows run on


def interpreter(python: str) -> str:
    """Which interpreter ran the giamsat rows. How CPython was built matters as much as its version:
    pyenv's default build (no profile-guided optimisation) ran this code 1.2-2x slower than Debian's
    python3, which the package runs on (docs/benchmarks.md)."""
    code = "import sys; print(sys.version.splitlines()[0], '|', sys.base_prefix)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    version, prefix = out.split(" | ")
    return f"Python {version} from {prefix}"


def _worker(mode: str, n: int, gc_mode: str = "agent", tree: Path | None = None) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("GIAMSAT_BENCH_TREE", None)
    if tree is not None:
        env["GIAMSAT_BENCH_TREE"] = str(tree)
    out = subprocess.run(
        [WORKER_PYTHON[0], __file__, "--worker", str(n), "--worker-mode", mode, "--gc", gc_mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree or REPO,
        env=env,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_giamsat(n: int) -> dict[str, float]:
    return _worker("job", n)


def run_baseline(n: int) -> dict[str, float]:
    return _worker("job", n, tree=BASELINE[0])


def run_giamsat_default_gc(n: int) -> dict[str, float]:
    return _worker("job", n, "default")


def run_engine(n: int) -> dict[str, float]:
    return _worker("engine", n)


# -- fping ---------------------------------------------------------------------------------------------


def run_fping(n: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(targets(n)) + "\n")
        path = f.name
    argv = [
        "fping",
        "-C",
        str(COUNT),
        "-q",
        "-i",
        "0",
        "-p",
        str(INTERVAL_MS),
        "-t",
        str(TIMEOUT_MS),
        "-f",
        path,
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    # Peak RSS: VmHWM polled while it runs. wait4()'s ru_maxrss would include the bench process's own
    # memory, which a spawned child inherits in its accounting until exec.
    hwm: list[float] = []

    done = threading.Event()

    def watch() -> None:
        # Not proc.poll(): it would reap the child before wait4() reads its CPU time.
        while not done.is_set():
            try:
                hwm.append(_proc_hwm_mb(proc.pid))
            except (OSError, ValueError):
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    err = proc.stderr.read()
    _, _status, ru = os.wait4(proc.pid, 0)
    done.set()
    watcher.join()
    proc.returncode = 0
    wall = time.perf_counter() - t0
    os.unlink(path)
    # "-C" summary lines: "127.10.0.1 : 0.03 0.04 -" ('-' for a lost echo)
    received = sum(
        1
        for line in err.splitlines()
        if " : " in line
        for tok in line.split(" : ", 1)[1].split()
        if tok != "-"
    )
    return {
        "wall": wall,
        "cpu": ru.ru_utime + ru.ru_stime,
        "rss_mb": max(hwm, default=0.0),
        "received": received,
    }


# -- blackbox_exporter ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _proc_hwm_mb(pid: int) -> float:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else 0.0


def run_blackbox(n: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="bb-bench-"))
    cfg = tmp / "bb.yml"
    cfg.write_text(
        "modules:\n  icmp:\n    prober: icmp\n    timeout: %ss\n    icmp:\n      preferred_ip_protocol: ip4\n"
        % (TIMEOUT_MS / 1000)
    )
    port = _free_port()
    proc = subprocess.Popen(
        ["prometheus-blackbox-exporter", f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/-/healthy", timeout=1).read()  # noqa: S310 - loopback only
                break
            except OSError:
                time.sleep(0.1)

        def probe(addr: str) -> int:
            with urllib.request.urlopen(f"{base}/probe?module=icmp&target={addr}", timeout=10) as r:  # noqa: S310
                return 1 if re.search(rb"^probe_success 1", r.read(), re.M) else 0

        work = [a for _round in range(COUNT) for a in targets(n)]
        cpu0, t0 = _proc_cpu(proc.pid), time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            received = sum(pool.map(probe, work))
        wall = time.perf_counter() - t0
        cpu = _proc_cpu(proc.pid) - cpu0
        rss = _proc_hwm_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    return {"wall": wall, "cpu": cpu, "rss_mb": rss, "received": received}


# -- report --------------------------------------------------------------------------------------------

Rows = dict[int, dict[str, dict[str, float]]]


#: Tools whose "others" share is not read for the busy flag: they flood loopback with echoes in a
#: fraction of a second, and the kernel threads that then answer them (ksoftirqd) count as other
#: processes (30-45 % of the cores during a 0.3 s fping run on an otherwise idle machine).
FLOODS = ("fping", "giamsat engine")


def run_busy(rows: Rows, n: int, max_load: float, max_others: float) -> bool:
    return any(
        r["loadavg"] > max_load or (tool not in FLOODS and r["others"] > max_others)
        for tool, r in rows[n].items()
    )


def ratios(runs: list[Rows], n: int, tool: str, field: str = "cpu") -> list[float]:
    """``tool``'s CPU (or ``field``) over fping's CPU, in each run where both ran."""
    return [
        r[n][tool][field] / r[n]["fping"]["cpu"]
        for r in runs
        if tool in r[n] and "fping" in r[n] and r[n]["fping"]["cpu"] > 0
    ]


def whole_path(r: dict[str, float]) -> float:
    """One round as the agent pays for it: the probing path plus the next scrape's rendering."""
    return r["cpu"] + r["render_cpu"]


def table(rows: Rows, runs: list[Rows]) -> str:
    lines = [
        "| targets | tool | echoes answered | wall s | CPU s | CPU µs/echo | CPU vs fping (median of runs) "
        "| core share at 30 s interval | peak RSS MiB | load, others' CPU |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n, by_tool in rows.items():
        for tool, r in by_tool.items():
            per_echo = r["cpu"] / (n * COUNT) * 1e6
            rs = ratios(runs, n, tool)
            ratio = f"{statistics.median(rs):.2f}×" if rs else "-"
            lines.append(
                f"| {n} | {tool} | {int(r['received'])}/{n * COUNT} | {r['wall']:.2f} | {r['cpu']:.3f} | "
                f"{per_echo:.1f} | {ratio} | {r['cpu'] / 30 * 100:.1f} % | {r['rss_mb']:.1f} | "
                f"{r['loadavg']:.1f}, {r['others'] * 100:.0f} % |"
            )
    return "\n".join(lines)


def whole_table(rows: Rows, runs: list[Rows]) -> str:
    """The agent's whole cost per round (probing + the next scrape) against fping's round."""
    out = [
        "| targets | tree | probing CPU s | next scrape (render new results + merge) CPU s | later scrapes CPU s "
        "| whole round vs fping (median of runs; each run) | /metrics size MB | peak RSS MiB probing / after "
        "the scrape |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for n, by_tool in rows.items():
        for tool in ("giamsat", "giamsat baseline"):
            g = by_tool.get(tool)
            if g is None or "render_cpu" not in g:
                continue
            rs = [
                whole_path(r[n][tool]) / r[n]["fping"]["cpu"]
                for r in runs
                if tool in r[n] and "fping" in r[n] and r[n]["fping"]["cpu"] > 0
            ]
            ratio = f"{statistics.median(rs):.2f}× ({', '.join(f'{x:.2f}' for x in rs)})" if rs else "-"
            out.append(
                f"| {n} | {'this' if tool == 'giamsat' else 'baseline'} | {g['cpu']:.3f} | "
                f"{g['render_cpu']:.3f} | {g.get('cached_scrape_cpu', float('nan')):.3f} | {ratio} | "
                f"{g['render_bytes'] / 1e6:.1f} | {g['rss_mb']:.0f} / {g['render_rss_mb']:.0f} |"
            )
    return "\n".join(out)


def median_rows(runs: list[Rows]) -> Rows:
    out: Rows = {}
    for n, by_tool in runs[0].items():
        out[n] = {}
        for tool in by_tool:
            present = [r[n][tool] for r in runs if tool in r[n]]
            out[n][tool] = {k: statistics.median(p[k] for p in present) for k in present[0]}
    return out


def ratio_note(runs: list[Rows], busy: dict[tuple[int, int], bool]) -> str:
    """The giamsat/fping CPU ratio of each run (busy runs marked), since medians of each tool alone can
    hide how they pair."""
    parts = []
    for n in runs[0]:
        rs = ratios(runs, n, "giamsat")
        if rs:
            marks = [f"{x:.2f}×{'*' if busy[(k, n)] else ''}" for k, x in enumerate(rs)]
            parts.append(f"{n}: " + ", ".join(marks) + f" (median {statistics.median(rs):.2f}×)")
    if not parts:
        return ""
    return "giamsat/fping CPU in each run (* a busy run): " + "; ".join(parts) + ".\n\n"


def write_section(text: str) -> None:
    path = REPO / "docs" / "benchmarks.md"
    doc = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    section = "## ICMP probes\n\n" + text.strip() + "\n"
    pattern = re.compile(r"^## ICMP probes\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        doc = pattern.sub(lambda _m: section + "\n", doc).rstrip() + "\n"
    else:
        doc = doc.rstrip() + "\n\n" + section
    path.parent.mkdir(exist_ok=True)
    path.write_text(doc, encoding="utf-8")


def main() -> None:
    from bench.common import LoadMeter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument(
        "--tools",
        nargs="+",
        default=[t for t in TOOLS if t not in ("giamsat default GC", "giamsat baseline")],
    )
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    ap.add_argument("--runs", type=int, default=5, help="interleaved runs; the table shows medians")
    ap.add_argument(
        "--busy-load", type=float, default=1.5, help="1-minute load average that makes a run busy"
    )
    ap.add_argument(
        "--busy-others",
        type=float,
        default=0.25,
        help="share of all cores used by other processes during a tool's run that makes the run busy",
    )
    ap.add_argument(
        "--quiet-only", action="store_true", help="with --write: refuse to write if any run was busy"
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        help="also measure the agent path from this tree (e.g. a `git archive` of main)",
    )
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter the giamsat rows run on (a venv of it with this tree installed); the "
        "package runs on Debian's python3, e.g. `/usr/bin/python3 -m venv .venv-deb && .venv-deb/bin/pip "
        "install -e .` then --python .venv-deb/bin/python",
    )
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--worker-mode", default="job", help=argparse.SUPPRESS)
    ap.add_argument("--gc", default="agent", choices=["agent", "default"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        if args.worker_mode == "engine":
            engine_worker(args.worker)
        else:
            giamsat_worker(args.worker, args.gc)
        return
    WORKER_PYTHON[0] = args.python
    if args.baseline:
        BASELINE.append(args.baseline.resolve())
        if "giamsat baseline" not in args.tools:
            args.tools.insert(1, "giamsat baseline")
    runners = {
        "giamsat": run_giamsat,
        "giamsat baseline": run_baseline,
        "giamsat default GC": run_giamsat_default_gc,
        "giamsat engine": run_engine,
        "fping": run_fping,
        "blackbox_exporter": run_blackbox,
    }
    runs: list[Rows] = []
    busy: dict[tuple[int, int], bool] = {}
    for run in range(args.runs):
        rows: Rows = {}
        # Interleaved: every tool in every run, in the opposite order in every other run, so a burst of
        # load from other processes does not always land on the same tool.
        order = list(args.tools) if run % 2 == 0 else list(reversed(args.tools))
        for n in args.targets:
            rows[n] = {}
            for tool in order:
                if tool == "blackbox_exporter" and (n > BLACKBOX_MAX or run > 0):
                    continue  # 3 HTTP requests per target, ~40x fping: one run at 1000/5000 shows its cost
                with LoadMeter() as meter:
                    r = runners[tool](n)
                r["loadavg"], r["others"] = meter.load.loadavg, meter.load.others
                rows[n][tool] = r
            rows[n] = {t: rows[n][t] for t in args.tools if t in rows[n]}
            busy[(run, n)] = b = run_busy(rows, n, args.busy_load, args.busy_others)
            g, f = rows[n].get("giamsat"), rows[n].get("fping")
            summary = ""
            if g and f and f["cpu"] > 0:
                summary = f"giamsat/fping {g['cpu'] / f['cpu']:.2f}×"
                if "render_cpu" in g:
                    summary += f", whole round {whole_path(g) / f['cpu']:.2f}×"
            loads = ", ".join(f"{t} {r['loadavg']:.1f}/{r['others'] * 100:.0f} %" for t, r in rows[n].items())
            print(
                f"run {run + 1} {n} targets: {summary} (load/others: {loads})" + ("  BUSY" if b else ""),
                file=sys.stderr,
            )
        runs.append(rows)
    rows = median_rows(runs)
    n_busy = sum(busy.values())
    quiet = n_busy == 0
    state = (
        "a quiet machine: every run under the busy limits"
        if quiet
        else f"**a busy machine: {n_busy} of {len(busy)} runs over the busy limits** (marked * below)"
    )
    text = (
        f"`python bench/icmp.py --runs {args.runs}{' --baseline DIR' if args.baseline else ''}"
        f"{' --python ' + args.python if args.python != sys.executable else ''} --write` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.node()}: {os.cpu_count()} cores; giamsat on {interpreter(args.python)}; {args.runs} runs, "
        "the tools interleaved in each run and in reverse order every other run; the table shows per-field "
        "medians over the runs, and the ratio column the median of each run's own ratio). Taken on "
        f"{state}; a run is busy when a tool started with a 1-minute load average over {args.busy_load:g} or "
        f"other processes used over {args.busy_others * 100:.0f} % of all cores while a giamsat row or "
        "blackbox_exporter ran (the 'load, others' CPU' column: /proc/stat's process time minus the bench's "
        "own; for fping and the engine it includes the kernel threads answering their echo floods, so it is "
        f"shown but not judged). {COUNT} echoes per target to "
        f"127.0.0.0/8, {INTERVAL_MS} ms apart, {TIMEOUT_MS} ms reply timeout. 'core share' is the CPU of one "
        "round spread over a 30 s interval.\n\n"
        + table(rows, runs)
        + "\n\n"
        + ratio_note(runs, busy)
        + "The whole round as the agent pays for it: the probing path above plus the first scrape after the "
        "round (rendering each new result once, then merging all of them into one answer); later scrapes "
        "of the same round reuse the rendered results:\n\n"
        + whole_table(rows, runs)
        + "\n\n"
        + "\n".join(f"- **{k}**: {v}" for k, v in TOOLS.items() if k in args.tools)
        + "\n\n"
        + READING
    )
    print(text)
    if args.write:
        if args.quiet_only and not quiet:
            raise SystemExit(f"bench/icmp.py: {n_busy} of {len(busy)} runs were busy; docs not written")
        write_section(text)


if __name__ == "__main__":
    main()
