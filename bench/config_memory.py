"""Resident memory of loading a large configuration, in one process.

Usage:

    .venv/bin/python bench/config_memory.py                 # 5 000 ICMP targets (bench/icmp_soak.py's file)
    .venv/bin/python bench/config_memory.py --targets 10000 --top 15

Prints the RSS before loading (interpreter, agent.config and the ICMP collector's models imported, so
the figure is the configuration's own), after ``load_config`` and after a full collection, and with
``--top N`` the N largest holders of memory still allocated after loading (tracemalloc, by line).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import rss_bytes
from bench.icmp_soak import config


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=5000)
    ap.add_argument("--top", type=int, default=0, help="show the N largest holders (tracemalloc; slower)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="giamsat-cfgmem-"))
    path = config(tmp, args.targets, 15)

    from agent.config import Sections, config_model, load_config

    config_model(Sections(("icmp",)))  # the schema is not the configuration: built before measuring
    gc.collect()
    if args.top:
        tracemalloc.start(1)
    before = rss_bytes(os.getpid())
    loaded = load_config(path)
    after = rss_bytes(os.getpid())
    gc.collect()
    collected = rss_bytes(os.getpid())
    print(
        f"{args.targets} targets ({path.stat().st_size / 1e6:.2f} MB of YAML): RSS before {mib(before)}, "
        f"after load_config {mib(after)} ({mib(after - before)} more), after gc.collect {mib(collected)}; "
        f"{len(loaded.config.targets_of('icmp'))} targets loaded"
    )
    if args.top:
        snap = tracemalloc.take_snapshot()
        stats = snap.statistics("lineno")
        total = sum(s.size for s in stats)
        print(f"tracemalloc: {mib(total)} still allocated since loading began; the largest holders:")
        for s in stats[: args.top]:
            frame = s.traceback[0]
            print(f"  {mib(s.size):>10} {s.count:8d} blocks  {frame.filename}:{frame.lineno}")


if __name__ == "__main__":
    main()
