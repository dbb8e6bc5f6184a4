"""The RSS floor of giamsat's libraries: the smallest program that uses them the way the agent must.

It imports what every giamsat agent imports (asyncio, which loads ssl and OpenSSL; http.server;
prometheus_client; pydantic with one validated model; APScheduler 3 on asyncio; psutil; PyYAML;
argparse, logging, json), schedules one psutil reading and serves it over HTTP from a thread. It has
no agent code at all, so its RSS is what any agent built on these libraries starts from;
bench/scrape.py runs it beside giamsat and node_exporter and reports it.

Usage: python bench/rss_floor.py PORT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import yaml
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel

assert argparse and json and logging  # imported for their footprint: the agent uses all three


class Settings(BaseModel):
    interval: float = 15.0


SETTINGS = Settings.model_validate(yaml.safe_load("interval: 15"))
LATEST = [b""]


def collect() -> None:
    fam = GaugeMetricFamily("node_load1", "1m load average.", value=psutil.getloadavg()[0])
    s = fam.samples[0]
    LATEST[0] = f"# TYPE {fam.name} gauge\n{s.name} {s.value}\n".encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(LATEST[0])

    def log_message(self, *args: object) -> None:
        pass


async def main(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheduler = AsyncIOScheduler()
    scheduler.add_job(collect, "interval", seconds=SETTINGS.interval)
    scheduler.start()
    collect()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
