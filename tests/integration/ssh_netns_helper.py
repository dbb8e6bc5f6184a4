"""Runs SSH collections in a process of their own: in a private network and mount namespace that
test_ssh.py set up (scenarios ``dns`` and ``multi``), or under a file size limit (``fsize``).

Started as ``ip netns exec NS unshare -m ... python -m tests.integration.ssh_netns_helper SCENARIO DIR``
with the namespace's own /etc/hosts and /etc/resolv.conf bind-mounted from DIR, and nftables in the
namespace dropping what arrives for 127.0.0.3 (a black-holed host) and 127.0.0.53 (a name server that
never answers). Only the namespace's loopback is used. It starts its own sshd on 127.0.0.2 there and
prints one JSON object: the scenario's results, for the test to assert on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from agent.kernel.collector import BlockingRunner, CollectorContext
from collectors.ssh.collector import SSHCollector
from collectors.ssh.settings import SSHSettings, SSHTarget
from tests.helpers import collect_once
from tests.integration.sshd_server import Sshd, keygen, start_sshd

SSHD_ADDRESS = "127.0.0.2"


def collector(base: Path, server: Sshd, names: list[str], **settings: Any) -> SSHCollector:
    pub = server.host_key.with_suffix(".pub").read_text().split()
    kh = base / "known_hosts"
    kh.write_text("".join(f"[{n}]:{server.port} {pub[0]} {pub[1]}\n" for n in names))
    cfg = SSHSettings.model_validate(
        {
            "known_hosts_file": str(kh),
            "auths": {"root": {"username": "root", "key_file": str(server.client_key)}},
            "connect_timeout": "2s",
            **settings,
        }
    )
    ctx = CollectorContext(
        kind="ssh",
        state_dir=base,
        blocking=BlockingRunner("netns-ssh", SSHCollector.pool_size(cfg)),
        log=logging.getLogger("giamsat.collector.ssh"),
    )
    return SSHCollector(cfg, ctx)


def target(name: str, address: str, port: int, timeout: str = "20s") -> SSHTarget:
    return SSHTarget.model_validate(
        {"name": name, "site": "s1", "address": address, "port": port, "auth": "root", "timeout": timeout}
    )


def set_hosts(text: str) -> None:
    """Rewrite the namespace's /etc/hosts in place (same inode: the bind mount stays)."""
    Path("/etc/hosts").write_text(text)


def summary(families: list[Any]) -> dict[str, Any]:
    samples = [s for f in families for s in f.samples]
    up = [s.value for s in samples if s.name == "ssh_up"]
    reasons = [s.labels["reason"] for s in samples if s.name == "ssh_failure_reason"]
    return {"up": up[0] if up else None, "reason": reasons[0] if reasons else None}


async def dns(base: Path, server: Sshd) -> dict[str, Any]:
    """Four names that need the black-holed resolver, an IP-addressed target and a name from
    /etc/hosts at once (max_concurrency 2); then the name leaves /etc/hosts and is collected again."""
    set_hosts(f"127.0.0.1 localhost\n{SSHD_ADDRESS} flappy.test\n")
    c = collector(base, server, [SSHD_ADDRESS, "flappy.test"], max_concurrency=2, reuse_connections=False)
    await c.start()
    try:
        targets = [target(f"dns{i}", f"nx{i}.test", server.port) for i in range(4)]
        targets += [target("by_ip", SSHD_ADDRESS, server.port), target("flappy", "flappy.test", server.port)]
        first = await asyncio.gather(*(collect_once(c, t) for t in targets))
        set_hosts("127.0.0.1 localhost\n")  # flappy.test now needs the (dead) name server
        start = time.monotonic()
        again = await collect_once(c, target("flappy", "flappy.test", server.port))
        stale_seconds = time.monotonic() - start
    finally:
        await c.close()
        c.ctx.blocking.shutdown()
    # A reload (a new collector) while the resolver is still dead keeps the last good answer too.
    reloaded = collector(base, server, [SSHD_ADDRESS, "flappy.test"], reuse_connections=False)
    await reloaded.start()
    try:
        after_reload = await collect_once(reloaded, target("flappy", "flappy.test", server.port))
    finally:
        await reloaded.close()
        reloaded.ctx.blocking.shutdown()
    return {
        "first": {t.name: summary(f) for t, f in zip(targets, first, strict=True)},
        "flappy_again": summary(again),
        "flappy_again_seconds": stale_seconds,
        "flappy_after_reload": summary(after_reload),
    }


async def multi(base: Path, server: Sshd) -> dict[str, Any]:
    """A name whose first address black-holes SYNs and whose second is the sshd."""
    set_hosts("127.0.0.1 localhost\n127.0.0.3 twoaddr.test\n127.0.0.2 twoaddr.test\n")
    order = [a[4][0] for a in socket.getaddrinfo("twoaddr.test", server.port, type=socket.SOCK_STREAM)]
    c = collector(base, server, ["twoaddr.test"])
    await c.start()
    try:
        fams = await collect_once(c, target("two", "twoaddr.test", server.port, timeout="10s"))
    finally:
        await c.close()
        c.ctx.blocking.shutdown()
    return {"order": order, "result": summary(fams)}


async def fsize(base: Path, server: Sshd) -> dict[str, Any]:
    """Trust on first use while the disk is (as good as) full: RLIMIT_FSIZE lets the append write only
    part of the line (a short write, as on a full disk), then lifted for a second collection."""
    c = collector(base, server, ["127.0.0.9"], trust_on_first_use=True)
    kh = base / "known_hosts"
    kh.write_text(kh.read_text().rstrip("\n"))  # the operator's last line has no newline
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails or is cut short
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (kh.stat().st_size + 20, hard))
    await c.start()
    try:
        full = await collect_once(c, target("tofu", SSHD_ADDRESS, server.port))
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        freed = await collect_once(c, target("tofu", SSHD_ADDRESS, server.port))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        await c.close()
        c.ctx.blocking.shutdown()
    return {"full": summary(full), "freed": summary(freed), "lines": kh.read_text().count("\n")}


def main() -> None:
    scenario, base = sys.argv[1], Path(sys.argv[2])
    for name in ("hosts", "resolv.conf") if scenario != "fsize" else ():  # never write the machine's
        mine, seen = (base / name).stat(), Path("/etc", name).stat()
        if (mine.st_dev, mine.st_ino) != (seen.st_dev, seen.st_ino):
            raise SystemExit(f"/etc/{name} is not {base / name}: not in the test's mount namespace")
    client = keygen(base / "client")
    server = start_sshd(base / "sshd", client.with_suffix(".pub"), client, listen=(SSHD_ADDRESS,))
    try:
        result = asyncio.run({"dns": dns, "multi": multi, "fsize": fsize}[scenario](base, server))
    finally:
        server.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
