"""Runs ICMP probes with a forced socket mode and prints the results as JSON (run inside a netns).

Used by the tests to exercise unprivileged datagram sockets, which need ``net.ipv4.ping_group_range``:
the tests set that sysctl only inside a namespace of their own, never on the host.
"""

from __future__ import annotations

import asyncio
import json
import sys

from collectors.probes.icmp_engine import IcmpEngine


async def main(spec: dict) -> None:  # type: ignore[type-arg]
    engine = IcmpEngine(spec["mode"])
    await engine.start()
    try:
        results = await asyncio.gather(*(engine.ping(p.pop("address"), **p) for p in spec["probes"]))
    finally:
        await engine.close()
    out = {
        "mode": engine.mode,
        "results": [
            {"sent": r.sent, "received": r.received, "errors": dict(r.errors), "hop_limit": r.hop_limit}
            for r in results
        ],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
