#!/usr/bin/env python3
"""`make drill`: an outage drill on a simulated province, with the shipped rules and Alertmanager
configuration unchanged, that prints what reaches a person and how fast.

The real components, as an operator runs them: the giamsat agent on this host probing the province
(deploy/demo/province.py), and in a monitoring namespace of its own a Prometheus with the shipped
scrape and evaluation intervals and rule file, an Alertmanager with the shipped alertmanager.yml, and a
webhook receiver on that namespace's 127.0.0.1:5001 (where the shipped receivers post). The drill:

1. waits for the steady state (every site up but the never-connected ones);
2. cuts a district and a commune (of another district) at once, waits for their pages, restarts the
   agent during the outage (each restart timed so that a scrape lands in its first seconds), restores
   both and waits for the resolved notifications; ``--cycles`` times;
3. applies random loss on every link (``--loss``, 20 % for ``--loss-minutes``, 30 by default) and
   counts pages, warnings and site-state flaps meanwhile;
4. prints the table: cut -> agent state, -> alert firing, -> page delivered; restore -> resolved
   delivered; communes behind the cut district; coverage gaps; restarts; pages and flaps under loss.

The end-to-end test (tests/integration/test_sites_e2e.py) runs the same ``Stack`` and scenario, shorter,
and asserts the behaviour; timings are printed, never asserted. Standard library only; needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"
RULES = DEPLOY / "rules" / "giamsat.rules.yml"
ALERTMANAGER_YML = DEPLOY / "alertmanager.yml"
PROMETHEUS_YML = DEPLOY / "prometheus.yml"
AGENT_PORT = 9469


def _load_province() -> ModuleType:
    name = "giamsat_demo_province"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("province.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


province_mod = _load_province()


def shipped_intervals() -> tuple[str, str]:
    """(scrape_interval, evaluation_interval) of the shipped prometheus.yml's global section."""
    text = PROMETHEUS_YML.read_text(encoding="utf-8")
    scrape = re.search(r"^\s+scrape_interval:\s*(\S+)", text, re.M)
    evaluation = re.search(r"^\s+evaluation_interval:\s*(\S+)", text, re.M)
    assert scrape and evaluation, "shipped prometheus.yml has no global intervals"
    return scrape.group(1), evaluation.group(1)


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (our own loopback/netns URLs)
        return str(r.read().decode("utf-8"))


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop one process we started, by its PID."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- the webhook receiver (runs inside the monitoring namespace) ---------------------------------------


def serve_webhook(listen: str, out: Path) -> None:
    """Append every notification Alertmanager posts, with its arrival time, as one JSON line."""
    host, port = listen.rsplit(":", 1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
            line = json.dumps({"t": time.time(), "path": self.path, "body": json.loads(body or b"{}")})
            with lock, out.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


# -- the stack -----------------------------------------------------------------------------------------


@dataclass
class Event:
    t: float
    site: str
    what: str  # an agent state, or "firing"/"resolved" of an alert
    alertname: str = ""


@dataclass
class Stack:
    """The agent on this host; Prometheus, Alertmanager and the webhook in the monitoring namespace."""

    prov: Any  # province_mod.Province, built with monitor=True
    workdir: Path
    giamsat: str
    interval: str = "15s"
    snmp: bool = False
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    agent_events: list[Event] = field(default_factory=list)
    alert_events: list[Event] = field(default_factory=list)
    agent_starts: list[float] = field(default_factory=list)
    restart_gaps: list[float] = field(default_factory=list)  # seconds each restart was not listening
    _states: dict[str, str] = field(default_factory=dict)
    _alerts: set[tuple[str, str]] = field(default_factory=set)
    _stop_watch: threading.Event = field(default_factory=threading.Event)
    _watch: threading.Thread | None = None

    @property
    def agent_url(self) -> str:
        return f"http://{self.prov.agent_address}:{AGENT_PORT}"

    @property
    def prom_url(self) -> str:
        return f"http://{self.prov.monitor_address}:9090"

    @property
    def am_url(self) -> str:
        return f"http://{self.prov.monitor_address}:9093"

    @property
    def notifications_file(self) -> Path:
        return self.workdir / "notifications.jsonl"

    def _in_monitor(self, name: str, *cmd: str) -> None:
        with (self.workdir / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            self.procs[name] = subprocess.Popen(
                ["ip", "netns", "exec", self.prov.ns("m"), *cmd], stdout=log, stderr=log, cwd=self.workdir
            )

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "giamsat.yml").write_text(
            self.prov.config(self.workdir / "state", interval=self.interval, snmp=self.snmp), encoding="utf-8"
        )
        if self.snmp:
            (self.workdir / "snmpd.conf").write_text(self.prov.snmpd_conf(), encoding="utf-8")
            with (self.workdir / "snmpd.log").open("wb") as log:
                self.procs["snmpd"] = subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        self.prov.ns("a"),
                        "snmpd",
                        "-f",
                        "-Lo",
                        "-C",
                        "-c",
                        "snmpd.conf",
                    ],
                    stdout=log,
                    stderr=log,
                    cwd=self.workdir,
                )
        self.start_agent()
        self._wait(self.agent_url + "/-/ready", "agent")
        scrape, evaluation = shipped_intervals()
        (self.workdir / "prometheus.yml").write_text(
            "# The shipped intervals, rule file and Alertmanager address; the agent of this drill.\n"
            f"global: {{scrape_interval: {scrape}, evaluation_interval: {evaluation}}}\n"
            f"rule_files: [{json.dumps(str(RULES))}]\n"
            "alerting:\n  alertmanagers: [{static_configs: [{targets: ['127.0.0.1:9093']}]}]\n"
            "scrape_configs:\n"
            f"  - job_name: giamsat\n    static_configs: [{{targets: ['{self.prov.agent_address}:{AGENT_PORT}']}}]\n",
            encoding="utf-8",
        )
        self._in_monitor(
            "webhook",
            sys.executable,
            str(Path(__file__).resolve()),
            "webhook",
            "--out",
            str(self.notifications_file),
        )
        self._in_monitor(
            "alertmanager",
            "prometheus-alertmanager",
            f"--config.file={ALERTMANAGER_YML}",  # shipped, unchanged
            f"--storage.path={self.workdir / 'alertmanager'}",
            "--web.listen-address=0.0.0.0:9093",
            "--cluster.listen-address=",
        )
        self._in_monitor(
            "prometheus",
            "prometheus",
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            "--web.listen-address=0.0.0.0:9090",
        )
        self._wait(self.am_url + "/-/ready", "alertmanager")
        self._wait(self.prom_url + "/-/ready", "prometheus")
        self._watch = threading.Thread(target=self._watcher, daemon=True)
        self._watch.start()

    def start_agent(self) -> None:
        self.agent_starts.append(time.time())
        with (self.workdir / "agent.log").open("ab") as log:
            self.procs["agent"] = subprocess.Popen(
                [
                    self.giamsat,
                    "run",
                    "--config.file",
                    str(self.workdir / "giamsat.yml"),
                    "--web.listen-address",
                    f"{self.prov.agent_address}:{AGENT_PORT}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def restart_agent(self, lead: float) -> float:
        """Stop the agent and start it again ``lead`` seconds before Prometheus's next scrape of it, so
        that scrape lands in the new agent's first seconds. Returns when that scrape came, in seconds
        after the new agent was started."""
        interval = _seconds(shipped_intervals()[0])
        last = self.last_scrape()
        start_at = last + interval * (1 + int((time.time() + 4 - last) // interval)) - lead
        time.sleep(max(0.0, start_at - time.time()))
        stopping = time.time()
        _stop(self.procs["agent"])  # as `systemctl restart`: stop, then start at once
        self.start_agent()
        started = self.agent_starts[-1]
        deadline = time.time() + 3 * interval
        while time.time() < deadline:
            scraped = self.last_scrape()
            if scraped > started:
                self._wait(self.agent_url + "/-/ready", "agent")
                self.restart_gaps.append(self._listening_since(stopping))
                return scraped - started
            time.sleep(0.2)
        raise RuntimeError("Prometheus did not scrape the restarted agent")

    def _listening_since(self, stopping: float) -> float:
        """Seconds from the stop to the new agent's "giamsat started" (it listens from just before)."""
        text = (self.workdir / "agent.log").read_text(encoding="utf-8", errors="replace")
        starts = re.findall(r'^ts=(\S+) .*msg="giamsat started"', text, re.M)
        when = (
            datetime.fromisoformat(starts[-1].replace("Z", "+00:00")).timestamp() if starts else time.time()
        )
        return when - stopping

    def last_scrape(self) -> float:
        data = json.loads(_get(self.prom_url + "/api/v1/targets?state=active"))
        (target,) = data["data"]["activeTargets"]
        stamp = re.sub(r"(\.\d{6})\d*", r"\1", target["lastScrape"]).replace("Z", "+00:00")
        return datetime.fromisoformat(stamp).timestamp()

    def _wait(self, url: str, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    log = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{name} exited with {p.returncode}:\n{log}")
            try:
                _get(url, timeout=2)
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what}: no answer from {url}") from None
                time.sleep(0.3)

    def stop(self) -> None:
        self._stop_watch.set()
        if self._watch is not None:
            self._watch.join(5)
        for p in reversed(list(self.procs.values())):
            _stop(p)

    # -- observing ------------------------------------------------------------------------------------

    def agent_states(self) -> dict[str, str]:
        """Every site's state as the agent exposes it now."""
        out: dict[str, str] = {}
        for m in re.finditer(
            r'^giamsat_site_state\{site="([^"]+)",state="([a-z]+)"\} 1(?:\.0)?$',
            _get(self.agent_url + "/metrics"),
            re.M,
        ):
            out[m.group(1)] = m.group(2)
        return out

    def agent_metric(self, name: str) -> dict[str, float]:
        """``name{site="..."}`` values on the agent's /metrics, by site."""
        text = _get(self.agent_url + "/metrics")
        return {
            m.group(1): float(m.group(2))
            for m in re.finditer(rf'^{name}\{{site="([^"]+)"\}} (\S+)$', text, re.M)
        }

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = _get(self.prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10)
        result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
        return result

    def firing(self) -> set[tuple[str, str]]:
        return {
            (r["metric"]["alertname"], r["metric"].get("site", ""))
            for r in self.query('ALERTS{alertstate="firing"}')
        }

    def _watcher(self) -> None:
        """Poll the agent (twice a second) and Prometheus's alerts (once a second); note every change."""
        tick = 0
        while not self._stop_watch.wait(0.5):
            now = time.time()
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                states = self.agent_states()
                for site, st in states.items():
                    if self._states.get(site) != st:
                        self.agent_events.append(Event(now, site, st))
                        self._states[site] = st
            tick += 1
            if tick % 2:
                continue
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError, KeyError):
                firing = self.firing()
                for name, site in firing - self._alerts:
                    self.alert_events.append(Event(now, site, "firing", name))
                for name, site in self._alerts - firing:
                    self.alert_events.append(Event(now, site, "resolved", name))
                self._alerts = firing

    def notifications(self) -> list[tuple[float, str, str, str, str]]:
        """(time, receiver path, alertname, site, firing/resolved) of every alert in every notification."""
        out = []
        if not self.notifications_file.exists():
            return out
        for line in self.notifications_file.read_text(encoding="utf-8").splitlines():
            n = json.loads(line)
            for a in n["body"].get("alerts", []):
                labels = a.get("labels", {})
                out.append(
                    (n["t"], n["path"], labels.get("alertname", ""), labels.get("site", ""), a["status"])
                )
        return out

    def first(self, since: float, pred: Callable[[Any], bool], events: list[Any]) -> float | None:
        """Seconds from ``since`` to the first event at or after it that ``pred`` accepts."""
        for e in list(events):
            t = e[0] if isinstance(e, tuple) else e.t
            if t >= since and pred(e):
                return t - since
        return None


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", text))


def wait_for(pred: Callable[[], bool], timeout: float, what: str, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, urllib.error.URLError):
            if pred():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


# -- the scenario --------------------------------------------------------------------------------------


@dataclass
class Cycle:
    """One cut and restore of a district and a commune."""

    district: str
    commune: str
    to_state: dict[str, float | None] = field(default_factory=dict)
    to_firing: dict[str, float | None] = field(default_factory=dict)
    to_page: dict[str, float | None] = field(default_factory=dict)
    to_up: dict[str, float | None] = field(default_factory=dict)
    to_resolved: dict[str, float | None] = field(default_factory=dict)
    behind: dict[str, str] = field(default_factory=dict)  # communes of the cut district -> their state
    behind_paged: list[str] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)  # first scrape, seconds after each restart
    restart_gaps: list[float] = field(default_factory=list)  # seconds each restart was not listening
    resolved_by_restart: list[str] = field(default_factory=list)
    unknown_after_restart: list[str] = field(default_factory=list)


def steady(stack: Stack, timeout: float = 180) -> dict[str, str]:
    """Wait until every connected site is up and every never-connected one a coverage gap."""
    want = {n.site: "up" if n.connected else "gap" for n in stack.prov.nodes}
    wait_for(lambda: stack.agent_states() == want, timeout, "steady states")
    return want


def outage_cycle(
    stack: Stack,
    district: str,
    commune: str,
    restarts: int = 0,
    timeout: float = 240,
    log: Callable[[str], None] = print,
    during: Callable[[], None] | None = None,
) -> Cycle:
    """Cut ``district`` and ``commune`` at once; once both are paged, call ``during`` (checks of the
    outage), restart the agent ``restarts`` times; restore both and wait for the resolved pages."""
    prov = stack.prov
    cyc = Cycle(district, commune)
    behind = [n.site for n in prov.children(district) if n.connected]
    # A cut comes at any moment of the probe round, not in step with the drill's previous wait.
    time.sleep(random.uniform(0, _seconds(stack.interval)))
    log(f"cut {district} and {commune}")
    cut_at = time.time()
    prov.cut(district)
    prov.cut(commune)
    try:

        def paged(site: str) -> Callable[[Any], bool]:
            return lambda n: n[1] == "/page" and n[2] == "SiteDown" and n[3] == site and n[4] == "firing"

        wait_for(
            lambda: all(
                stack.first(cut_at, paged(s), stack.notifications()) is not None for s in (district, commune)
            ),
            timeout,
            f"pages for {district} and {commune}",
        )
        for s in (district, commune):
            cyc.to_state[s] = stack.first(
                cut_at, lambda e, s=s: e.site == s and e.what == "down", stack.agent_events
            )
            cyc.to_firing[s] = stack.first(
                cut_at,
                lambda e, s=s: e.site == s and e.alertname == "SiteDown" and e.what == "firing",
                stack.alert_events,
            )
            cyc.to_page[s] = stack.first(cut_at, paged(s), stack.notifications())
        states = stack.agent_states()
        cyc.behind = {s: states.get(s, "?") for s in behind}
        if during is not None:
            during()
        paged_at = time.time()
        for lead in (2.0, 1.0, 0.3, 3.0, 1.5)[:restarts]:
            log(f"restart the agent ({lead:g}s before a scrape)")
            cyc.restarts.append(stack.restart_agent(lead))
            cyc.restart_gaps.append(stack.restart_gaps[-1])
            seen = stack.agent_states()
            cyc.unknown_after_restart += [s for s in (district, commune) if seen.get(s) == "unknown"]
        if restarts:
            time.sleep(_seconds(shipped_intervals()[1]) * 2)  # two more evaluations with the restarted agent
        for t, path, name, site, status in stack.notifications():
            if t >= cut_at and path == "/page" and site in behind:
                cyc.behind_paged.append(site)
            if t >= paged_at and name == "SiteDown" and site in (district, commune) and status == "resolved":
                cyc.resolved_by_restart.append(site)
        cyc.resolved_by_restart += [
            e.site
            for e in stack.alert_events
            if e.t >= paged_at
            and e.alertname == "SiteDown"
            and e.site in (district, commune)
            and e.what == "resolved"
        ]
        cyc.resolved_by_restart = sorted(set(cyc.resolved_by_restart))
    finally:
        log(f"restore {district} and {commune}")
        restore_at = time.time()
        prov.restore(district)
        prov.restore(commune)

    def resolved(site: str) -> Callable[[Any], bool]:
        return lambda n: n[1] == "/page" and n[2] == "SiteDown" and n[3] == site and n[4] == "resolved"

    wait_for(
        lambda: all(
            stack.first(restore_at, resolved(s), stack.notifications()) is not None
            for s in (district, commune)
        ),
        timeout,
        f"resolved notifications for {district} and {commune}",
    )
    for s in (district, commune):
        cyc.to_up[s] = stack.first(
            restore_at, lambda e, s=s: e.site == s and e.what == "up", stack.agent_events
        )
        cyc.to_resolved[s] = stack.first(restore_at, resolved(s), stack.notifications())
    wait_for(lambda: set(stack.agent_states().values()) <= {"up", "gap"}, 120, "every site back up")
    return cyc


@dataclass
class LossPhase:
    percent: int
    seconds: float
    pages: list[str] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)  # alertname -> notifications
    flaps: list[tuple[str, str]] = field(default_factory=list)  # (site, state it flapped to)
    changed: list[str] = field(default_factory=list)  # sites whose state-change time moved


def loss_phase(stack: Stack, percent: int, seconds: float, log: Callable[[str], None] = print) -> LossPhase:
    out = LossPhase(percent, seconds)
    before = stack.agent_metric("giamsat_site_state_change_timestamp_seconds")
    log(f"{percent}% random loss on every link for {seconds / 60:g} min")
    start = time.time()
    stack.prov.loss(percent)
    try:
        time.sleep(seconds)
    finally:
        stack.prov.loss(0)
    end = time.time()
    after = stack.agent_metric("giamsat_site_state_change_timestamp_seconds")
    out.changed = sorted(s for s, t in after.items() if before.get(s) != t)
    out.flaps = [(e.site, e.what) for e in stack.agent_events if start <= e.t <= end]
    for t, path, name, site, status in stack.notifications():
        if start <= t <= end + 60 and status == "firing":
            if path == "/page":
                out.pages.append(f"{name}({site})")
            else:
                out.warnings[name] = out.warnings.get(name, 0) + 1
    return out


def _fmt(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "never"
    if len(got) == 1 and len(values) == 1:
        return f"{got[0]:.1f} s"
    missing = f", {len(values) - len(got)} missing" if len(got) < len(values) else ""
    return f"median {statistics.median(got):.1f} s, worst {max(got):.1f} s (n={len(got)}{missing})"


def table(cycles: list[Cycle], loss: LossPhase | None, gaps: tuple[int, int], load: str) -> str:
    """The drill's result, as the issue's table."""
    d = [c.district for c in cycles]
    rows = [
        "| measured | district | commune | goal |",
        "|---|---|---|---|",
    ]

    def row(label: str, attr: str, goal: str) -> None:
        dist = [getattr(c, attr)[c.district] for c in cycles]
        comm = [getattr(c, attr)[c.commune] for c in cycles]
        rows.append(f"| {label} | {_fmt(dist)} | {_fmt(comm)} | {goal} |")

    row("cut -> agent shows `down`", "to_state", "-")
    row("cut -> SiteDown firing", "to_firing", "-")
    row("**cut -> page delivered**", "to_page", "<= 60 s median, <= 90 s worst")
    row("restore -> agent shows `up`", "to_up", "-")
    row("**restore -> resolved delivered**", "to_resolved", "<= 60 s median")
    behind = [st for c in cycles for st in c.behind.values()]
    paged = sum(len(c.behind_paged) for c in cycles)
    rows.append(
        f"| communes behind the cut districts ({', '.join(d)}) | {behind.count('unreachable')}/{len(behind)} "
        f"unreachable, {paged} paged | - | 100 % unreachable, 0 pages |"
    )
    rows.append(f"| coverage gaps counted | {gaps[0]} (inventory has {gaps[1]}) | - | exact |")
    restarts = [r for c in cycles for r in c.restarts]
    if restarts:
        resolved = sum(len(c.resolved_by_restart) for c in cycles)
        unknown = sum(len(c.unknown_after_restart) for c in cycles)
        first = ", ".join(f"{r:.1f}" for r in restarts)
        gaps_ = ", ".join(f"{g:.1f}" for c in cycles for g in c.restart_gaps)
        rows.append(
            f"| agent restarts during the outage (down {gaps_} s; first scrape {first} s after start) | "
            f"{len(restarts)}: {resolved} alerts resolved, {unknown} sites `unknown` | - | never resolves a "
            "firing alert |"
        )
    if loss is not None:
        lasted = f"{loss.seconds / 60:g} min of {loss.percent} % random loss on every link"
        warnings = ", ".join(f"{k} {v}" for k, v in sorted(loss.warnings.items())) or "0"
        rows.append(f"| {lasted}: pages | {len(loss.pages)} {loss.pages or ''} | - | 0 |")
        rows.append(f"| same: warning notifications | {warnings} | - | a warning that does not page |")
        rows.append(
            f"| same: site-state flaps | {len(loss.flaps)} ({len(loss.changed)} sites changed state) | - | 0 |"
        )
    rows.append(f"\nmachine load (1, 5, 15 min): {load}")
    return "\n".join(rows)


def coverage_gaps(stack: Stack) -> tuple[int, int]:
    """(gaps the agent counts, never-connected sites in the inventory)."""
    counted = sum(1 for v in stack.agent_metric("giamsat_site_coverage_gap").values() if v == 1)
    return counted, sum(1 for n in stack.prov.nodes if not n.connected)


@contextlib.contextmanager
def running(prov: Any, workdir: Path, giamsat: str, snmp: bool = False) -> Iterator[Stack]:
    stack = Stack(prov, workdir, giamsat, snmp=snmp)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    hook = sub.add_parser("webhook", help="(internal) the webhook receiver of the monitoring namespace")
    hook.add_argument("--listen", default="127.0.0.1:5001")
    hook.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", choices=["province", "demo"], default="province",
                   help="province: 10 districts x 10 communes, 2 never connected; demo: the 9-site demo")  # fmt: skip
    p.add_argument(
        "--cycles", type=int, default=3, help="cuts and restores (each: one district, one commune)"
    )
    p.add_argument("--restarts", type=int, default=3, help="agent restarts during the first outage")
    p.add_argument(
        "--loss", type=int, default=20, help="random loss on every link, percent (0: no loss phase)"
    )
    p.add_argument("--loss-minutes", type=float, default=30.0)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/giamsat-drill"))  # noqa: S108
    p.add_argument("--prefix", default=f"gsd{os.getpid()}", help="of namespace and interface names")
    args = p.parse_args()
    if args.cmd == "webhook":
        serve_webhook(args.listen, args.out)
        return 0
    if os.geteuid() != 0:
        print("the drill builds network namespaces: run it as root", file=sys.stderr)
        return 1
    giamsat = str(ROOT / ".venv" / "bin" / "giamsat")
    if not Path(giamsat).exists():
        print("no .venv/bin/giamsat: run `make run` or `pip install -e .` into .venv first", file=sys.stderr)
        return 1
    nodes = province_mod.province_nodes() if args.size == "province" else province_mod.NODES
    prov = province_mod.Province.claim(args.prefix, (100, 125, 150), nodes=nodes)
    if args.workdir.exists():
        subprocess.run(["rm", "-rf", str(args.workdir)], check=True)

    def stamp(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    try:
        stamp(f"building the province ({len(nodes)} sites, namespaces {args.prefix}*)")
        prov.build(monitor=True)
        with running(prov, args.workdir, giamsat) as stack:
            stamp("waiting for the steady state")
            steady(stack)
            districts = [n.site for n in prov.districts()]
            cycles = []
            for i in range(args.cycles):
                district = districts[i % len(districts)]
                other = districts[(i + 1) % len(districts)]
                commune = next(n.site for n in prov.children(other) if n.connected)
                cycles.append(
                    outage_cycle(stack, district, commune, args.restarts if i == 0 else 0, log=stamp)
                )
            gaps = coverage_gaps(stack)
            loss = loss_phase(stack, args.loss, args.loss_minutes * 60, log=stamp) if args.loss else None
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            print()
            print(table(cycles, loss, gaps, load))
            print(f"\nlogs and notifications in {args.workdir}")
    finally:
        prov.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
