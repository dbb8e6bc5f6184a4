"""Blocking SSH client for the collector: strict host keys, reused connections, hard wall-clock deadlines.

Everything here blocks and runs in the collector's bounded thread pool. paramiko's own timeouts do not
bound every wait: ``recv_exit_status`` ignores the channel timeout (paramiko/paramiko#1815), so does
``exec_command`` (#1787), and connection setup can hang (#515). So every call also arms a watchdog that
closes the channel at the deadline and the whole transport shortly after if that was not enough; the
calling thread then returns at once. stdout and stderr are drained together while waiting, because
waiting for the exit status first deadlocks once output exceeds the channel window (#448).

Failures are raised as ``SSHError`` whose ``reason`` is one of ``REASONS`` (a bounded label value).
"""

from __future__ import annotations

import contextlib
import heapq
import hmac
import itertools
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from collectors.ssh.errors import KnownHostsError, SSHError

_GRACE = 1.0  # seconds between closing the channel and closing the whole transport


@dataclass(frozen=True)
class SSHEndpoint:
    """Where and as whom to log in. Secrets never appear in ``repr``."""

    address: str
    port: int
    username: str
    pkey: paramiko.PKey | None = field(default=None, repr=False, compare=False)
    password: str | None = field(default=None, repr=False, compare=False)
    auth_name: str = ""

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH writes in known_hosts: ``host`` on port 22, ``[host]:port`` otherwise."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0  # TCP connect plus banner, key exchange and authentication
    keepalive: float = 30.0  # seconds between keepalive messages on idle connections (0: off)


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: bytes
    stderr: bytes
    duration: float


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint, comparable with ``ssh-keygen -lf``."""
    fp: str = key.fingerprint
    return fp


class _Alarm:
    def __init__(self, action: Callable[[], None], fired: threading.Event) -> None:
        self.action = action
        self.fired = fired
        self.cancelled = False
        self.lock = threading.Lock()

    def fire(self) -> None:
        with self.lock:
            if self.cancelled:
                return
            self.fired.set()
        with contextlib.suppress(Exception):  # best effort: the resource may already be gone
            self.action()

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True


class _AlarmClock:
    """One thread that fires due alarms, instead of a ``threading.Timer`` thread per remote call.

    Firing is rare (a deadline passed), and a firing action may itself block (closing a channel on a
    wedged connection), so each fired alarm runs in a short-lived thread of its own: the clock never
    waits on an action, and the transport-closing alarm behind a stuck channel close still fires.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, when: float, alarm: _Alarm) -> None:
        with self._cv:
            heapq.heappush(self._heap, (when, next(self._seq), alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="giamsat-ssh-deadlines", daemon=True)
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cv.wait(timeout)
                _when, _seq, alarm = heapq.heappop(self._heap)
            if not alarm.cancelled:
                threading.Thread(target=alarm.fire, name="giamsat-ssh-deadline", daemon=True).start()

    def __len__(self) -> int:
        with self._cv:
            return len(self._heap)


_CLOCK = _AlarmClock()


class _Watchdog:
    """Calls ``actions[i]`` at ``deadline + i * _GRACE`` unless cancelled first; ``fired`` tells whether."""

    def __init__(self, deadline: float, *actions: Callable[[], None]) -> None:
        self.fired = threading.Event()
        self._deadline = deadline
        self._alarms = [_Alarm(action, self.fired) for action in actions]

    def __enter__(self) -> _Watchdog:
        for i, alarm in enumerate(self._alarms):
            _CLOCK.add(self._deadline + i * _GRACE, alarm)
        return self

    def __exit__(self, *exc: object) -> None:
        for alarm in self._alarms:
            alarm.cancel()


class HostKeyStore:
    """The agent's known_hosts file (OpenSSH format, hashed entries allowed).

    Strict by default: a host that is not in the file is refused (``host_key_unknown``). With
    ``trust_on_first_use`` the key of a host the file does not mention at all is appended to the file
    and logged with its fingerprint; a host that is in the file with another key, even of another key
    type, is always a mismatch.

    The file is parsed here line by line, not with paramiko's ``HostKeys.load``: that raises on one
    line with bad base64 (``InvalidHostKey``, not an ``SSHException``), which would fail every target.
    A line that cannot be parsed is skipped, as OpenSSH skips it, with one warning per change of the
    file naming the line (never its key material). The parsed entries are kept until the file changes.
    """

    def __init__(self, path: Path, trust_on_first_use: bool, log: logging.Logger) -> None:
        self.path = path
        self.trust_on_first_use = trust_on_first_use
        self.log = log
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int, int] | None = None
        self._entries: list[tuple[str, paramiko.PKey]] = []

    def entries(self) -> list[tuple[str, paramiko.PKey]]:
        """(host name pattern, key) for every usable line; re-read when the file changed."""
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._signature, self._entries = None, []
                return []
            except OSError as exc:
                raise KnownHostsError(f"cannot read {self.path}: {exc}") from None
            signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if signature != self._signature:
                try:
                    data = self.path.read_bytes()
                except OSError as exc:
                    raise KnownHostsError(f"cannot read {self.path}: {exc}") from None
                self._entries = self._parse(data)
                self._signature = signature
            return list(self._entries)

    def _parse(self, data: bytes) -> list[tuple[str, paramiko.PKey]]:
        from paramiko.hostkeys import HostKeyEntry

        entries: list[tuple[str, paramiko.PKey]] = []
        bad: list[str] = []
        for lineno, raw in enumerate(data.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(b"#"):
                continue
            try:
                entry = HostKeyEntry.from_line(line.decode("ascii"), lineno)
            except Exception as exc:  # bad base64, unknown key encoding, not ASCII...
                bad.append(f"{lineno} ({type(exc).__name__})")
                continue
            if entry is None or entry.key is None:  # too few fields, or a key type paramiko lacks
                bad.append(f"{lineno} (not 'names keytype key')")
                continue
            entries.extend((name, entry.key) for name in entry.hostnames)
        if bad:
            self.log.warning(
                f"known_hosts {self.path}: skipped {len(bad)} line(s) that cannot be parsed: line "
                + ", line ".join(bad[:10])
                + (" ..." if len(bad) > 10 else ""),
                extra={"file": str(self.path), "bad_lines": len(bad)},
            )
        return entries

    def load_into(self, client: paramiko.SSHClient, host: str) -> None:
        """Give ``client`` the keys recorded for ``host`` (``name`` or ``[name]:port``), plain or hashed.

        Only that host's: paramiko's ``HostKeys.add`` scans every entry, so adding the whole file
        would cost each connection the square of its length. paramiko matches names exactly or by
        hash, as here. Into the client's in-memory keys only: paramiko writes them back only when told
        a file name (load_host_keys/save_host_keys), which the client never is.
        """
        keys = client.get_host_keys()
        for name, key in self.entries():
            if name == host or (
                name.startswith("|1|") and hmac.compare_digest(paramiko.HostKeys.hash_host(host, name), name)
            ):
                keys.add(host, key.get_name(), key)

    def record(self, name: str, key: paramiko.PKey) -> None:
        line = f"{name} {key.get_name()} {key.get_base64()}\n".encode("ascii")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One append of one line: concurrent agents or an operator's editor cannot interleave it.
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # an operator's last line without a newline: do not join it
                written = os.write(fd, line)
                if written != len(line):
                    # A full disk: the torn line is skipped when read back; the host is not trusted.
                    raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
            finally:
                os.close(fd)


class _HostKeyUnknown(paramiko.SSHException):
    pass


class _Policy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown hosts, or record them when trust-on-first-use is enabled. Never a silent accept."""

    def __init__(self, store: HostKeyStore, target: str) -> None:
        self.store = store
        self.target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        fp = fingerprint(key)
        if not self.store.trust_on_first_use:
            raise _HostKeyUnknown(
                f"{hostname} is not in {self.store.path} (offered {key.get_name()} {fp}); "
                f"add it with ssh-keyscan and check the fingerprint"
            )
        try:
            self.store.record(hostname, key)
        except OSError as exc:
            # Not recorded, not trusted: next time would be a first use again, without the protection.
            raise _HostKeyUnknown(
                f"{hostname} offered {key.get_name()} {fp} but it could not be recorded: {exc}"
            ) from None
        self.store.log.warning(
            f"ssh host key trusted on first use: {hostname} {key.get_name()} {fp}, recorded in "
            f"{self.store.path}",
            extra={"target": self.target, "host": hostname, "fingerprint": fp},
        )


class Connection:
    """One authenticated SSH connection, reused across collections while its transport is alive."""

    def __init__(self, client: paramiko.SSHClient, endpoint: SSHEndpoint) -> None:
        self.client = client
        self.endpoint = endpoint

    def is_active(self) -> bool:
        t = self.client.get_transport()
        return t is not None and t.is_active()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # best effort: a dead transport may raise on close
            self.client.close()

    def run(self, argv: Sequence[str], timeout: float, max_output: int) -> CommandResult:
        """Run ``argv`` (each argument shell-quoted; SSH sends one string) within ``timeout`` seconds.

        stdout and stderr are read together as they arrive, so a command that fills one pipe while we
        wait on the other cannot deadlock; the result is returned whatever the exit status.
        """
        start = time.monotonic()
        deadline = start + timeout
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise SSHError("disconnected", "connection is closed")
        command = shlex.join(argv)
        chan: paramiko.Channel | None = None

        def close_chan() -> None:
            if chan is not None:
                chan.close()

        with _Watchdog(deadline, close_chan, transport.close) as dog:
            try:
                try:
                    chan = transport.open_session(timeout=timeout)
                except Exception as exc:
                    raise self._failure(transport, dog, "cannot open a session channel", exc) from None
                try:
                    chan.exec_command(command)
                    chan.shutdown_write()  # the command gets EOF on stdin instead of waiting for input
                    out, err = self._drain(chan, deadline, dog, max_output)
                except Exception as exc:
                    # exec_command re-raises whatever the transport thread died of, not only
                    # SSHException: every failure is the target's, reported with a bounded reason.
                    raise self._failure(transport, dog, "command aborted", exc) from None
            finally:
                if chan is not None:
                    with contextlib.suppress(Exception):
                        chan.close()
        assert chan is not None
        # An exit status means the output is complete (it follows all data on the channel), even if
        # the watchdog fired a moment later.
        if _has_status(chan):
            status = chan.exit_status
        elif dog.fired.is_set():
            raise SSHError("command_timeout", f"{command[:100]}: no exit within {timeout:g}s")
        elif not transport.is_active():
            raise SSHError("disconnected", f"{command[:100]}: connection lost before the command exited")
        else:
            status = -1  # the server closed the channel without an exit status (killed by a signal)
        return CommandResult(status, bytes(out), bytes(err), time.monotonic() - start)

    @staticmethod
    def _failure(transport: paramiko.Transport, dog: _Watchdog, what: str, exc: BaseException) -> SSHError:
        if dog.fired.is_set():
            return SSHError("command_timeout", f"{what}: deadline passed")
        if not transport.is_active():
            return SSHError("disconnected", f"{what}: connection lost ({exc})")
        return SSHError("command_failed", f"{what}: {exc}")

    @staticmethod
    def _drain(
        chan: paramiko.Channel, deadline: float, dog: _Watchdog, max_output: int
    ) -> tuple[bytearray, bytearray]:
        out, err = bytearray(), bytearray()
        wakeup = _Wakeup()
        chan.in_buffer.set_event(wakeup)
        chan.in_stderr_buffer.set_event(wakeup)
        while True:
            wakeup.reset()  # before looking: data fed after this point wakes the wait below
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if len(out) + len(err) > max_output:
                raise paramiko.SSHException(f"output exceeds {max_output} bytes")
            if chan.closed or dog.fired.is_set():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break  # the watchdog fires now; report a timeout
            if chan.eof_received:
                if _has_status(chan):
                    break
                # All output is in; the pipe stays readable after EOF, so wait on the status instead.
                chan.status_event.wait(min(remaining, 1.0))
                continue
            wakeup.wait(min(remaining, 1.0))
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        if time.monotonic() >= deadline and not _has_status(chan):
            dog.fired.set()
        return out, err


class _Wakeup(threading.Event):
    """Set by paramiko's transport thread when stdout or stderr data (or EOF) arrives.

    Replaces ``Channel.fileno()``: its OS pipe is closed by ``Channel.close()`` without the buffer lock
    under which the transport thread signals it, so a close racing incoming data (a command cut short
    at ``max_output_bytes``) wrote to a closed or reused descriptor and killed the transport thread
    (paramiko issues 1157, 1700, 2271). An event has no descriptor to lose. The buffers' own
    ``clear()`` on a read is ignored: one buffer draining must not hide data waiting in the other.
    """

    def clear(self) -> None:
        pass

    def reset(self) -> None:
        super().clear()


def _has_status(chan: paramiko.Channel) -> bool:
    """Whether the server sent an exit status. ``exit_status_ready()`` is also true once the channel is
    closed (then ``exit_status`` stays -1, which a real 32-bit unsigned status can never be)."""
    return chan.status_event.is_set() and chan.exit_status != -1


#: one resolved address: (socket family, socket address), as ``getaddrinfo`` gives them
Address = tuple[int, tuple[Any, ...]]


def _tcp_connect(
    endpoint: SSHEndpoint, addresses: Sequence[Address], per_address: float, deadline: float
) -> socket.socket:
    """Connect to the first address that answers, as OpenSSH does: each address in turn gets
    ``per_address`` seconds (ConnectTimeout), cut to what is left before ``deadline``.

    Not ``socket.create_connection``: it gives its whole timeout to every address, so a name whose
    first address black-holes SYNs never reaches the second before the deadline."""
    where = f"{endpoint.address}:{endpoint.port}"
    failure: SSHError | None = None
    for family, sockaddr in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        host = f"[{sockaddr[0]}]" if ":" in sockaddr[0] else sockaddr[0]
        shown = f"{host}:{sockaddr[1]}" if sockaddr[0] != endpoint.address else where
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # no IPv6 on this host, out of descriptors
            failure = SSHError("connect_failed", f"{shown}: {exc}")
            continue
        try:
            sock.settimeout(min(per_address, left))
            sock.connect(sockaddr)
        except TimeoutError:
            sock.close()
            failure = SSHError("connect_timeout", f"TCP connect to {shown} timed out")
        except ConnectionRefusedError:
            sock.close()
            failure = SSHError("connection_refused", f"{shown} refused the connection")
        except OSError as exc:
            sock.close()
            failure = SSHError("connect_failed", f"{shown}: {exc}")
        except BaseException:
            sock.close()
            raise
        else:
            return sock
    if failure is None:
        if not addresses:
            raise SSHError("connect_failed", f"{endpoint.address}: no address to connect to")
        raise SSHError("connect_timeout", f"{where}: no time left to connect")
    if len(addresses) > 1:
        failure = SSHError(failure.reason, f"{failure.message} (tried {len(addresses)} addresses)")
    raise failure


def connect(
    endpoint: SSHEndpoint,
    addresses: Sequence[Address],
    store: HostKeyStore,
    timeouts: Timeouts,
    deadline: float,
    log: logging.Logger,
    target: str,
) -> Connection:
    """Open and authenticate a connection to the first of ``addresses`` that answers, checking the
    host key, by ``deadline`` (monotonic). Each address gets ``timeouts.connect`` for its TCP connect,
    and the SSH handshake ``timeouts.connect`` from the moment TCP connected (both cut at
    ``deadline``). Every failure is an ``SSHError``; nothing is left open when one is raised."""
    sock = _tcp_connect(endpoint, addresses, timeouts.connect, deadline)
    client = paramiko.SSHClient()

    def abort() -> None:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            sock.close()

    handshake_end = min(deadline, time.monotonic() + timeouts.connect)
    # paramiko's own timeouts are set past our deadline: the watchdog decides, so a hang always
    # reads as connect_timeout however far the handshake got.
    late = max(handshake_end - time.monotonic(), 0.1) + 2 * _GRACE
    with _Watchdog(handshake_end, abort) as dog:
        try:
            store.load_into(client, endpoint.known_hosts_name)
            client.set_missing_host_key_policy(_Policy(store, target))
            client.connect(
                endpoint.address,
                port=endpoint.port,
                username=endpoint.username,
                pkey=endpoint.pkey,
                password=endpoint.password,
                sock=sock,
                timeout=late,
                banner_timeout=late,
                auth_timeout=late,
                channel_timeout=late,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            abort()
            got, want = fingerprint(exc.key), fingerprint(exc.expected_key)
            log.error(
                f"ssh host key MISMATCH for {endpoint.known_hosts_name}: offered {exc.key.get_name()} {got}, "
                f"known_hosts has {exc.expected_key.get_name()} {want}; refusing to log in",
                extra={"target": target, "offered": got, "expected": want},
            )
            raise SSHError("host_key_mismatch", f"offered {got}, expected {want}") from None
        except _HostKeyUnknown as exc:
            abort()
            raise SSHError("host_key_unknown", str(exc)) from None
        except KnownHostsError:
            abort()
            raise
        except paramiko.AuthenticationException as exc:
            abort()
            if dog.fired.is_set():
                raise SSHError("connect_timeout", "authentication did not finish in time") from None
            raise SSHError("auth_failed", f"{endpoint.username}@{endpoint.address}: {exc}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            abort()
            if dog.fired.is_set():
                raise SSHError("connect_timeout", "SSH session not established in time") from None
            reason = "protocol_error" if isinstance(exc, paramiko.SSHException) else "disconnected"
            raise SSHError(reason, f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:
            # Whatever else paramiko's transport thread died of and re-raised here (a KEXINIT that is
            # not UTF-8 gives UnicodeDecodeError): the peer's fault, reported as data, never a crash.
            abort()
            if dog.fired.is_set():
                raise SSHError("connect_timeout", "SSH session not established in time") from None
            raise SSHError("protocol_error", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        except BaseException:
            abort()
            raise
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        abort()
        raise SSHError("disconnected", "connection closed right after login")
    if timeouts.keepalive > 0:
        transport.set_keepalive(max(1, int(timeouts.keepalive)))
    return Connection(client, endpoint)


class ConnectionPool:
    """One live connection per target, reused while alive; dead ones are replaced on the next use.

    ``close_all`` closes the pool for good: a connect still running in an abandoned thread (the job
    was cancelled by a reload or shutdown) closes its new connection instead of storing it, so no
    transport thread, socket or sshd session outlives the collector.
    """

    def __init__(self, store: HostKeyStore, timeouts: Timeouts, log: logging.Logger) -> None:
        self.store = store
        self.timeouts = timeouts
        self.log = log
        self._conns: dict[str, Connection] = {}
        self._lock = threading.Lock()
        self._closed = False

    def reusable(self, key: str, endpoint: SSHEndpoint) -> bool:
        """Whether ``get`` would reuse the open connection (non-blocking; it may die meanwhile)."""
        with self._lock:
            conn = self._conns.get(key)
        return conn is not None and conn.endpoint == endpoint and conn.is_active()

    def get(
        self, key: str, endpoint: SSHEndpoint, addresses: Sequence[Address], deadline: float
    ) -> tuple[Connection, bool]:
        """(connection, reused) for ``key``: the open one when alive and for the same endpoint, else a
        new one to the first of ``addresses`` that answers."""
        with self._lock:
            if self._closed:
                raise SSHError("disconnected", "collector closed")
            old = self._conns.pop(key, None)
        if old is not None:
            if old.endpoint == endpoint and old.is_active():
                with self._lock:
                    if not self._closed:
                        self._conns[key] = old
                        return old, True
            old.close()
        conn = connect(endpoint, addresses, self.store, self.timeouts, deadline, self.log, key)
        with self._lock:
            closed = self._closed
            stale = None if closed else self._conns.pop(key, None)
            if not closed:
                self._conns[key] = conn
        if stale is not None:
            stale.close()
        if closed:
            conn.close()
            raise SSHError("disconnected", "collector closed")
        return conn, False

    def drop(self, key: str) -> None:
        with self._lock:
            conn = self._conns.pop(key, None)
        if conn is not None:
            conn.close()

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            c.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._conns)


def load_private_key(path: Path, passphrase: str | None) -> paramiko.PKey:
    """Read a private key file (OpenSSH or PEM; ed25519, ECDSA or RSA)."""
    # cryptography wants the passphrase as bytes, whatever paramiko's annotation says.
    secret: Any = passphrase.encode() if passphrase is not None else None
    key: Any = paramiko.PKey.from_path(str(path), secret)
    assert isinstance(key, paramiko.PKey)
    return key
