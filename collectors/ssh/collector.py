"""SSH collector: metrics from hosts where no agent can be installed, read over SSH with fixed commands.

Modules per target: ``linux`` (the host collector's node_exporter parts, fed from the remote /proc and
/sys read in one command, see ``collectors.ssh.linux``) and user-defined ``command`` modules (argv list, a
parser: number, regex with named groups, key=value or JSON, and metric specs). Credentials are named
under ``auths`` apart from targets, as snmp_exporter keeps auths apart from modules.

A target that cannot be reached or logged into is data (``ssh_up 0`` with a bounded reason), never an
exception: only a broken collector (a key file that cannot be read, an unknown auth name) raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.kernel.collector import (
    Collector,
    CollectorContext,
    CollectorSettings,
    Deadline,
    TargetConfig,
)
from agent.kernel.errors import CollectError
from agent.kernel.model import secret_value
from agent.kernel.resolver import Address, ResolveError, Resolver
from collectors.host.options import Options
from collectors.ssh import linux, parsers
from collectors.ssh.errors import REASONS, KnownHostsError, SSHError
from collectors.ssh.metrics import command_families, filesystem_families
from collectors.ssh.settings import BUILTIN_MODULES, SSHSettings, SSHTarget

if TYPE_CHECKING:  # paramiko is imported when the collector starts, not when the config is read
    import paramiko

    from collectors.ssh.client import CommandResult, Connection, ConnectionPool, SSHEndpoint

# Threads beyond max_concurrency: for closing connections and loading keys while targets are busy.
_SPARE_THREADS = 2
# Seconds the thread-pool deadline waits past the in-thread deadline, so the thread's own watchdog
# (channel close, then transport close one second later) always decides first.
_RUNNER_SLACK = 3.0


class _ModuleFailed(Exception):
    def __init__(self, reason: str, message: str, partial: list[Metric]) -> None:
        super().__init__(message)
        self.reason = reason
        self.partial = partial


class SSHCollector(Collector):
    kind = "ssh"
    settings_model = SSHSettings
    target_model = SSHTarget
    blocking_threads = 8 + _SPARE_THREADS  # replaced from max_concurrency in __init__
    link_metric = "ssh_up"
    link_reason_metric = "ssh_failure_reason"
    doctor_fixes = (
        ("host_key_unknown", "record the host's key: ssh-keyscan -p PORT HOST >> /var/lib/giamsat/ssh_known_hosts "
         "(after checking its fingerprint), or set trust_on_first_use for the first connection"),
        ("host_key_mismatch", "the host's key changed: verify with its administrator, then replace its line in "
         "the known_hosts file"),
    )  # fmt: skip

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
        self._resolver = Resolver(ctx.log)

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

    def _endpoint(self, target: SSHTarget) -> SSHEndpoint:
        problems = self.check_targets(self.cfg, [target])
        if problems:
            raise CollectError("config", f"target {target.name}: {problems[0][2]}")
        auth = self.cfg.auths[target.auth]
        if target.auth in self._key_errors:
            raise CollectError("key_error", self._key_errors[target.auth])
        from collectors.ssh.client import SSHEndpoint

        return SSHEndpoint(
            address=target.address,
            port=target.port,
            username=auth.username,
            pkey=self._keys.get(target.auth),
            password=secret_value(auth.password),
            auth_name=target.auth,
        )

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, SSHTarget)
        start = time.monotonic()
        endpoint = self._endpoint(target)
        # Finish a little before the job's deadline so our own result, not the scheduler's timeout, is
        # stored.
        job_end = deadline.at
        until = max(job_end - min(0.5, (job_end - start) * 0.1), start + 0.1)
        # Bounded concurrency: at most max_concurrency targets talk SSH at once. A target that cannot get
        # a slot while enough time is left is the agent's overload, not the target's fault: a collector
        # error (giamsat_collector_success 0, reason busy), never a misleading connect_timeout.
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.cfg.max_concurrency)
        needed = min(self.cfg.connect_timeout, (until - start) / 2)
        try:
            await asyncio.wait_for(self._slots.acquire(), max(0.001, until - time.monotonic() - needed))
        except TimeoutError:
            raise CollectError(
                "busy", f"{target.name}: no free slot (max_concurrency {self.cfg.max_concurrency}) in time"
            ) from None
        try:
            return await self._collect(target, endpoint, start, until)
        finally:
            self._slots.release()

    async def _collect(
        self, target: SSHTarget, endpoint: SSHEndpoint, start: float, deadline: float
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

    async def _addresses(self, key: str, endpoint: SSHEndpoint, deadline: float) -> list[Address]:
        """Where to connect: the name's addresses, resolved here (with a deadline) rather than in the
        SSH thread pool, where a hung resolver pinned threads until healthy targets starved."""
        if self.pool.reusable(key, endpoint):
            cached = self._resolver.cached(endpoint.address, endpoint.port)
            if cached is not None:
                return cached  # the open connection is reused; no lookup needed
        budget = min(self.cfg.connect_timeout, deadline - time.monotonic())
        if budget <= 0:
            raise SSHError("connect_timeout", "no time left to resolve the address")
        try:
            return await self._resolver.resolve(endpoint.address, endpoint.port, budget)
        except ResolveError as exc:
            raise SSHError("dns_failed", exc.message) from None

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
        """The host collector's parts over a snapshot of the remote /proc and /sys."""
        opts = Options(
            filesystem_mount_points_exclude=self.cfg.filesystem_mount_points_exclude,
            filesystem_fs_types_exclude=self.cfg.filesystem_fs_types_exclude,
            netdev_device_exclude=self.cfg.netdev_device_exclude,
            user_hz=float(self.cfg.user_hz),
        )
        try:
            dump = await self._exec(conn, key, linux.files_command(), deadline)
            snap = linux.parse_snapshot(dump.stdout)
            out = linux.file_families(snap, opts)
        except CollectError as exc:
            raise _ModuleFailed(_bounded(exc.reason), exc.message, []) from None
        if "/proc/stat" not in snap.files:
            raise _ModuleFailed("parse_error", "no /proc/stat in the answer: is this a Linux host?", out)
        # statvfs apart: a hung NFS mount may stall it, and then the /proc figures are still reported.
        mounts = linux.mount_points(snap, opts)
        if not mounts:
            return out
        try:
            st = await self._exec(conn, key, linux.stat_command(mounts), deadline)
            stats = linux.parse_stats(st.stdout.decode("utf-8", "replace"), mounts)
            if any(v is not None for v in stats.values()):
                return out + linux.filesystem_families(snap, opts, stats)
            # no usable `stat -f` (busybox): df's size, free and available space
            df = await self._exec(conn, key, self.cfg.df_command, deadline)
            return out + filesystem_families(
                parsers.parse_df(df.stdout.decode("utf-8", "replace")),
                self.cfg.filesystem_mount_points_exclude,
                self.cfg.filesystem_fs_types_exclude,
            )
        except CollectError as exc:
            raise _ModuleFailed(_bounded(exc.reason), exc.message, out) from None
        except parsers.ParseError as exc:
            raise _ModuleFailed("parse_error", str(exc), out) from None


def _bounded(reason: str) -> str:
    """Reasons from the thread-pool runner (``timeout``, ``stuck``) mapped into ``REASONS``."""
    if reason in REASONS:
        return reason
    if reason == "timeout":
        return "command_timeout"
    return "stuck" if reason == "stuck" else "command_failed"
