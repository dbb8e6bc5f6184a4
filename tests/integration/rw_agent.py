"""A stand-in agent process for remote-write tests and benchmarks: appends synthetic samples with
timestamps the test controls, delivers them with ``RemoteWriter`` and reports its counters in a JSON
status file (atomically replaced), so a test can ``kill -9`` it at a chosen moment.

Sample ``i`` of series ``j`` has timestamp ``t0 + i*step`` and value ``i``; ``series="s<j>"``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from exporters.remote_write import RemoteWriter
from exporters.remote_write_settings import RemoteWriteSettings


def write_status(path: Path, w: RemoteWriter, extra: dict[str, object]) -> None:
    data = {
        "appended": w.stats.appended,
        "sent": w.stats.sent,
        "dropped": w.dropped(),
        "pending": w.pending,
        "buffer_bytes": w.buffer.size_bytes,
        "retries": w.stats.retries,
        "requests": w.stats.requests,
        "sent_bytes": w.stats.sent_bytes,
        "resent_stored": w.stats.duplicate_batches,
        "backfill": w.buffer.backfill is not None,
        "live_pending": w.buffer.live.pending,
        "cpu": time.process_time(),
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", type=Path, required=True)
    ap.add_argument("--settings", required=True, help="RemoteWriteSettings as JSON")
    ap.add_argument("--status", type=Path, required=True)
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--t0", type=int, required=True, help="ms")
    ap.add_argument("--step", type=int, default=60_000, help="ms")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=0, help="exclusive")
    ap.add_argument("--every", type=float, default=0.0, help="seconds between appends")
    ap.add_argument("--metric", default="rwtest_value")
    ap.add_argument("--exit-when-drained", action="store_true")
    ap.add_argument("--status-every", type=float, default=0.05)
    a = ap.parse_args()
    w = RemoteWriter(RemoteWriteSettings.model_validate_json(a.settings), a.state)
    await w.start()
    done = {"appended_index": a.first, "appending": True}

    async def status_loop() -> None:
        while True:
            write_status(a.status, w, done)
            await asyncio.sleep(a.status_every)

    st = asyncio.create_task(status_loop())
    names = [f"s{j}" for j in range(a.series)]
    start = time.monotonic()
    for i in range(a.first, a.last):
        ts = a.t0 + i * a.step
        w.append([({"__name__": a.metric, "series": n}, float(i), ts) for n in names])
        done["appended_index"] = i + 1
        if a.every:
            # Paced like a scrape interval: the i-th append at start + i*every, as a scheduler would.
            await asyncio.sleep(max(0.0, start + (i - a.first + 1) * a.every - time.monotonic()))
        elif i % 50 == 0:
            await asyncio.sleep(0)
    done["appending"] = False
    write_status(a.status, w, done)
    print("appended", a.last, flush=True)
    while True:
        await asyncio.sleep(0.05)
        if a.exit_when_drained and w.pending == 0:
            break
    st.cancel()
    await w.close()
    write_status(a.status, w, done)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
