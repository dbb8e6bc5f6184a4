"""Time to load a large configuration (a start or a reload): libyaml against the pure-Python parser.

Usage:

    .venv/bin/python bench/config_load.py                       # 5 000 ICMP targets, 5 runs each
    /usr/bin/python3 -m venv /tmp/v && /tmp/v/bin/pip install -e . && /tmp/v/bin/python bench/config_load.py

``load_config`` runs on the same file (bench/icmp_soak.py's: N ICMP targets) with the loader the agent
picks (libyaml where PyYAML's build refuses deep nesting itself) and with the pure-Python parser,
interleaved; prints the median of each, their ratio and the machine's load. The whole of a reload's
work before the swap is here: reading, parsing, validating, building the inventory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.icmp_soak import config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from agent.config import Sections, config_model, load_config
    from agent.kernel import yamlfile

    path = config(Path(tempfile.mkdtemp(prefix="giamsat-cfgload-")), args.targets, 15)
    config_model(Sections(("icmp",)))  # the schema is built once per process, not per load
    chosen = yamlfile.libyaml_loader
    if chosen() is None:
        print("this PyYAML has no libyaml the agent would use: both rows are the pure-Python parser")
    times: dict[str, list[float]] = {"libyaml": [], "pure Python": []}
    load = Path("/proc/loadavg").read_text().split()[:3]
    for _ in range(args.runs):
        for name, loader in (("libyaml", chosen), ("pure Python", lambda: None)):
            yamlfile.libyaml_loader = loader  # type: ignore[assignment]
            start = time.perf_counter()
            load_config(path)
            times[name].append(time.perf_counter() - start)
    yamlfile.libyaml_loader = chosen
    fast, slow = (statistics.median(times[k]) for k in ("libyaml", "pure Python"))
    print(
        f"{args.targets} ICMP targets ({path.stat().st_size / 1e6:.2f} MB), {args.runs} runs, "
        f"Python {sys.version.split()[0]} ({sys.executable}), load {' '.join(load)} before, "
        f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])} after"
    )
    for name, ts in times.items():
        print(f"  {name:12} median {statistics.median(ts):.2f} s  (runs {min(ts):.2f}-{max(ts):.2f})")
    print(f"  pure Python / libyaml: {slow / fast:.2f}x")


if __name__ == "__main__":
    main()
