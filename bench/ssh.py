"""SSH collection cost: giamsat's ssh collector (reused connections) vs the OpenSSH client per collection.

Usage: .venv/bin/python bench/ssh.py [--targets 20] [--rounds 5] [--concurrency 8] [--write docs/benchmarks.md]

Must run as root (it starts a real sshd on loopback, as the tests do). Every target points at that one
sshd under its own name. Each round collects the ``linux`` module's two commands from every target:
giamsat through its collector (connections kept between rounds), the peer as a cron script would,
``ssh host '<the module's files command>'`` and ``ssh host 'stat -f ... <mounts>'`` with a new connection
each time, with the same concurrency. Rounds alternate between the two so machine noise hits both alike. Reported:
wall time per round, client CPU, and the sshd side's CPU (the monitored host's cost).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agent.kernel.collector import BlockingRunner, CollectorContext
from bench.common import collect_once, cpu_seconds, median, update_section
from collectors.host.options import Options
from collectors.ssh import linux
from collectors.ssh.collector import SSHCollector, SSHSettings, SSHTarget
from tests.integration.sshd_server import children, keygen, start_sshd


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def sshd_cpu(pid: int) -> float:
    """The listener plus reaped sessions plus sessions still alive (reused connections)."""
    total = cpu_seconds(pid)
    for c in children(pid):
        with contextlib.suppress(OSError):  # a session that just ended
            total += cpu_seconds(c)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--write", type=Path, help="update the SSH section of this Markdown file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark starts a real sshd")

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        key = keygen(d / "client")
        sshd = start_sshd(d / "sshd", key.with_suffix(".pub"), key)
        try:
            kh = d / "known_hosts"
            algo, b64 = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
            kh.write_text(f"[127.0.0.1]:{sshd.port} {algo} {b64}\n")
            settings = SSHSettings.model_validate(
                {
                    "known_hosts_file": str(kh),
                    "max_concurrency": args.concurrency,
                    "auths": {"root": {"username": "root", "key_file": str(key)}},
                }
            )
            ctx = CollectorContext("ssh", d, BlockingRunner("bench-ssh", 2), logging.getLogger("bench"))
            collector = SSHCollector(settings, ctx)
            targets = [
                SSHTarget.model_validate(
                    {
                        "name": f"t{i}",
                        "site": "s",
                        "address": "127.0.0.1",
                        "port": sshd.port,
                        "auth": "root",
                        "timeout": "60s",
                    }
                )
                for i in range(args.targets)
            ]
            ssh_base = [
                "ssh",
                "-p",
                str(sshd.port),
                "-i",
                str(key),
                "-o",
                f"UserKnownHostsFile={kh}",
                "-o",
                "BatchMode=yes",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
                "root@127.0.0.1",
            ]

            # The peer sends the linux module's own two commands: the files, then statvfs of the
            # mount points (found once here, from a first answer, as a cron script would hard-code them).
            files_cmd = shlex.join(linux.files_command())
            first = subprocess.run([*ssh_base, files_cmd], capture_output=True, timeout=60, check=True)
            mounts = linux.mount_points(linux.parse_snapshot(first.stdout), Options())
            peer_cmds = (files_cmd, shlex.join(linux.stat_command(mounts)))

            def peer_one(_i: int) -> bool:
                ok = True
                for cmd in peer_cmds:
                    r = subprocess.run([*ssh_base, cmd], capture_output=True, timeout=60)
                    ok = ok and r.returncode == 0 and bool(r.stdout)
                return ok

            async def collect_round() -> list[list[Any]]:
                return list(await asyncio.gather(*(collect_once(collector, t) for t in targets)))

            pool = concurrent.futures.ThreadPoolExecutor(args.concurrency)
            loop = asyncio.new_event_loop()
            loop.run_until_complete(collector.start())

            g_wall: list[float] = []
            p_wall: list[float] = []
            g_cpu = p_cpu = g_srv = p_srv = 0.0
            g_first = 0.0
            failures = 0
            for rnd in range(args.rounds):
                c0, s0, t0 = self_cpu(), sshd_cpu(sshd.pid), time.perf_counter()
                res = loop.run_until_complete(collect_round())
                wall = time.perf_counter() - t0
                failures += sum(
                    1 for fams in res for f in fams for s in f.samples if s.name == "ssh_up" and s.value != 1
                )
                if rnd == 0:
                    g_first = wall  # includes the handshakes; later rounds reuse the connections
                else:
                    g_wall.append(wall)
                    g_cpu += self_cpu() - c0
                    g_srv += sshd_cpu(sshd.pid) - s0

                c0, s0, t0 = children_cpu(), sshd_cpu(sshd.pid), time.perf_counter()
                oks = list(pool.map(peer_one, range(args.targets)))
                wall = time.perf_counter() - t0
                failures += oks.count(False)
                if rnd > 0:
                    p_wall.append(wall)
                    p_cpu += children_cpu() - c0
                    p_srv += sshd_cpu(sshd.pid) - s0
            loop.run_until_complete(collector.close())
            loop.close()
            collector.ctx.blocking.shutdown()
            pool.shutdown()
        finally:
            sshd.stop()

    n = (args.rounds - 1) * args.targets
    rows = [
        ("wall time per round (s), median", median(g_wall), median(p_wall)),
        ("client CPU per target collection (ms)", g_cpu / n * 1000, p_cpu / n * 1000),
        ("sshd CPU per target collection (ms)", g_srv / n * 1000, p_srv / n * 1000),
    ]
    lines = [
        f"`python bench/ssh.py --targets {args.targets} --rounds {args.rounds} --concurrency {args.concurrency}` "
        f"— one sshd on loopback, {args.targets} targets, `linux` module's two commands per target, "
        f"concurrency {args.concurrency}; first round (connection set-up: {g_first:.2f} s for giamsat) "
        f"left out of the figures. The machine was shared with other jobs (2 cores): figures are noisy.",
        "",
        "| figure | giamsat (reused connections) | OpenSSH `ssh` per command | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, g, p in rows:
        lines.append(f"| {name} | {g:.2f} | {p:.2f} | {g / p:.2f}× |")
    lines.append("")
    lines.append(f"Failed collections: {failures}.")
    text = "\n".join(lines)
    print(text)
    if args.write:
        update_section(args.write, "SSH collection", text)


if __name__ == "__main__":
    main()
