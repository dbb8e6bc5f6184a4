"""Cost of ``giamsat report`` for a large province: 2 000 sites over a 31-day month, from the ledger.

No peer tool produces this report (node_exporter, blackbox_exporter, snmp_exporter, Telegraf and Zabbix
do not), so this prints absolute figures with the machine's load: the wall and CPU time of the whole
command (start, read and replay the journal, figures, HTML and CSV written), the journal's size and
record count, and the output sizes.

The ledger is written through the journal as the agent writes it: a heartbeat every 15 s, each commune
and district with a few outages of its own a day at random (seeded), every district outage taking its
communes down as unreachable, UPS-caused ones marked, and one agent restart in the middle.

    .venv/bin/python bench/report.py [--sites 2000] [--districts 40] [--outages-per-day 0.5] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.ledger.journal import Journal, segments
from agent.ledger.recorder import HEARTBEAT, LEDGER_DIR

ROOT = Path(__file__).resolve().parent.parent
GIAMSAT = ROOT / ".venv" / "bin" / "giamsat"


def write_ledger(state_dir: Path, n_sites: int, districts: int, per_day: float, seed: int = 1) -> int:
    rng = random.Random(seed)
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC).timestamp() - 3600
    end = start + 31 * 86400 + 7200
    inv = [["p", "Tỉnh Bench", "province", None]]
    inv += [[f"d{d}", f"Huyện số {d}", "district", "p"] for d in range(districts)]
    communes = [
        [f"c{i}", f"Xã số {i}", "commune", f"d{i % districts}"] for i in range(n_sites - 1 - districts)
    ]
    inv += communes
    events: list[tuple[float, str, str, bool]] = []  # (ts, site, state, power)
    children: dict[str, list[str]] = {f"d{d}": [] for d in range(districts)}
    for c in communes:
        children[str(c[3])].append(str(c[0]))
    for sid, *_ in inv[1:]:
        n = int(rng.expovariate(1 / (per_day * 31)))
        for _ in range(n):
            t0 = rng.uniform(start + 3600, end - 7200)
            dur = rng.expovariate(1 / 1800)
            power = rng.random() < 0.2
            events.append((t0, str(sid), "down", power))
            events.append((t0 + dur, str(sid), "up", False))
            if str(sid).startswith("d"):
                for c in children[str(sid)]:
                    events.append((t0, c, "unreachable", False))
                    events.append((t0 + dur, c, "up", False))
    events.sort()
    restart = start + 15 * 86400
    journal = Journal(state_dir / LEDGER_DIR, lambda: {"k": "snap", "ts": 0})
    n = 0

    def put(batch: list[dict[str, object]]) -> None:
        nonlocal n
        journal.append(batch)
        n += len(batch)

    put([{"k": "boot", "ts": start}, {"k": "inv", "ts": start, "sites": inv}])
    put([{"k": "st", "ts": start, "site": str(s[0]), "st": "up"} for s in inv])
    t, i = start, 0
    batch: list[dict[str, object]] = []
    restarted = False
    while t < end:
        t += HEARTBEAT
        while i < len(events) and events[i][0] <= t:
            ts, sid, st, power = events[i]
            rec: dict[str, object] = {"k": "st", "ts": ts, "site": sid, "st": st}
            if st != "up":
                rec["links"] = {f"{sid}-wan": "timeout"}
            if power:
                rec["power"] = True
            batch.append(rec)
            i += 1
        if not restarted and t >= restart:
            restarted = True
            put([*batch, {"k": "boot", "ts": t + 600}])
            batch = []
            t += 600
            continue
        batch.append({"k": "alive", "ts": t})
        if len(batch) >= 240:  # the same records as one fsync per heartbeat, written faster
            put(batch)
            batch = []
    put([*batch, {"k": "stop", "ts": end}])
    journal.close()
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=2000)
    ap.add_argument("--districts", type=int, default=40)
    ap.add_argument(
        "--outages-per-day", type=float, default=0.5, help="per site, its own (not counting upstream)"
    )
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="giamsat-bench-report-") as tmp:
        state = Path(tmp) / "state"
        t0 = time.perf_counter()
        records = write_ledger(state, args.sites, args.districts, args.outages_per_day)
        size = sum(p.stat().st_size for p in segments(state / LEDGER_DIR))
        print(
            f"ledger: {args.sites} sites, 31 days, {records} records, {size / 2**20:.1f} MiB in "
            f"{len(segments(state / LEDGER_DIR))} segment(s) (written in {time.perf_counter() - t0:.1f} s)"
        )
        # what the agent holds: its live book after replaying the journal at start (the month so far)
        probe = (
            "import gc, sys, time, datetime as dt; from pathlib import Path; from agent.ledger.recorder import replay\n"
            "b = replay(Path(sys.argv[1]), keep_since=dt.datetime(2026, 9, 30, tzinfo=dt.UTC).timestamp())\n"
            "gc.collect(); status = open('/proc/self/status').read()\n"
            "print(' '.join(l.split()[1] for l in status.splitlines() if l.startswith(('VmRSS', 'VmHWM'))))\n"
            "print(time.process_time())\n"
        )
        base = subprocess.run(
            [
                sys.executable,
                "-c",
                "import agent.ledger.recorder; print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        hwm, rss, cpu = subprocess.run(
            [sys.executable, "-c", probe, str(state / LEDGER_DIR)], capture_output=True, text=True, check=True
        ).stdout.split()
        print(
            f"agent side: replaying the journal at start keeping the month: CPU {float(cpu):.2f} s (with the "
            f"interpreter's start), RSS {int(rss) / 1024:.0f} MiB (peak {int(hwm) / 1024:.0f}) against "
            f"{int(base[0]) / 1024:.0f} MiB for the interpreter with the ledger modules imported"
        )
        walls, cpus = [], []
        for run in range(args.runs):
            out = Path(tmp) / f"out{run}"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            r = subprocess.run(
                [
                    str(GIAMSAT),
                    "report",
                    "--state-dir",
                    str(state),
                    "--month",
                    "2026-10",
                    "--tz",
                    "UTC",
                    "--out",
                    str(out),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 1
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            walls.append(wall)
            cpus.append(cpu)
            sizes = ", ".join(
                f"{p.name.split('2026-10')[-1] or '.html'} {p.stat().st_size / 1024:.0f} KiB"
                for p in sorted(out.iterdir())
            )
            print(
                f"run {run + 1}: wall {wall:.2f} s, CPU {cpu:.2f} s, load {os.getloadavg()[0]:.2f} ({sizes})"
            )
        walls.sort()
        cpus.sort()
        print(
            f"median: wall {walls[len(walls) // 2]:.2f} s, CPU {cpus[len(cpus) // 2]:.2f} s; "
            f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"Python {sys.version.split()[0]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
