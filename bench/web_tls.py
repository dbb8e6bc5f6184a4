"""/metrics over TLS with client certificates and bcrypt basic auth: giamsat vs node_exporter, one web
config file for both, same run.

Usage: .venv/bin/python bench/web_tls.py [--scrapes 200] [--write docs/benchmarks.md]

Measures, alternating between the two exporters so machine noise hits both alike: the first
authenticated scrape (bcrypt cost 10 paid once, then cached by both), then scrapes on a new TLS
connection each (handshake included) and on one kept-alive connection (as Prometheus scrapes), and the
exporters' CPU per scrape. node_exporter runs only its loadavg collector and giamsat only its host
loadavg part, so the figures are the cost of the HTTP/TLS/auth layer, not of collection.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bcrypt

from bench.common import cpu_seconds, free_port, median, percentile, update_section
from tests.pki import CA

ROOT = Path(__file__).resolve().parent.parent
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
PASSWORD = "bench-password"  # noqa: S105 - a throwaway password for a loopback benchmark


def request(conn: http.client.HTTPSConnection, auth: str) -> float:
    t0 = time.perf_counter()
    conn.request("GET", "/metrics", headers={"Authorization": auth})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        raise SystemExit(f"scrape failed: {r.status}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gs-bench-tls-"))
    ca = CA(tmp)
    server, client = ca.issue("server", "localhost", server=True), ca.issue("client", "prom", server=False)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    web = tmp / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca.pair.cert}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    (tmp / "giamsat.yml").write_text(
        f"agent: {{site: here, interval: 15s, state_dir: {tmp / 'state'}, web_config_file: {web}}}\n"
        "sites: [{id: here, name: Here, level: province}]\ncollectors: {host: {parts: [loadavg]}}\n"
    )
    ports = {"giamsat": free_port(), "node_exporter": free_port()}
    procs = {
        "giamsat": subprocess.Popen(
            [str(ROOT / ".venv/bin/giamsat"), "run", "--config.file", str(tmp / "giamsat.yml"),
             "--web.listen-address", f"127.0.0.1:{ports['giamsat']}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        "node_exporter": subprocess.Popen(
            [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{ports['node_exporter']}", f"--web.config.file={web}",
             "--collector.disable-defaults", "--collector.loadavg"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
    }  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(ca.pair.cert))
    ctx.load_cert_chain(client.cert, client.key)
    auth = "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()

    def conn(name: str) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", ports[name], context=ctx, timeout=10)

    try:
        for name in procs:
            deadline = time.monotonic() + 20
            while True:
                try:
                    c = conn(name)
                    c.request(
                        "GET", "/-/healthy" if name == "giamsat" else "/", headers={"Authorization": "x"}
                    )
                    c.getresponse().read()
                    c.close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{name} did not start") from None
                    time.sleep(0.1)
        first = {}
        for name in procs:
            c = conn(name)
            first[name] = request(c, auth)
            c.close()
        fresh: dict[str, list[float]] = {n: [] for n in procs}
        alive: dict[str, list[float]] = {n: [] for n in procs}
        cpu0 = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        keep = {n: conn(n) for n in procs}
        for _ in range(args.scrapes):
            for name in procs:
                c = conn(name)
                fresh[name].append(request(c, auth))
                c.close()
                alive[name].append(request(keep[name], auth))
        cpu = {n: (cpu_seconds(p.pid) - cpu0[n]) / (2 * args.scrapes) for n, p in procs.items()}
        for c in keep.values():
            c.close()
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(10)

    rows = [
        "| | giamsat | node_exporter 1.5 | ratio |",
        "|---|---|---|---|",
        f"| first authenticated scrape (bcrypt cost 10, then cached) | {first['giamsat'] * 1e3:.1f} ms | "
        f"{first['node_exporter'] * 1e3:.1f} ms | {first['giamsat'] / first['node_exporter']:.2f} |",
    ]
    for label, data in (("new TLS connection per scrape", fresh), ("kept-alive TLS connection", alive)):
        for q, fn in (("median", median), ("p95", lambda v: percentile(v, 95))):
            g, n = fn(data["giamsat"]), fn(data["node_exporter"])
            rows.append(f"| {label}, {q} | {g * 1e3:.2f} ms | {n * 1e3:.2f} ms | {g / n:.2f} |")
    rows.append(
        f"| CPU per scrape (both kinds averaged) | {cpu['giamsat'] * 1e3:.2f} ms | {cpu['node_exporter'] * 1e3:.2f} ms "
        f"| {cpu['giamsat'] / cpu['node_exporter'] if cpu['node_exporter'] else float('nan'):.2f} |"
    )
    body = (
        f"`{' '.join(['bench/web_tls.py', *sys.argv[1:]])}`: {args.scrapes} scrapes of each kind per exporter, "
        "TLS 1.3 with client certificate and basic auth from one web config file; loopback; the machine was "
        "shared with other jobs, so compare the ratios, not the absolute times.\n\n" + "\n".join(rows)
    )
    print(body)
    if args.write:
        update_section(args.write, "TLS and basic auth on /metrics (bench/web_tls.py)", body)


if __name__ == "__main__":
    main()
