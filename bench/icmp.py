"""ICMP probe benchmark: giamsat vs fping vs blackbox_exporter 0.23 on the same loopback targets.

For N targets in 127.0.0.0/8 (default 1000 and 5000), 3 echoes each, it runs in the same invocation:

- giamsat: the real agent path in a child process: config -> Runner (one scheduler batch for the
  targets, as the agent schedules them) -> IcmpCollector.collect_batch -> shared IcmpEngine.ping_many ->
  per-target metric families, JobResults, store and health; with the collector thresholds and
  ``gc.freeze()`` the agent applies at start-up (agent/lifecycle.py). CPU and peak RSS of the probing
  round are measured inside it (config loading excluded); the CPU of rendering every result once (what
  the next scrape adds, then cached) is measured after it and printed apart.
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

REPO = Path(__file__).resolve().parents[1]
INTERVAL_MS = 100
TIMEOUT_MS = 1000
COUNT = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")
READING = """Reading: the `giamsat` row is what the agent spends per round on the whole probing path in its
steady state (a first round, which also builds each target's lasting state, runs before and is not
counted; it costs about 20 % more). Per round: one scheduler batch for all targets (no task or deadline
per target); `IcmpEngine.ping_many` sends echo i to every target in one sender run (sequence number and
checksum written into a prebuilt packet, one `sendto` each) and one reader drains the replies with
kernel timestamps; then per target ~15 metric families (compact objects that build their samples when
read; values most targets share, such as `probe_success 1`, are shared objects), one `JobResult`, the
store swap and the health update. The engine row is the echo path alone and costs what fping costs.

Where the giamsat row's CPU goes (10 000 targets, steady state, py-spy and timers around the parts):
the `sendto`/`recvmsg` system calls a bit over half (on loopback `sendto` also pays the kernel's whole
receive and reply path, for every tool alike; fping's own CPU is ~90 % system time); the engine's Python
per echo (sequence numbers, packet fields, reply matching) 15-20 %; per target about 15-20 µs, i.e.
25-30 %: building the families ~4-6 µs, `JobResult`, store swap (which also frees the previous round's
result) and health ~3-5 µs, the callbacks between engine, collector and scheduler ~2-3 µs, the rest
cache misses over 10 000 targets' state. Garbage collection, inside those, is ~5 % (three
young-generation passes per round at 10 000 targets). So the gap to fping is the Python work per
target, about 5-7 µs per echo at 3 echoes per target; more echoes per target shrink it.

Not in the table: rendering those results for the next scrape, measured apart above. Each ICMP target is
~37 series (~3.4 kB of text), and the first scrape after a round renders every new result once (then
it is cached), which at these target counts costs about twice the probing itself.

The machine is shared with other agents' jobs, so single runs vary by ±25 %: compare the ratios within
one run (listed above) rather than absolute figures across runs."""
BLACKBOX_MAX = 5000
TOOLS = {
    "giamsat": "the full agent path as it runs: one scheduler batch -> IcmpCollector.collect_batch -> "
    "IcmpEngine.ping_many -> per-target families, JobResult, store, health; the agent's GC settings "
    "(gc.set_threshold(50000, 20, 20) at start, gc.freeze() once collectors are open)",
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


def agent_gc_before_start() -> None:
    """The collector thresholds the agent sets first thing (agent/lifecycle.py, ``Agent.run``)."""
    gc.set_threshold(50_000, 20, 20)


def agent_gc_after_start() -> None:
    """What the agent does once a configuration's collectors are open (agent/lifecycle.py, ``_apply``)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def giamsat_worker(n: int, gc_mode: str) -> None:
    import yaml

    from agent.config import load_config
    from agent.kernel.pipeline import Pipeline
    from agent.kernel.store import Store
    from agent.scheduler import Runner
    from exporters.exposition import render_text

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
        await runner.open()
        if gc_mode == "agent":
            agent_gc_after_start()
        try:
            # The first round also builds each target's lasting state (histogram, parsed address): the
            # agent pays that once; every later round, every 30 s, is the one measured.
            first = time.process_time()
            await runner.run_once()
            first = time.process_time() - first
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            results = await runner.run_once()
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            rss = _proc_hwm_mb(os.getpid())  # before rendering, which needs memory of its own
            # What the first scrape after the round adds: rendering every result once (then cached).
            c0 = time.process_time()
            body, _ = render_text(store.snapshot(), [], loaded.config.agent.max_label_length)
            render = time.process_time() - c0
        finally:
            await runner.close()
        received = 0
        for r in results:
            for fam in r.families:
                for s in fam.samples:
                    if s.name == "probe_icmp_packets_received":
                        received += int(s.value)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        return {
            "wall": wall,
            "cpu": cpu,
            "rss_mb": rss,
            "received": received,
            "render_cpu": render,
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
        agent_gc_after_start()
        addresses = targets(n)
        try:
            for _round in (1, 2):  # as for the agent path: the second round is measured
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                results = await engine.ping_many(
                    addresses, count=COUNT, interval=INTERVAL_MS / 1000, timeout=TIMEOUT_MS / 1000
                )
                wall = time.perf_counter() - t0
                r1 = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            await engine.close()
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        received = sum(r.received for r in results)
        return {"wall": wall, "cpu": cpu, "rss_mb": _proc_hwm_mb(os.getpid()), "received": received}

    print(json.dumps(asyncio.run(go())))


def _worker(mode: str, n: int, gc_mode: str = "agent") -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(n), "--worker-mode", mode, "--gc", gc_mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_giamsat(n: int) -> dict[str, float]:
    return _worker("job", n)


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

    def watch() -> None:
        while proc.poll() is None:
            try:
                hwm.append(_proc_hwm_mb(proc.pid))
            except (OSError, ValueError):
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    err = proc.stderr.read()
    _, _status, ru = os.wait4(proc.pid, 0)
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


def table(rows: dict[int, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| targets | tool | echoes answered | wall s | CPU s | CPU µs/echo | CPU vs fping | core share at 30 s interval | peak RSS MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, by_tool in rows.items():
        fping_cpu = by_tool.get("fping", {}).get("cpu", 0.0)
        for tool, r in by_tool.items():
            per_echo = r["cpu"] / (n * COUNT) * 1e6
            ratio = f"{r['cpu'] / fping_cpu:.2f}×" if fping_cpu else "-"
            lines.append(
                f"| {n} | {tool} | {int(r['received'])}/{n * COUNT} | {r['wall']:.2f} | {r['cpu']:.3f} | "
                f"{per_echo:.1f} | {ratio} | {r['cpu'] / 30 * 100:.1f} % | {r['rss_mb']:.1f} |"
            )
    return "\n".join(lines)


def median_rows(runs: list[dict[int, dict[str, dict[str, float]]]]) -> dict[int, dict[str, dict[str, float]]]:
    out: dict[int, dict[str, dict[str, float]]] = {}
    for n, by_tool in runs[0].items():
        out[n] = {
            tool: {k: statistics.median(r[n][tool][k] for r in runs) for k in fields}
            for tool, fields in by_tool.items()
        }
    return out


def ratio_note(runs: list[dict[int, dict[str, dict[str, float]]]]) -> str:
    """The giamsat/fping CPU ratio of each run, since the median of each tool alone can hide pairing."""
    if len(runs) < 2:
        return ""
    parts = []
    for n in runs[0]:
        ratios = [
            r[n]["giamsat"]["cpu"] / r[n]["fping"]["cpu"]
            for r in runs
            if "fping" in r[n] and "giamsat" in r[n]
        ]
        if ratios:
            parts.append(
                f"{n}: "
                + ", ".join(f"{x:.2f}×" for x in ratios)
                + f" (median {statistics.median(ratios):.2f}×)"
            )
    return "giamsat/fping CPU in each run: " + "; ".join(parts) + ".\n\n" if parts else ""


def render_note(rows: dict[int, dict[str, dict[str, float]]]) -> str:
    parts = [
        f"{n}: {r['giamsat']['render_cpu']:.2f} s CPU for {r['giamsat']['render_bytes'] / 1e6:.1f} MB "
        f"(peak RSS then {r['giamsat']['render_rss_mb']:.0f} MiB)"
        for n, r in rows.items()
        if "render_cpu" in r.get("giamsat", {})
    ]
    if not parts:
        return ""
    return (
        "Rendering one round's results as exposition text (what the first scrape after the round adds, "
        "not in the table): " + "; ".join(parts) + ".\n\n"
    )


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--tools", nargs="+", default=[t for t in TOOLS if t != "giamsat default GC"])
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    ap.add_argument("--runs", type=int, default=1, help="repeat everything; the table shows medians")
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
    runners = {
        "giamsat": run_giamsat,
        "giamsat default GC": run_giamsat_default_gc,
        "giamsat engine": run_engine,
        "fping": run_fping,
        "blackbox_exporter": run_blackbox,
    }
    runs: list[dict[int, dict[str, dict[str, float]]]] = []
    loads: list[float] = []
    for run in range(args.runs):
        rows: dict[int, dict[str, dict[str, float]]] = {}
        for n in args.targets:
            rows[n] = {}
            for tool in args.tools:
                if tool == "blackbox_exporter" and n > BLACKBOX_MAX:
                    continue  # 3 HTTP requests per target: the 1000/5000 rows already show its cost per echo
                rows[n][tool] = runners[tool](n)
                print(f"run {run + 1} {n} {tool}: {rows[n][tool]}", file=sys.stderr)
        runs.append(rows)
        loads.append(os.getloadavg()[0])
    rows = median_rows(runs)
    if args.runs > 1:
        how = (
            f"{args.runs} runs, each tool side by side in every run; the table shows per-field medians over the "
            f"runs; load average at the end of each run: {', '.join(f'{x:.1f}' for x in loads)}"
        )
    else:
        how = f"one run, all tools side by side; load {loads[0]:.1f} at the end"
    text = (
        f"`python bench/icmp.py --write{f' --runs {args.runs}' if args.runs > 1 else ''}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}: {os.cpu_count()} cores "
        f"shared with other jobs; Python {platform.python_version()}; {how}). {COUNT} echoes per target to "
        f"127.0.0.0/8, {INTERVAL_MS} ms apart, {TIMEOUT_MS} ms reply timeout. "
        "'core share' is the CPU of one round spread over a 30 s interval.\n\n"
        + table(rows)
        + "\n\n"
        + ratio_note(runs)
        + render_note(rows)
        + "\n".join(f"- **{k}**: {v}" for k, v in TOOLS.items() if k in args.tools)
        + "\n\n"
        + READING
    )
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
