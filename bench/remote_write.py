"""Remote-write benchmark: giamsat's sender against Prometheus in agent mode, same receiver, same run.

Figures:
  1. steady state, 1000 series appended/scraped every second: samples/s sent and CPU per 1000 samples;
  2. a short outage (receiver stopped) at that rate: time to catch up after it returns, samples lost;
  3. giamsat only: 24 h of a 1000-series agent at a 30 s interval (2.88 M samples) buffered while the
     receiver is down, then the time to deliver it all; buffer bytes per sample. (Prometheus agent cannot
     be given 24 h of past samples, and its WAL keeps about 2 h, so it has no row here.)

The receiver is VictoriaMetrics (accepts any sample age). CPU is utime+stime of the sender process from
/proc. giamsat's figure includes appending (labels -> buffer), reading back, encoding, snappy and HTTP;
Prometheus agent's includes scraping and parsing the target as well, which favours giamsat a little.

  4. ``--buffer-memory``: RAM the buffer's per-record index costs while a backlog is buffered (records of
     12 series, one small job result each), growing it by appends and after a re-open (the scan an
     agent restarted during an outage does); RSS from /proc, in a fresh process.

Usage: .venv/bin/python bench/remote_write.py [--steady 30] [--outage 60] [--hours 24] [--json out.json]
       .venv/bin/python bench/remote_write.py --buffer-memory [--records 400000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.rwservers import VictoriaMetricsReceiver, free_port, stop_pid  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
SERIES = 1000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def prom_metrics(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + float(value)
    return out


def status(path: Path) -> dict[str, Any]:
    for _ in range(50):
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            time.sleep(0.02)
    raise RuntimeError("no status")


def wait(pred: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"timeout waiting for {what}")


def start_ours(work: Path, url: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    st = work / "status.json"
    settings = {"name": "bench", "url": url, "max_sample_age": "30d", "backfill_lane": True}
    argv = [
        sys.executable,
        "-m",
        "tests.integration.rw_agent",
        "--state",
        str(work / "state"),
        "--status",
        str(st),
    ]
    argv += ["--settings", json.dumps(settings), "--series", str(SERIES), "--status-every", "0.5", *args]
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
    wait(lambda: st.exists(), 30, "status file")
    return p, st


def ours_steady_and_outage(work: Path, steady: float, outage: float) -> dict[str, Any]:
    vm = VictoriaMetricsReceiver(work / "vm")
    vm.start()
    now = int(time.time() * 1000)
    n = int(steady + outage + 600)
    p, st = start_ours(
        work, vm.write_url, "--t0", str(now), "--step", "1000", "--last", str(n), "--every", "1.0"
    )
    try:
        time.sleep(5)  # warm-up
        s0, c0, t0 = status(st), cpu_seconds(p.pid), time.monotonic()
        time.sleep(steady)
        s1, c1, t1 = status(st), cpu_seconds(p.pid), time.monotonic()
        sent = s1["sent"] - s0["sent"]
        res: dict[str, Any] = {
            "samples_per_s": sent / (t1 - t0),
            "cpu_ms_per_1000": 1000 * (c1 - c0) / sent * 1000,
        }
        vm.stop()
        time.sleep(outage)
        backlog = status(st)["pending"]
        vm.start()
        res["catch_up_s"] = wait(lambda: status(st)["pending"] < 2 * SERIES, 600, "catch-up")
        res["outage_backlog"] = backlog
        sfin = status(st)
        res["lost"] = sum(sfin["dropped"].values())
        return res
    finally:
        stop_pid(p)
        vm.stop()


def prom_agent_steady_and_outage(work: Path, steady: float, outage: float) -> dict[str, Any]:
    target = work / "target"
    target.mkdir()
    lines = ["# TYPE bench_value gauge"] + [f'bench_value{{series="s{j}"}} {j}' for j in range(SERIES)]
    (target / "metrics").write_text("\n".join(lines) + "\n")
    tport, pport = free_port(), free_port()
    srv = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(target), str(tport)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    vm = VictoriaMetricsReceiver(work / "vm")
    vm.start()
    cfg = work / "agent.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: ['127.0.0.1:{tport}']\n"
        f"remote_write:\n  - url: {vm.write_url}\n"
    )
    prom = subprocess.Popen(
        [
            "prometheus",
            "--enable-feature=agent",
            f"--config.file={cfg}",
            f"--storage.agent.path={work / 'agentdata'}",
            f"--web.listen-address=127.0.0.1:{pport}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait(lambda: _ok(pport), 60, "prometheus agent")
        time.sleep(5)
        m0, c0, t0 = prom_metrics(pport), cpu_seconds(prom.pid), time.monotonic()
        time.sleep(steady)
        m1, c1, t1 = prom_metrics(pport), cpu_seconds(prom.pid), time.monotonic()
        key = "prometheus_remote_storage_samples_total"
        sent = m1[key] - m0[key]
        res: dict[str, Any] = {
            "samples_per_s": sent / (t1 - t0),
            "cpu_ms_per_1000": 1000 * (c1 - c0) / sent * 1000,
        }
        vm.stop()
        time.sleep(outage)
        vm.start()

        def caught_up() -> bool:
            m = prom_metrics(pport)
            lag = m["prometheus_remote_storage_highest_timestamp_in_seconds"] - m.get(
                "prometheus_remote_storage_queue_highest_sent_timestamp_seconds", 0
            )
            return lag <= 2 and m.get("prometheus_remote_storage_samples_pending", 0) < 2 * SERIES

        res["catch_up_s"] = wait(caught_up, 600, "prometheus agent catch-up")
        m = prom_metrics(pport)
        res["lost"] = m.get("prometheus_remote_storage_samples_dropped_total", 0) + m.get(
            "prometheus_remote_storage_samples_failed_total", 0
        )
        return res
    finally:
        stop_pid(prom)
        stop_pid(srv)
        vm.stop()


def vm_count(vm: VictoriaMetricsReceiver, metric: str, hours: float) -> int:
    """Raw samples the receiver holds for ``metric`` (count_over_time over the whole window)."""
    urllib.request.urlopen(f"{vm.base}/internal/force_flush", timeout=30).read()  # noqa: S310 - loopback
    q = urllib.parse.urlencode({"query": f"sum(count_over_time({metric}[{int(hours * 3600) + 600}s]))"})
    with urllib.request.urlopen(f"{vm.base}/api/v1/query?{q}", timeout=120) as r:  # noqa: S310 - loopback
        data = json.loads(r.read())
    return int(float(data["data"]["result"][0]["value"][1]))


def _ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def ours_backfill(work: Path, hours: float) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/write"
    points = int(hours * 3600 / 30)
    now = int(time.time() * 1000)
    t0 = now - int(hours * 3600_000) - 60_000
    p, st = start_ours(work, url, "--t0", str(t0), "--step", "30000", "--last", str(points))
    try:
        a0 = time.monotonic()
        wait(lambda: not status(st)["appending"], 1800, "appending")
        s = status(st)
        res: dict[str, Any] = {
            "samples": s["appended"],
            "append_s": time.monotonic() - a0,
            "append_cpu_ms_per_1000": 1000 * s["cpu"] / s["appended"] * 1000,
            "buffer_bytes_per_sample": s["buffer_bytes"] / s["appended"],
            "buffer_mib": s["buffer_bytes"] / 2**20,
        }
        c0 = cpu_seconds(p.pid)
        vm = VictoriaMetricsReceiver(work / "vm", port=port)
        vm.start()
        try:
            b0 = time.monotonic()
            res["backfill_s"] = wait(lambda: status(st)["pending"] == 0, 3600, "backfill")
            res["send_cpu_ms_per_1000"] = 1000 * (cpu_seconds(p.pid) - c0) / res["samples"] * 1000
            res["lost"] = sum(status(st)["dropped"].values())
            res["backfill_samples_per_s"] = res["samples"] / (time.monotonic() - b0)
            res["received"] = vm_count(vm, "rwtest_value", hours + 1)
        finally:
            vm.stop()
        return res
    finally:
        stop_pid(p)


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def buffer_memory(work: Path, records: int) -> dict[str, Any]:
    import gc

    from exporters.wal import Buffer

    def new() -> Buffer:
        return Buffer(work, max_bytes=1 << 40, segment_bytes=8 << 20, max_age=None)

    keys = [
        tuple(sorted({"__name__": f"probe_metric_{j}", "site": "xa-1", "target": "router-1"}.items()))
        for j in range(12)
    ]
    b = new()
    b.open()
    b.append([(k, 0.0, 1_700_000_000_000) for k in keys])
    gc.collect()
    r0 = _rss()
    for i in range(records):
        b.append([(k, float(i), 1_700_000_000_000 + i * 15_000) for k in keys])
    gc.collect()
    r1 = _rss()
    disk = b.size_bytes
    b.close()
    del b
    gc.collect()
    r2 = _rss()
    t = time.monotonic()
    b = new()
    b.open()
    scan_s = time.monotonic() - t
    gc.collect()
    r3 = _rss()
    b.close()
    return {
        "records": records,
        "disk_mib": disk / 2**20,
        "append_rss_mib": (r1 - r0) / 2**20,
        "append_bytes_per_record": (r1 - r0) / records,
        "reopen_rss_mib": (r3 - r2) / 2**20,
        "reopen_bytes_per_record": (r3 - r2) / records,
        "reopen_scan_s": scan_s,
        "rss_per_gib_on_disk_mib": (r1 - r0) / disk * 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steady", type=float, default=30.0, help="seconds of steady state measured")
    ap.add_argument("--outage", type=float, default=60.0, help="seconds the receiver is stopped")
    ap.add_argument("--hours", type=float, default=24.0, help="hours of 1000 series at 30 s to backfill")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--backfill-only", action="store_true", help="skip the side-by-side part")
    ap.add_argument("--buffer-memory", action="store_true", help="only the buffer index's RAM (figure 4)")
    ap.add_argument("--records", type=int, default=400_000, help="records buffered for --buffer-memory")
    a = ap.parse_args()
    out: dict[str, Any] = {"load": os.getloadavg(), "cpus": os.cpu_count()}
    if a.buffer_memory:
        with tempfile.TemporaryDirectory(prefix="gs-rw-mem-") as d:
            out["buffer_memory"] = m = buffer_memory(Path(d), a.records)
        print(
            f"{m['records']} records (12 samples each), {m['disk_mib']:.1f} MiB on disk: RSS "
            f"+{m['append_rss_mib']:.1f} MiB appending ({m['append_bytes_per_record']:.0f} B/record), "
            f"+{m['reopen_rss_mib']:.1f} MiB after re-open ({m['reopen_bytes_per_record']:.0f} B/record, "
            f"scan {m['reopen_scan_s']:.1f} s); ~{m['rss_per_gib_on_disk_mib']:.0f} MiB RSS per GiB buffered"
        )
        return _finish(a, out)
    with tempfile.TemporaryDirectory(prefix="gs-rw-bench-") as d:
        base = Path(d)
        w = base / "backfill"
        w.mkdir()
        out["giamsat_backfill"] = b = ours_backfill(w, a.hours)
        print("giamsat_backfill", json.dumps(b), flush=True)
        print(
            f"{a.hours:g}h backfill: {b['samples']} samples, buffer {b['buffer_bytes_per_sample']:.1f} B/sample "
            f"({b['buffer_mib']:.1f} MiB), appended in {b['append_s']:.1f} s "
            f"({b['append_cpu_ms_per_1000']:.2f} CPU ms/1000), delivered in {b['backfill_s']:.1f} s "
            f"({b['backfill_samples_per_s']:.0f} samples/s, {b['send_cpu_ms_per_1000']:.2f} CPU ms/1000), "
            f"lost {b['lost']}, receiver holds {b['received']}"
        )
        if a.backfill_only:
            return _finish(a, out)
        for name, fn in (
            ("giamsat", ours_steady_and_outage),
            ("prometheus_agent", prom_agent_steady_and_outage),
        ):
            w = base / name
            w.mkdir()
            out[name] = fn(w, a.steady, a.outage)
            print(name, json.dumps(out[name]), flush=True)
    g, pa = out["giamsat"], out["prometheus_agent"]
    out["cpu_ratio_giamsat_over_prometheus_agent"] = g["cpu_ms_per_1000"] / pa["cpu_ms_per_1000"]
    print()
    print("| | giamsat | Prometheus agent 2.42 |")
    print("|---|---|---|")
    print(
        f"| samples/s sent (steady, {SERIES} series every 1 s) | {g['samples_per_s']:.0f} | {pa['samples_per_s']:.0f} |"
    )
    print(f"| CPU ms per 1000 samples | {g['cpu_ms_per_1000']:.2f} | {pa['cpu_ms_per_1000']:.2f} |")
    print(
        f"| catch-up after a {a.outage:.0f} s outage (s) | {g['catch_up_s']:.1f} | {pa['catch_up_s']:.1f} |"
    )
    print(f"| samples lost | {g['lost']} | {pa['lost']:.0f} |")
    print()
    print(f"CPU ratio giamsat / Prometheus agent: {out['cpu_ratio_giamsat_over_prometheus_agent']:.2f}")
    return _finish(a, out)


def _finish(a: argparse.Namespace, out: dict[str, Any]) -> int:
    print(f"load average at start: {out['load']}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
