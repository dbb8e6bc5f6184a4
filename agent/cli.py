"""``giamsat`` command line: run, once, check-config, report, --version.

Flags follow the Prometheus exporters' spelling (``--config.file``, ``--web.listen-address``,
``--log.level``, ``--log.format``) so operators reuse what they know.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from agent.config import load_config
from agent.kernel.errors import ConfigError, StartupError
from agent.kernel.version import __version__
from agent.logging import setup_logging
from collectors import COLLECTORS

EXIT_CONFIG = 2

log = logging.getLogger("giamsat")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log.level", dest="log_level", default="info", choices=["debug", "info", "warning", "error"]
    )
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="giamsat", description="Monitoring agent for provincial e-government networks."
    )
    parser.add_argument("--version", action="version", version=f"giamsat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent: collect on schedule and serve /metrics")
    run.add_argument("--config.file", dest="config_file", required=True, type=Path)
    run.add_argument(
        "--web.listen-address", dest="listen_address", default=None, help="HOST:PORT (overrides the config)"
    )
    run.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        type=Path,
        help="TLS and basic auth, exporter-toolkit format (overrides agent.web_config_file)",
    )
    _common(run)

    once = sub.add_parser("once", help="collect once, print the exposition, exit 1 if a collector failed")
    once.add_argument("--config.file", dest="config_file", required=True, type=Path)
    once.add_argument(
        "--collector", action="append", default=None, help="only this collector kind (repeatable)"
    )
    _common(once)

    inventory = sub.add_parser("inventory", help="inventory tools")
    inv_sub = inventory.add_subparsers(dest="inventory_command", required=True, metavar="COMMAND")
    export_sd = inv_sub.add_parser("export-sd", help="print the targets as Prometheus file_sd JSON")
    export_sd.add_argument("--config.file", dest="config_file", required=True, type=Path)
    _common(export_sd)

    doctor = sub.add_parser(
        "doctor", help="preflight after install: permissions, state dir, credentials, clock"
    )
    doctor.add_argument("--config.file", dest="config_file", required=True, type=Path)
    doctor.add_argument(
        "--prometheus.url", dest="prometheus_url", default=None, help="check clock skew against it"
    )
    _common(doctor)

    report = sub.add_parser(
        "report", help="availability and coverage report for a period (HTML and CSV, vi or en)"
    )
    from agent.report.main import add_arguments

    add_arguments(report)
    _common(report)

    check = sub.add_parser("check-config", help="validate a configuration file; print every problem")
    check.add_argument("file", type=Path)
    _common(check)
    return parser


def _print_config_error(exc: ConfigError) -> None:
    print(f"configuration invalid ({len(exc.problems)} problem(s)):", file=sys.stderr)
    for p in exc.problems:
        print(f"  {p}", file=sys.stderr)


async def _once(config_file: Path, kinds: list[str] | None) -> int:
    from agent.lifecycle import Agent
    from agent.scheduler import Runner
    from exporters.exposition import render_text

    loaded = load_config(config_file)
    if kinds:
        unknown = [k for k in kinds if k not in COLLECTORS]
        if unknown:
            print(
                f"unknown collector(s): {', '.join(unknown)}; known: {', '.join(COLLECTORS)}", file=sys.stderr
            )
            return EXIT_CONFIG
    agent = Agent(config_file)
    runner = Runner(loaded, agent.pipeline)
    agent.loaded, agent.runner = loaded, runner
    await runner.open(set(kinds) if kinds else None)
    try:
        results = await runner.run_once()
    finally:
        await runner.close()
    body, _ = render_text(
        agent.store.snapshot(), agent.self_metrics.collect(), loaded.config.agent.max_label_length
    )
    sys.stdout.write(body.decode("utf-8"))
    failed = [r for r in results if not r.success]
    for r in failed:
        print(f"collector {r.job_id} failed: {r.reason}", file=sys.stderr)
    return 1 if failed else 0


def run_until_done(main: Coroutine[Any, Any, int], grace: float = 2.0) -> int:
    """``asyncio.run(main)``, except that a thread stuck in a blocking call cannot hold the exit.

    asyncio.run waits for the loop's default executor with no time limit, and the interpreter joins every
    thread-pool worker at exit: one blocking call that never returns (a stat() on a hung NFS mount, a
    resolver that never answers) kept the agent alive after SIGTERM until systemd killed it, and
    ``giamsat once`` forever. Threads still running ``grace`` seconds after ``main`` returns are
    abandoned: the process exits without them (``os._exit``, after flushing logs and output).
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def wind_down() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await loop.shutdown_asyncgens()
        # Not loop.shutdown_default_executor(): it joins the executor's threads with no time limit,
        # even when cancelled. loop.close() shuts the executor down without waiting; the threads
        # get the grace period below like every other.

    try:
        rc = loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(wind_down())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    deadline = time.monotonic() + grace
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join(max(0.0, deadline - time.monotonic()))
    stuck = [
        t.name
        for t in threading.enumerate()
        if t is not threading.current_thread() and not t.daemon and t.is_alive()
    ]
    if stuck:
        log.warning("exiting with blocking calls that never returned", extra={"threads": ",".join(stuck)})
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        if args.command == "check-config":
            loaded = load_config(args.file)
            web = loaded.config.agent.web_config_file
            if web is not None:  # the agent refuses to start with a bad one: say so now
                from exporters.webconfig import WebConfig

                WebConfig.load(web if web.is_absolute() else loaded.path.parent / web)
            n_targets = sum(len(loaded.config.targets_of(k)) for k in loaded.config.kinds)
            print(f"{args.file}: OK ({len(loaded.inventory)} sites, {n_targets} targets)")
            return 0
        if args.command == "inventory":
            import json

            from agent.sd import export_sd

            groups = export_sd(load_config(args.config_file))
            sys.stdout.write(json.dumps(groups, ensure_ascii=False, indent=2) + "\n")
            return 0
        if args.command == "doctor":
            from agent.doctor import run_doctor

            return run_doctor(load_config(args.config_file), args.prometheus_url)
        if args.command == "report":
            from agent.report.main import run as run_report

            return run_report(args)
        if args.command == "once":
            return run_until_done(_once(args.config_file, args.collector))
        if args.command == "run":
            from agent.lifecycle import Agent

            return run_until_done(Agent(args.config_file, args.listen_address, args.web_config_file).run())
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"giamsat: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
