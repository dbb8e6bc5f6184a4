"""How much of the node-mixin and "Node Exporter Full" dashboards giamsat serves, next to node_exporter.

Usage: .venv/bin/python bench/dashboards.py [--oracles ../shared/oracles] [--write docs/metrics.md]

Starts giamsat (this checkout's host and textfile collectors, as ``giamsat run``) and Debian's
node_exporter 1.5 on loopback, scrapes both in the same second, and prints the table of
``dashboard_coverage.py`` (from the oracles folder) for both scrapes, plus how many node-mixin alerts
have every metric they need. The machine's load is printed with it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, update_section

ROOT = Path(__file__).resolve().parent.parent
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def load_oracle(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard_coverage", folder / "dashboard_coverage.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fetch(url: str, timeout: float = 20) -> str:
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def alerts(oracle: ModuleType, have: set[str]) -> tuple[int, int, set[str]]:
    """node-mixin alerts whose every metric is in ``have`` (recording rules expanded), all of them, and
    the metrics the others lack."""
    src = (oracle.MIXIN / "alerts" / "alerts.libsonnet").read_text()
    exprs = re.findall(r"alert:\s*'[^']+'.*?expr:\s*\|\|\|(.*?)\|\|\|", src, re.S)
    lacking = [oracle.base(set(oracle.TOK.findall(e))) - have for e in exprs]
    return sum(1 for m in lacking if not m), len(exprs), set().union(*lacking)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--oracles", type=Path, default=ROOT.parent / "shared" / "oracles")
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args()
    oracle = load_oracle(args.oracles)
    tmp = Path(tempfile.mkdtemp(prefix="giamsat-dash-"))
    cfg = tmp / "giamsat.yml"
    cfg.write_text(f"agent:\n  interval: 5s\n  state_dir: {tmp}\ncollectors:\n  host: {{}}\n")
    gport, nport = free_port(), free_port()
    giamsat = subprocess.Popen(
        [str(Path(sys.executable).parent / "giamsat"), "run", "--config.file", str(cfg),
         "--web.listen-address", f"127.0.0.1:{gport}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ne = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{nport}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        fetch(f"http://127.0.0.1:{gport}/-/ready")
        time.sleep(1)
        ours = fetch(f"http://127.0.0.1:{gport}/metrics")
        theirs = fetch(f"http://127.0.0.1:{nport}/metrics")
    finally:
        for p in (giamsat, ne):
            p.terminate()
            p.wait(10)
    (tmp / "giamsat.txt").write_text(ours)
    (tmp / "node_exporter.txt").write_text(theirs)
    out = subprocess.run(
        [sys.executable, str(args.oracles / "dashboard_coverage.py"), str(tmp / "giamsat.txt"),
         str(tmp / "node_exporter.txt")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = [out.rstrip()]
    for label, text in (("giamsat", ours), ("node_exporter", theirs)):
        ok, n, lack = alerts(oracle, _names(text))
        lines.append(
            f"== {label}: node-mixin alerts with every metric present: {ok}/{n}; lacking {sorted(lack)}"
        )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines.append(f"== machine load (1, 5, 15 min): {load} on {os.cpu_count()} cpus")
    report = "\n".join(lines)
    print(report)
    if args.write:
        update_section(
            args.write,
            "Dashboard coverage, measured",
            "Printed by `.venv/bin/python bench/dashboards.py` (giamsat's host and textfile collectors and "
            "Debian's node_exporter 1.5 scraped in the same second on this machine):\n\n```\n"
            + report
            + "\n```",
        )


def _names(text: str) -> set[str]:
    return {m.group(0) for m in re.finditer(r"^[A-Za-z_:][A-Za-z0-9_:]*", text, re.M)}


if __name__ == "__main__":
    main()
