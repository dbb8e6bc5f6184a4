"""SSH collector: metrics from hosts where no agent can be installed, read over SSH with fixed commands.

Modules per target: ``linux`` (load, memory, CPU, network and filesystems with node_exporter's names,
read with ``tail -n +1 /proc/...`` and ``df -P``) and user-defined ``command`` modules (argv list, a
parser: number, regex with named groups, key=value or JSON, and metric specs). Credentials are named
under ``auths`` apart from targets, as snmp_exporter keeps auths apart from modules.

A target that cannot be reached or logged into is data (``ssh_up 0`` with a bounded reason), never an
exception: only a broken collector (a key file that cannot be read, an unknown auth name) raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import Field, SecretStr, field_validator, model_validator

from agent.kernel.collector import (
    Collector,
    CollectorContext,
    CollectorSettings,
    TargetConfig,
    job_deadline,
)
from agent.kernel.errors import CollectError
from agent.kernel.model import Duration, Model, secret_value
from collectors.host.filesystem import FS_TYPES_EXCLUDE, MOUNT_POINTS_EXCLUDE
from collectors.host.network import DEVICE_EXCLUDE
from collectors.ssh import parsers
from collectors.ssh.errors import REASONS, KnownHostsError, SSHError

if TYPE_CHECKING:  # paramiko is imported when the collector starts, not when the config is read
    import paramiko

    from collectors.ssh.client import Address, CommandResult, Connection, ConnectionPool, Endpoint

PROC_FILES = ("/proc/loadavg", "/proc/meminfo", "/proc/stat", "/proc/net/dev")
BUILTIN_MODULES = ("linux",)
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MODULE_NAME = r"^[a-z][a-z0-9_]{0,62}$"
_RESERVED_LABELS = {"site", "target", "module", "instance", "job"}
# Threads beyond max_concurrency: for closing connections and loading keys while targets are busy.
_SPARE_THREADS = 2
# Seconds the thread-pool deadline waits past the in-thread deadline, so the thread's own watchdog
# (channel close, then transport close one second later) always decides first.
_RUNNER_SLACK = 3.0
_DEFAULT_BUDGET = 10.0  # the agent's default job timeout, used when neither target nor settings set one
# Seconds a host name's last good addresses stand in while the resolver fails or does not answer.
_DNS_STALE = 3600.0
# (name, port) -> (monotonic time, addresses) of the last good lookup. Module-wide, so that it survives
# a reload (a new collector), which is when an operator may be at work during a resolver outage.
_GOOD_ANSWERS: dict[tuple[str, int], tuple[float, list[Address]]] = {}


# ---------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------
class SSHAuth(Model):
    """One named credential under ``collectors.ssh.auths``: a key file, or a password."""

    username: str = Field(min_length=1)
    key_file: Path | None = None
    passphrase: SecretStr | None = Field(default=None, description="passphrase of key_file")
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _one_method(self) -> SSHAuth:
        if (self.key_file is None) == (self.password is None):
            raise ValueError("give exactly one of key_file or password (password_file, password_env)")
        if self.passphrase is not None and self.key_file is None:
            raise ValueError("passphrase is only used with key_file")
        return self


class CommandMetric(Model):
    """One metric taken from a command's output."""

    name: str
    help: str = ""
    type: Literal["gauge", "counter"] = "gauge"
    value: str = Field(
        default="", description="regex: group name; keyvalue: key; json: dotted path; number: unused"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="constant labels")
    label_groups: dict[str, str] = Field(
        default_factory=dict, description="regex only: label name -> named group giving its value"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _METRIC_NAME.match(v):
            raise ValueError(f"{v!r} is not a valid Prometheus metric name")
        if v.startswith("ssh_"):
            raise ValueError("names starting with ssh_ are the collector's own")
        return v

    @model_validator(mode="after")
    def _check(self) -> CommandMetric:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")
        for label in [*self.labels, *self.label_groups]:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"{label!r} is not a valid label name")
            if label in _RESERVED_LABELS:
                raise ValueError(f"label {label!r} is reserved (the exporter sets it)")
        both = set(self.labels) & set(self.label_groups)
        if both:
            raise ValueError(f"label(s) {sorted(both)} given both as constant and from a group")
        return self


class CommandModule(Model):
    """A user-defined module: one command, one parser, the metrics to take from its output."""

    command: list[str] = Field(min_length=1, description="argv; each argument is shell-quoted")
    parser: Literal["number", "regex", "keyvalue", "json"]
    pattern: str | None = Field(default=None, description="regex parser: pattern with named groups")
    separator: str = Field(default="=", min_length=1)
    timeout: Duration | None = None
    max_series: int = Field(default=1000, ge=1, le=100_000)
    metrics: list[CommandMetric] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> CommandModule:
        groups: set[str] = set()
        if self.parser == "regex":
            if not self.pattern:
                raise ValueError("the regex parser needs a pattern")
            try:
                groups = set(re.compile(self.pattern, re.MULTILINE).groupindex)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from None
            if not groups:
                raise ValueError("pattern has no named groups, e.g. (?P<value>\\d+)")
        elif self.pattern is not None:
            raise ValueError("pattern is only used by the regex parser")
        names = [m.name for m in self.metrics]
        if len(names) != len(set(names)):
            raise ValueError("metric names must be unique within a module")
        for m in self.metrics:
            if self.parser != "number" and not m.value:
                raise ValueError(f"metric {m.name}: 'value' is required for the {self.parser} parser")
            if self.parser != "regex" and m.label_groups:
                raise ValueError(f"metric {m.name}: label_groups only work with the regex parser")
            missing = {m.value, *m.label_groups.values()} - groups - {""} if self.parser == "regex" else set()
            if missing:
                raise ValueError(f"metric {m.name}: pattern has no group(s) {sorted(missing)}")
        return self

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern or "", re.MULTILINE)


class SSHSettings(CollectorSettings):
    """``collectors.ssh``."""

    known_hosts_file: Path | None = Field(
        default=None, description="OpenSSH known_hosts file; default <state_dir>/ssh_known_hosts"
    )
    trust_on_first_use: bool = Field(
        default=False, description="record the key of a host known_hosts does not mention, then trust it"
    )
    max_concurrency: int = Field(default=8, ge=1, le=256, description="targets talked to at the same time")
    connect_timeout: Duration = 5.0
    command_timeout: Duration = 10.0
    keepalive_interval: Duration = 30.0
    reuse_connections: bool = Field(
        default=True, description="keep one connection per target open between collections (one thread each)"
    )
    max_output_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    user_hz: int = Field(default=100, ge=1, le=10_000, description="USER_HZ of the targets (/proc/stat)")
    df_command: list[str] = Field(default_factory=lambda: ["df", "-P", "-T", "-k"], min_length=1)
    filesystem_mount_points_exclude: str = Field(
        default=MOUNT_POINTS_EXCLUDE, description="regex; as node_exporter's --collector.filesystem flag"
    )
    filesystem_fs_types_exclude: str = Field(default=FS_TYPES_EXCLUDE, description="regex, as above")
    netdev_device_exclude: str = Field(default=DEVICE_EXCLUDE, description="regex; empty: keep every device")
    auths: dict[str, SSHAuth] = Field(default_factory=dict)
    commands: dict[str, CommandModule] = Field(default_factory=dict)

    @field_validator(
        "filesystem_mount_points_exclude", "filesystem_fs_types_exclude", "netdev_device_exclude"
    )
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"does not compile: {exc}") from None
        return v

    @field_validator("commands")
    @classmethod
    def _command_names(cls, v: dict[str, CommandModule]) -> dict[str, CommandModule]:
        seen: dict[str, str] = {}
        for name, module in v.items():
            if not re.match(_MODULE_NAME, name):
                raise ValueError(f"module name {name!r}: use lower case letters, digits and _")
            if name in BUILTIN_MODULES:
                raise ValueError(f"module name {name!r} is built in")
            for m in module.metrics:
                if m.name in seen:
                    raise ValueError(f"metric {m.name} is defined by both {seen[m.name]} and {name}")
                seen[m.name] = name
        return v


class SSHTarget(TargetConfig):
    """One host under ``targets.ssh``."""

    address: str = Field(min_length=1, description="host name or IP address")
    port: int = Field(default=22, ge=1, le=65535)
    auth: str = Field(description="name of an entry under collectors.ssh.auths")
    modules: list[str] = Field(default_factory=lambda: ["linux"], min_length=1)

    @field_validator("modules")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(v) != len(set(v)):
            raise ValueError("modules must not repeat")
        return v


# ---------------------------------------------------------------------------------------------------
# the collector
# ---------------------------------------------------------------------------------------------------
class _ModuleFailed(Exception):
    def __init__(self, reason: str, message: str, partial: list[Metric]) -> None:
        super().__init__(message)
        self.reason = reason
        self.partial = partial


class _Resolver:
    """Host names to addresses, with a deadline, outside the SSH thread pool.

    ``getaddrinfo`` cannot be interrupted: with an unreachable name server it blocks for the
    resolver's own timeouts (``timeout:5 attempts:2`` and more), so it runs in a daemon thread of its
    own, awaited for at most the caller's budget. One lookup per name is in flight at a time, so a hung
    resolver costs one thread per name, not one per collection. The last good answer of a name is kept
    for ``_DNS_STALE`` seconds (across reloads) and used when a lookup fails or times out (except a
    definite "no such name"), so a flapping resolver does not fail every round. Not the loop's default executor: it is
    shared with the rest of the agent, and ``asyncio.run`` waits for its threads at exit.
    """

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._good = _GOOD_ANSWERS
        self._inflight: dict[tuple[str, int], asyncio.Future[list[Address]]] = {}
        self._stale: set[tuple[str, int]] = set()

    @staticmethod
    def literal(host: str, port: int) -> list[Address] | None:
        """The address itself when ``host`` is an IP address (no lookup), else None."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError):
            return None
        return [(family, sockaddr) for family, _t, _p, _c, sockaddr in infos]

    def cached(self, host: str, port: int) -> list[Address] | None:
        found = self._good.get((host, port))
        if found is None or time.monotonic() - found[0] > _DNS_STALE:
            return None
        return found[1]

    async def resolve(self, host: str, port: int, budget: float) -> list[Address]:
        literal = self.literal(host, port)
        if literal is not None:
            return literal
        name = (host, port)
        cached = self.cached(host, port)
        fut = self._inflight.get(name)
        if fut is not None and cached is not None:
            return cached  # the previous lookup is still hanging: do not wait on it again
        if fut is None:
            fut = self._start(name)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), max(budget, 0.001))
        except TimeoutError:
            failure = SSHError("dns_failed", f"{host}: no answer from the resolver within {budget:.3g}s")
        except socket.gaierror as exc:
            failure = SSHError("dns_failed", f"{host}: {exc.strerror or exc}")
            if exc.errno == socket.EAI_NONAME:
                self._good.pop(name, None)  # a definite answer: the name is gone
                raise failure from None
        except (OSError, UnicodeError) as exc:
            failure = SSHError("dns_failed", f"{host}: {exc}")
        if cached is None:
            raise failure
        if name not in self._stale:
            self._stale.add(name)
            self.log.warning(
                f"ssh: resolving {host} failed ({failure.message}); using its last good addresses",
                extra={"host": host},
            )
        return cached

    def _start(self, name: tuple[str, int]) -> asyncio.Future[list[Address]]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Address]] = loop.create_future()
        self._inflight[name] = fut

        def deliver(result: list[Address] | None, exc: BaseException | None) -> None:
            if self._inflight.get(name) is fut:
                del self._inflight[name]
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
                return
            assert result is not None
            self._good[name] = (time.monotonic(), result)
            self._stale.discard(name)
            fut.set_result(result)

        def lookup() -> None:
            result: list[Address] | None = None
            error: BaseException | None = None
            try:
                infos = socket.getaddrinfo(name[0], name[1], type=socket.SOCK_STREAM)
                result = [(family, sockaddr) for family, _t, _p, _c, sockaddr in infos]
            except Exception as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone (the agent stopped)
                loop.call_soon_threadsafe(deliver, result, error)

        # Nobody awaiting a failed lookup must not log "exception was never retrieved".
        fut.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        threading.Thread(target=lookup, name=f"giamsat-ssh-resolve {name[0]}", daemon=True).start()
        return fut


class SSHCollector(Collector):
    kind = "ssh"
    settings_model = SSHSettings
    target_model = SSHTarget
    blocking_threads = 8 + _SPARE_THREADS  # replaced from max_concurrency in __init__

    def __init__(self, settings: CollectorSettings, ctx: CollectorContext) -> None:
        super().__init__(settings, ctx)
        assert isinstance(settings, SSHSettings)
        self.cfg = settings
        self.known_hosts_file = settings.known_hosts_file or ctx.state_dir / "ssh_known_hosts"
        self._pool: ConnectionPool | None = None  # made in start(): it needs paramiko
        self._keys: dict[str, paramiko.PKey] = {}
        self._key_errors: dict[str, str] = {}
        self._last_reason: dict[str, str] = {}
        self._slots: asyncio.Semaphore | None = None
        self._resolver = _Resolver(ctx.log)

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            raise CollectError("not_started", "the ssh collector was not started")
        return self._pool

    async def start(self) -> None:
        import paramiko

        from collectors.ssh.client import ConnectionPool, HostKeyStore, Timeouts, load_private_key

        self._slots = asyncio.Semaphore(self.cfg.max_concurrency)
        store = HostKeyStore(self.known_hosts_file, self.cfg.trust_on_first_use, self.ctx.log)
        self._pool = ConnectionPool(
            store, Timeouts(self.cfg.connect_timeout, self.cfg.keepalive_interval), self.ctx.log
        )
        # paramiko logs every failed handshake with a traceback at ERROR, each interval, for each down
        # target; the collector reports those failures itself (reason metrics, one log line per change).
        paramiko_log = logging.getLogger("paramiko")
        if paramiko_log.level == logging.NOTSET:
            paramiko_log.setLevel(logging.CRITICAL)
        for name, auth in self.cfg.auths.items():
            if auth.key_file is None:
                continue
            try:
                self._keys[name] = await self.ctx.blocking.run(
                    f"ssh-key/{name}", 10.0, load_private_key, auth.key_file, secret_value(auth.passphrase)
                )
            except (OSError, ValueError, TypeError, paramiko.SSHException) as exc:
                # cryptography raises TypeError for an encrypted key without a passphrase.
                # Not fatal for the agent: targets using this auth fail as a collector error.
                self._key_errors[name] = f"cannot load key_file {auth.key_file}: {type(exc).__name__}: {exc}"
                self.ctx.log.error(self._key_errors[name], extra={"auth": name})

    async def close(self) -> None:
        if self._pool is None:
            return
        # A wedged transport: its thread is abandoned, the process is going away or reloading.
        with contextlib.suppress(CollectError):
            await self.ctx.blocking.run("ssh/close", 4.0, self._pool.close_all)

    @classmethod
    def pool_size(cls, settings: CollectorSettings) -> int:
        """Threads for blocking calls: one per concurrently served target, plus spares."""
        assert isinstance(settings, SSHSettings)
        return settings.max_concurrency + _SPARE_THREADS

    @classmethod
    def check_targets(
        cls, settings: CollectorSettings, targets: Sequence[TargetConfig]
    ) -> list[tuple[int, str, str]]:
        """Problems between targets and settings, as (target index, key, message): names of auths and
        modules must exist. The configuration loader reports these; ``collect`` checks too."""
        assert isinstance(settings, SSHSettings)
        problems: list[tuple[int, str, str]] = []
        for i, t in enumerate(targets):
            assert isinstance(t, SSHTarget)
            if t.auth not in settings.auths:
                known = ", ".join(settings.auths) or "none defined"
                problems.append(
                    (i, "auth", f"no auth {t.auth!r} under collectors.ssh.auths (known: {known})")
                )
            for m in t.modules:
                if m not in BUILTIN_MODULES and m not in settings.commands:
                    known = ", ".join([*BUILTIN_MODULES, *settings.commands])
                    problems.append((i, "modules", f"unknown module {m!r} (known: {known})"))
        return problems

    def _endpoint(self, target: SSHTarget) -> Endpoint:
        problems = self.check_targets(self.cfg, [target])
        if problems:
            raise CollectError("config", f"target {target.name}: {problems[0][2]}")
        auth = self.cfg.auths[target.auth]
        if target.auth in self._key_errors:
            raise CollectError("key_error", self._key_errors[target.auth])
        from collectors.ssh.client import Endpoint

        return Endpoint(
            address=target.address,
            port=target.port,
            username=auth.username,
            pkey=self._keys.get(target.auth),
            password=secret_value(auth.password),
            auth_name=target.auth,
        )

    async def collect(self, target: TargetConfig | None) -> list[Metric]:
        assert isinstance(target, SSHTarget)
        start = time.monotonic()
        endpoint = self._endpoint(target)
        # Finish a little before the job's deadline so our own result, not the scheduler's timeout, is
        # stored. Outside the scheduler (tests, tools) the target's or collector's timeout applies.
        job_end = job_deadline.get()
        if job_end is None:
            job_end = start + (target.timeout or self.cfg.timeout or _DEFAULT_BUDGET)
        deadline = max(job_end - min(0.5, (job_end - start) * 0.1), start + 0.1)
        # Bounded concurrency: at most max_concurrency targets talk SSH at once. A target that cannot get
        # a slot while enough time is left is the agent's overload, not the target's fault: a collector
        # error (giamsat_collector_success 0, reason busy), never a misleading connect_timeout.
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.cfg.max_concurrency)
        needed = min(self.cfg.connect_timeout, (deadline - start) / 2)
        try:
            await asyncio.wait_for(self._slots.acquire(), max(0.001, deadline - time.monotonic() - needed))
        except TimeoutError:
            raise CollectError(
                "busy", f"{target.name}: no free slot (max_concurrency {self.cfg.max_concurrency}) in time"
            ) from None
        try:
            return await self._collect(target, endpoint, start, deadline)
        finally:
            self._slots.release()

    async def _collect(
        self, target: SSHTarget, endpoint: Endpoint, start: float, deadline: float
    ) -> list[Metric]:
        key = f"ssh/{target.name}"

        up = GaugeMetricFamily(
            "ssh_up", "Whether the SSH session could be set up (connect, host key, login)."
        )
        reused = GaugeMetricFamily(
            "ssh_session_reused", "Whether an already open SSH connection was reused for this collection."
        )
        failure = GaugeMetricFamily(
            "ssh_failure_reason",
            "Why the SSH session could not be set up (1 for the reason).",
            labels=["reason"],
        )
        mod_ok = GaugeMetricFamily(
            "ssh_module_success", "Whether the module's commands ran and parsed.", labels=["module"]
        )
        mod_dur = GaugeMetricFamily(
            "ssh_module_duration_seconds", "Time spent on the module's commands.", labels=["module"]
        )
        mod_fail = GaugeMetricFamily(
            "ssh_module_failure_reason",
            "Why a module failed (1 for the reason).",
            labels=["module", "reason"],
        )
        out: list[Metric] = []
        first_failure = first_message = ""
        try:
            addresses = await self._addresses(key, endpoint, deadline)
            conn, was_reused = await self.ctx.blocking.run(
                key,
                max(deadline - time.monotonic(), 0.0) + _RUNNER_SLACK,
                self.pool.get,
                key,
                endpoint,
                addresses,
                deadline,
            )
        except KnownHostsError:
            raise  # no host key can be checked: the collector's failure, not this target's
        except CollectError as exc:
            # The runner's own deadline passing here means the connection was never set up.
            reason = "connect_timeout" if exc.reason == "timeout" else _bounded(exc.reason)
            first_failure = reason
            self._note(target.name, reason, exc.message)
            up.add_metric([], 0)
            failure.add_metric([reason], 1)
            for module in target.modules:
                mod_ok.add_metric([module], 0)
        else:
            up.add_metric([], 1)
            reused.add_metric([], 1 if was_reused else 0)
            suspect = False
            for module in target.modules:
                m_start = time.monotonic()
                try:
                    out.extend(await self._module(module, conn, key, deadline))
                    mod_ok.add_metric([module], 1)
                except _ModuleFailed as exc:
                    out.extend(exc.partial)
                    mod_ok.add_metric([module], 0)
                    mod_fail.add_metric([module, exc.reason], 1)
                    if not first_failure:
                        first_failure, first_message = exc.reason, f"module {module}: {exc}"
                    suspect = suspect or exc.reason in ("command_timeout", "disconnected", "stuck")
                    self.ctx.log.debug(
                        "ssh module failed",
                        extra={
                            "target": target.name,
                            "module": module,
                            "reason": exc.reason,
                            "detail": str(exc),
                        },
                    )
                mod_dur.add_metric([module], time.monotonic() - m_start)
            self._note(target.name, first_failure, first_message)
            if suspect or not self.cfg.reuse_connections:
                # A server that let a command time out may be wedged while its TCP stack still answers
                # (keepalives then never fail): start afresh next time rather than reuse the session.
                with contextlib.suppress(CollectError):
                    await self.ctx.blocking.run(key, _RUNNER_SLACK, self.pool.drop, key)
        duration = GaugeMetricFamily(
            "ssh_duration_seconds", "How long the SSH collection took.", value=time.monotonic() - start
        )
        return [up, duration, failure, reused, mod_ok, mod_dur, mod_fail, *out]

    async def _addresses(self, key: str, endpoint: Endpoint, deadline: float) -> list[Address]:
        """Where to connect: the name's addresses, resolved here (with a deadline) rather than in the
        SSH thread pool, where a hung resolver pinned threads until healthy targets starved."""
        if self.pool.reusable(key, endpoint):
            cached = self._resolver.cached(endpoint.address, endpoint.port)
            if cached is not None:
                return cached  # the open connection is reused; no lookup needed
        budget = min(self.cfg.connect_timeout, deadline - time.monotonic())
        if budget <= 0:
            raise SSHError("connect_timeout", "no time left to resolve the address")
        return await self._resolver.resolve(endpoint.address, endpoint.port, budget)

    def _note(self, target: str, reason: str, message: str) -> None:
        """Log when a target starts failing, changes reason, or recovers; not on every failure."""
        before = self._last_reason.get(target)
        self._last_reason[target] = reason
        if reason and reason != before:
            self.ctx.log.warning(
                f"ssh target failing: {target}: {reason}: {message}",
                extra={"target": target, "reason": reason},
            )
        elif not reason and before:
            self.ctx.log.info(f"ssh target recovered: {target}", extra={"target": target})

    async def _exec(
        self, conn: Connection, key: str, argv: Sequence[str], deadline: float, timeout: float | None = None
    ) -> CommandResult:
        limit = min(timeout or self.cfg.command_timeout, deadline - time.monotonic())
        if limit <= 0:
            raise SSHError("command_timeout", "no time left in this collection")
        result = await self.ctx.blocking.run(
            key, limit + _RUNNER_SLACK, conn.run, list(argv), limit, self.cfg.max_output_bytes
        )
        if result.exit_status != 0:
            err = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SSHError(
                "command_failed",
                f"{argv[0]}: exit status {result.exit_status}: {err[0][:200] if err else ''}",
            )
        return result

    async def _module(self, module: str, conn: Connection, key: str, deadline: float) -> list[Metric]:
        if module == "linux":
            return await self._linux(conn, key, deadline)
        spec = self.cfg.commands[module]
        try:
            result = await self._exec(conn, key, spec.command, deadline, spec.timeout)
        except CollectError as exc:
            raise _ModuleFailed(_bounded(exc.reason), exc.message, []) from None
        try:
            return command_families(module, spec, result.stdout.decode("utf-8", "replace"))
        except parsers.ParseError as exc:
            raise _ModuleFailed("parse_error", str(exc), []) from None

    async def _linux(self, conn: Connection, key: str, deadline: float) -> list[Metric]:
        out: list[Metric] = []
        try:
            proc = await self._exec(conn, key, ["tail", "-n", "+1", *PROC_FILES], deadline)
            out += proc_families(
                proc.stdout.decode("utf-8", "replace"), self.cfg.user_hz, self.cfg.netdev_device_exclude
            )
        except CollectError as exc:
            raise _ModuleFailed(_bounded(exc.reason), exc.message, []) from None
        except parsers.ParseError as exc:
            raise _ModuleFailed("parse_error", str(exc), []) from None
        # df apart: a hung NFS mount may stall it, and then the /proc figures are still reported.
        try:
            df = await self._exec(conn, key, self.cfg.df_command, deadline)
            out += filesystem_families(
                parsers.parse_df(df.stdout.decode("utf-8", "replace")),
                self.cfg.filesystem_mount_points_exclude,
                self.cfg.filesystem_fs_types_exclude,
            )
        except CollectError as exc:
            raise _ModuleFailed(_bounded(exc.reason), exc.message, out) from None
        except parsers.ParseError as exc:
            raise _ModuleFailed("parse_error", str(exc), out) from None
        return out


def _bounded(reason: str) -> str:
    """Reasons from the thread-pool runner (``timeout``, ``stuck``) mapped into ``REASONS``."""
    if reason in REASONS:
        return reason
    if reason == "timeout":
        return "command_timeout"
    return "stuck" if reason == "stuck" else "command_failed"


# ---------------------------------------------------------------------------------------------------
# families, from parsed output (pure: tested without SSH)
# ---------------------------------------------------------------------------------------------------
def proc_families(text: str, user_hz: float, netdev_device_exclude: str = DEVICE_EXCLUDE) -> list[Metric]:
    """``tail -n +1`` of PROC_FILES -> node_exporter's loadavg, meminfo, cpu, stat and netdev families."""
    sections = parsers.split_sections(text)
    missing = [f for f in PROC_FILES if f not in sections]
    if missing:
        raise parsers.ParseError(f"no output for {missing}")
    load1, load5, load15 = parsers.parse_loadavg(sections["/proc/loadavg"])
    out: list[Metric] = [
        GaugeMetricFamily("node_load1", "1m load average.", value=load1),
        GaugeMetricFamily("node_load5", "5m load average.", value=load5),
        GaugeMetricFamily("node_load15", "15m load average.", value=load15),
    ]
    for name, value in parsers.parse_meminfo(sections["/proc/meminfo"]).items():
        out.append(GaugeMetricFamily(f"node_memory_{name}", f"Memory information field {name}.", value=value))

    st = parsers.parse_stat(sections["/proc/stat"], user_hz)
    cpu = CounterMetricFamily(
        "node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"]
    )
    guest = CounterMetricFamily(
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
        labels=["cpu", "mode"],
    )
    for c, modes in st.cpu_seconds.items():
        for mode, seconds in modes.items():
            cpu.add_metric([c, mode], seconds)
    for c, modes in st.guest_seconds.items():
        for mode, seconds in modes.items():
            guest.add_metric([c, mode], seconds)
    out += [cpu, guest]
    scalars: list[tuple[str, str, float | None, bool]] = [
        ("node_boot_time_seconds", "Node boot time, in unixtime.", st.boot_time, False),
        ("node_context_switches_total", "Total number of context switches.", st.context_switches, True),
        ("node_forks_total", "Total number of forks.", st.forks, True),
        ("node_intr_total", "Total number of interrupts serviced.", st.interrupts, True),
        ("node_procs_running", "Number of processes in runnable state.", st.procs_running, False),
        (
            "node_procs_blocked",
            "Number of processes blocked waiting for I/O to complete.",
            st.procs_blocked,
            False,
        ),
    ]
    for name, doc, scalar, is_counter in scalars:
        if scalar is None:
            continue
        fam: Metric = (
            CounterMetricFamily(name, doc, value=scalar)
            if is_counter
            else GaugeMetricFamily(name, doc, value=scalar)
        )
        out.append(fam)

    net = parsers.parse_net_dev(sections["/proc/net/dev"])
    if netdev_device_exclude:
        skip = re.compile(netdev_device_exclude)
        net = {dev: v for dev, v in net.items() if not skip.match(dev)}
    for field in parsers.NET_DEV_FIELDS:
        fam_net = CounterMetricFamily(
            f"node_network_{field}_total", f"Network device statistic {field}.", labels=["device"]
        )
        for device in sorted(net):
            fam_net.add_metric([device], net[device][field])
        out.append(fam_net)
    return out


def filesystem_families(
    rows: list[parsers.DfRow],
    mount_points_exclude: str = MOUNT_POINTS_EXCLUDE,
    fs_types_exclude: str = FS_TYPES_EXCLUDE,
) -> list[Metric]:
    """``df -P`` rows -> node_exporter's filesystem families, with its (Debian) default exclusions."""
    skip_mount, skip_type = re.compile(mount_points_exclude), re.compile(fs_types_exclude)
    labels = ["device", "fstype", "mountpoint"]
    size = GaugeMetricFamily("node_filesystem_size_bytes", "Filesystem size in bytes.", labels=labels)
    free = GaugeMetricFamily("node_filesystem_free_bytes", "Filesystem free space in bytes.", labels=labels)
    avail = GaugeMetricFamily(
        "node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", labels=labels
    )
    seen: set[str] = set()
    for r in rows:
        if skip_mount.match(r.mountpoint) or (r.fstype and skip_type.match(r.fstype)):
            continue
        if r.mountpoint in seen:  # df lists a mount point once per mount; keep the first
            continue
        seen.add(r.mountpoint)
        lv = [r.device, r.fstype, r.mountpoint]
        size.add_metric(lv, r.size_bytes)
        free.add_metric(lv, r.free_bytes)
        avail.add_metric(lv, r.avail_bytes)
    return [size, free, avail]


def command_families(module: str, spec: CommandModule, text: str) -> list[Metric]:
    """A command module's output -> its metric families, as the module's metric specs say."""
    records: list[dict[str, Any]]
    if spec.parser == "number":
        number = parsers.parse_number(text)
        records = [{"": number}]
    elif spec.parser == "regex":
        records = list(parsers.parse_regex(text, spec.compiled()))
        if not records:
            raise parsers.ParseError(f"{module}: pattern matched nothing")
    elif spec.parser == "keyvalue":
        records = [dict(parsers.parse_keyvalue(text, spec.separator))]
    else:
        doc = parsers.parse_json(text)
        records = [{m.value: parsers.json_path(doc, m.value) for m in spec.metrics}]
    if len(records) > spec.max_series:
        raise parsers.ParseError(f"{module}: {len(records)} matches, more than max_series {spec.max_series}")
    out: list[Metric] = []
    for m in spec.metrics:
        names = sorted([*m.labels, *m.label_groups])
        doc_text = m.help or f"{m.name} from the ssh command module {module}."
        fam: GaugeMetricFamily | CounterMetricFamily = (
            CounterMetricFamily(m.name, doc_text, labels=names)
            if m.type == "counter"
            else GaugeMetricFamily(m.name, doc_text, labels=names)
        )
        seen: set[tuple[str, ...]] = set()
        for rec in records:
            if m.value not in rec:
                raise parsers.ParseError(f"{module}: no {m.value!r} in the output")
            value = parsers.to_number(rec[m.value], f"{module}.{m.name}")
            values = {
                **m.labels,
                **{label: str(rec.get(group, "")) for label, group in m.label_groups.items()},
            }
            lv = tuple(values[n] for n in names)
            if lv in seen:
                raise parsers.ParseError(
                    f"{module}: two matches give {m.name} the same labels {dict(zip(names, lv, strict=True))}"
                )
            seen.add(lv)
            fam.add_metric(list(lv), value)
        out.append(fam)
    return out
