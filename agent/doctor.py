"""``giamsat doctor``: the preflight an operator runs after install, as the service's user.

It answers "will the agent work here?" before the first scrape does: ICMP permission, a writable state
directory, the web config, every configured target collected once with its credentials (so a wrong
SNMP community or SSH key shows up now, by name), and clock skew against the Prometheus server. Each
failure is printed with the fix. Exit status 0 when nothing failed, 1 otherwise.

Run it as the service runs: ``runuser -u giamsat -- giamsat doctor`` (a check run as root would pass
the ICMP and state-directory checks for the wrong reason).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from agent.config import LoadedConfig
from agent.kernel.collector import FAIL, PASS, WARN, DoctorCheck
from agent.kernel.errors import ConfigError
from agent.kernel.pipeline import Pipeline
from agent.kernel.results import JobResult
from agent.kernel.store import Store
from collectors import COLLECTORS

#: Skew beyond which samples and alert timing start to mislead (Prometheus itself warns from 0.1 s of
#: scrape-timestamp drift; a whole second is already a broken time sync).
MAX_SKEW_SECONDS = 1.0


#: A row of the table (collectors add their own through ``Collector.doctor_checks``).
Check = DoctorCheck


def check_state_dir(state_dir: Path) -> Check:
    fix = (
        f"create it for the service user: install -d -o giamsat -g giamsat -m 0750 {state_dir} "
        "(systemd's StateDirectory= does this when the service starts)"
    )
    if not state_dir.exists():
        return Check("state directory", FAIL, f"{state_dir} does not exist", fix)
    if not state_dir.is_dir():
        return Check("state directory", FAIL, f"{state_dir} is not a directory", fix)
    try:
        fd, name = tempfile.mkstemp(prefix=".doctor-", dir=state_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return Check("state directory", FAIL, f"{state_dir} is not writable ({exc.strerror})", fix)
    return Check("state directory", PASS, f"{state_dir} is writable")


def check_web_config(path: Path | None) -> Check | None:
    if path is None:
        return None
    from exporters.webconfig import WebConfig

    try:
        wc = WebConfig.load(path)
    except ConfigError as exc:
        return Check(
            "web config",
            FAIL,
            "; ".join(str(p) for p in exc.problems[:3]),
            "fix the file (docs/security.md); the agent refuses to start with it",
        )
    what = ", ".join(w for w, on in (("TLS", wc.tls_enabled), ("basic auth", wc.auth_required)) if on)
    return Check("web config", PASS, f"{path}: {what or 'no TLS, no auth'}")


def down_reason(result: JobResult) -> str | None:
    """Why a target reported itself down in its data (as its collector reads it), else None."""
    link = result.link
    if link is None or link.up:
        return None
    return link.reason or "down"


def fix_for(kind: str, reason: str) -> str:
    """The fix the collector kind gives for a failure reason."""
    return COLLECTORS[kind].fix_for(reason)


async def _collect_all(loaded: LoadedConfig) -> tuple[list[JobResult], list[Check]]:
    from agent.scheduler import Runner

    runner = Runner(loaded, Pipeline(Store()))
    try:
        await runner.open()
    except Exception as exc:
        return [], [
            Check(
                "collectors start",
                FAIL,
                f"a collector failed to start: {type(exc).__name__}",
                "run `giamsat run` in the foreground with --log.level debug and read the error",
            )
        ]
    try:
        return await runner.run_once(), []
    finally:
        await runner.close()


def check_targets(loaded: LoadedConfig) -> list[Check]:
    """Every configured job collected once, credentials included; a down target fails by name."""
    results, checks = asyncio.run(_collect_all(loaded))
    for r in sorted(results, key=lambda r: r.job_id):
        name = r.job_id if r.target else f"{r.kind} (this host)"
        if not r.success:
            checks.append(Check(name, FAIL, f"collection failed: {r.reason}", fix_for(r.kind, r.reason)))
            continue
        down = down_reason(r)
        if down is not None:
            checks.append(Check(name, FAIL, f"target reports down: {down}", fix_for(r.kind, down)))
        else:
            checks.append(Check(name, PASS, f"collected in {r.duration:.2f}s"))
    return checks


def check_clock(prometheus_url: str, timeout: float = 5.0) -> Check:
    """Skew between this clock and the Prometheus server's: ``time()`` from its API, else its Date header."""
    base = prometheus_url.rstrip("/")
    fix = "enable time sync on this machine (timedatectl set-ntp true, or chrony) against the same NTP server as Prometheus"
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": "time()"})
    t0 = time.time()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator-given URL
            body = resp.read(65536)
            date = resp.headers.get("Date")
        t1 = time.time()
        remote: float | None = None
        tolerance = MAX_SKEW_SECONDS
        try:
            doc = json.loads(body)
            remote = float(doc["data"]["result"][0])
        except (ValueError, KeyError, IndexError, TypeError):
            remote = None
        if remote is None and date:
            parsed = email.utils.parsedate_to_datetime(date)
            remote = parsed.timestamp() + 0.5  # the header has whole seconds
            tolerance = MAX_SKEW_SECONDS + 1.0
        if remote is None or not math.isfinite(remote):
            return Check(
                "clock skew", WARN, f"{base} answered without a time", "give the Prometheus server's URL"
            )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Check(
            "clock skew",
            FAIL,
            f"cannot reach {base}: {reason}",
            "check --prometheus.url and the network path",
        )
    skew = remote - (t0 + t1) / 2
    rtt = t1 - t0
    detail = f"this clock is {abs(skew):.3f}s {'behind' if skew > 0 else 'ahead of'} {base} (round trip {rtt:.3f}s)"
    if abs(skew) > tolerance + rtt / 2:
        return Check("clock skew", FAIL, detail, fix)
    return Check("clock skew", PASS, detail)


def render(checks: Iterable[Check], out: TextIO) -> int:
    checks = list(checks)
    width = max([len(c.name) for c in checks] + [5])
    out.write(f"{'CHECK':<{width}}  RESULT  DETAIL\n")
    for c in checks:
        out.write(f"{c.name:<{width}}  {c.status:<6}  {c.detail}\n")
    failed = [c for c in checks if c.status == FAIL]
    fixes = [c for c in checks if c.fix and c.status != PASS]
    if fixes:
        out.write("\nHow to fix:\n")
        for c in fixes:
            out.write(f"  {c.name}: {c.fix}\n")
    out.write(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed\n")
    return 1 if failed else 0


def run_doctor(
    loaded_config: LoadedConfig, prometheus_url: str | None = None, out: TextIO | None = None
) -> int:
    """Run every check, print the table (and the fixes), return 0 if nothing failed, else 1."""
    cfg = loaded_config.config
    checks: list[Check] = []
    for kind in COLLECTORS:  # every kind's own preflight (ICMP permission), configured or not
        settings = cfg.collector_settings(kind)
        checks += COLLECTORS[kind].doctor_checks(settings, cfg.targets_of(kind) if settings.enabled else [])
    checks.append(check_state_dir(cfg.agent.state_dir))
    web = check_web_config(cfg.agent.web_config_file)
    if web is not None:
        checks.append(web)
    checks += check_targets(loaded_config)
    if prometheus_url:
        checks.append(check_clock(prometheus_url))
    return render(checks, out or sys.stdout)


__all__ = ["FAIL", "PASS", "WARN", "Check", "check_clock", "check_state_dir", "check_targets", "run_doctor"]
