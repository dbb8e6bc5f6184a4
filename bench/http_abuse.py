"""The agent's endpoint under abuse: slow headers (slowloris) and header floods, against `giamsat run`.

Usage: .venv/bin/python bench/http_abuse.py [--hold 60] [--connections 300] [--floods 250]
       [--parallel 25] [--sources 1] [--no-tls]

1. Slow headers: ``--connections`` connections send a request line, then one header byte each every
   ``--interval`` seconds (reopened each round once the agent closed them, as slowloris.py does), for
   ``--hold`` seconds, while a scraper polls /metrics every 250 ms on a new connection each. Printed:
   answers, answers within 1 s, p50/p99 scrape time, the agent's peak threads and RSS. Plain HTTP, then
   over TLS with basic auth (the shipped example web config with test certificates).
2. Header flood: ``--floods`` requests of 6 MB of headers each, ``--parallel`` at a time. Printed: the agent's RSS
   before, at its peak (sampled every 20 ms) and 5 s after, and the answers (431 expected).

The peak threads and RSS are what the unit's TasksMax= and MemoryMax= are sized from (docs/security.md).
Load average is printed with each figure: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, rss_bytes
from tests.integration.http_attacks import RunningAgent, Slowloris, header_flood, running_agent

MIB = 1024 * 1024


class Sampler:
    """Peak RSS and thread count of a process, sampled every ``period`` seconds in a thread."""

    def __init__(self, pid: int, period: float = 0.02) -> None:
        self.pid, self.period = pid, period
        self.peak_rss = 0
        self.peak_threads = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, rss_bytes(self.pid))
            self.peak_threads = max(self.peak_threads, len(os.listdir(f"/proc/{self.pid}/task")))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def slow_headers(
    agent: RunningAgent, n: int, interval: float, hold: float, label: str, sources: int = 1
) -> None:
    sampler = Sampler(agent.proc.pid, 0.2)
    # One source address: the scraper's own (127.0.0.1); more: 127.0.0.2.. spread over every slot.
    addrs = tuple(f"127.0.0.{2 + i}" for i in range(sources)) if sources > 1 else ()
    attack = Slowloris("127.0.0.1", agent.port, n, interval=interval, tls=agent.tls, sources=addrs).start()
    time.sleep(min(5.0, interval * 2))  # every connection open and trickling
    scraper = agent.scraper(period=0.25, timeout=10.0).start()
    time.sleep(hold)
    held = attack.held()
    log = scraper.stop()
    attack.stop()
    sampler.stop()
    took = [t for t, status in log.results if status == 200]
    total = len(log.results)
    print(
        f"slow headers [{label}]: {n} connections from {sources} address(es), 1 byte / {interval:g} s "
        f"each, held {hold:g} s "
        f"({held} open at the end, {attack.opened} opened, {attack.closed_by_server} closed by the agent)"
    )
    print(
        f"  scraper every 250 ms: {len(took)}/{total} answered ({100 * len(took) / max(1, total):.1f} %), "
        f"{log.answered(1.0)}/{total} within 1 s ({100 * log.answered(1.0) / max(1, total):.1f} %), "
        f"p50 {1000 * percentile(took, 50):.1f} ms, p99 {1000 * percentile(took, 99):.1f} ms"
    )
    print(
        f"  agent peak: {sampler.peak_threads} threads, {sampler.peak_rss / MIB:.0f} MiB RSS; {load()}",
        flush=True,
    )


def header_floods(agent: RunningAgent, floods: int, parallel: int) -> None:
    pid = agent.proc.pid
    time.sleep(2)
    before = rss_bytes(pid)
    sampler = Sampler(pid)
    with ThreadPoolExecutor(parallel) as pool:
        got = list(pool.map(lambda _: header_flood("127.0.0.1", agent.port, 6_000_000), range(floods)))
    time.sleep(5)
    after = rss_bytes(pid)
    sampler.stop()
    answers = {s: got.count(s) for s in sorted(set(got))}
    print(
        f"header flood: {floods} requests x 6 MB of headers, {parallel} at a time: answers {answers} "
        f"(0: reset while still sending, after the 431)"
    )
    print(
        f"  agent RSS: before {before / MIB:.0f} MiB, peak {sampler.peak_rss / MIB:.0f} MiB "
        f"(+{(sampler.peak_rss - before) / MIB:.0f}), 5 s after {after / MIB:.0f} MiB; "
        f"peak {sampler.peak_threads} threads; {load()}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hold", type=float, default=60.0)
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--floods", type=int, default=250)
    ap.add_argument("--parallel", type=int, default=25, help="floods at a time")
    ap.add_argument("--sources", type=int, default=1, help="attacker source addresses (127.0.0.2..)")
    ap.add_argument("--no-tls", action="store_true")
    args = ap.parse_args()
    print(f"{load()}, {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="gs-bench-abuse-") as tmp:
        with running_agent(Path(tmp)) as agent:
            header_floods(agent, args.floods, args.parallel)
            slow_headers(agent, args.connections, args.interval, args.hold, "plain HTTP", args.sources)
        if not args.no_tls:
            with running_agent(Path(tmp), tls=True) as agent:
                slow_headers(
                    agent, args.connections, args.interval, args.hold, "TLS + basic auth", args.sources
                )


if __name__ == "__main__":
    main()
