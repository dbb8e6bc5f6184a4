"""A real OpenSSH sshd for tests: its own config, host key and authorized_keys in a temp dir, on loopback.

Runs as root (sshd's privilege separation needs it) in the foreground (``-D -e``), and is stopped by
PID: the listener and every per-connection child (each in its own session, so a process-group kill
would miss them), found through /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def keygen(path: Path, passphrase: str = "", kind: str = "ed25519") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "giamsat-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def fingerprint_of(pub: Path) -> str:
    """``SHA256:...`` as ``ssh-keygen -lf`` prints it (independent of paramiko)."""
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], check=True, capture_output=True, text=True).stdout
    return out.split()[1]


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc; no name matching)."""
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        by_parent.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for c in by_parent.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


class CommandWatch:
    """Records the PIDs of sshd's descendants running ``argv`` while active, to stop them by PID later.

    A command sshd started runs in its own session; when its SSH session ends it is orphaned (no longer
    a descendant of sshd), so it has to be seen while it still is.
    """

    def __init__(self, sshd_pid: int, argv: list[str]) -> None:
        self.sshd_pid = sshd_pid
        self.argv = argv
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.pids.update(p for p in children(self.sshd_pid) if cmdline(p) == self.argv)

    def __enter__(self) -> CommandWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for p in self.pids:
            if cmdline(p) == self.argv:  # still the same process, not a reused PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)


@dataclass
class Sshd:
    dir: Path
    port: int
    proc: subprocess.Popen[bytes]
    host_key: Path
    client_key: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the listener and every session process it started, by PID."""
        pids = [self.pid, *children(self.pid)]
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
        if self.proc.poll() is None:
            self.kill(signal.SIGKILL)
        # Session children of a killed listener (a command still running) go too.
        for p in children(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def start_sshd(
    base: Path, client_pub: Path, client_key: Path, listen: tuple[str, ...] = ("127.0.0.1", "::1")
) -> Sshd:
    base.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    host_key = base / "host_ed25519"
    if not host_key.exists():
        keygen(host_key)
    (base / "authorized_keys").write_text(client_pub.read_text())
    last_error = ""
    for _attempt in range(5):
        port = free_port()
        config = base / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    *(f"ListenAddress {a}" for a in listen),
                    f"HostKey {host_key}",
                    f"PidFile {base / 'sshd.pid'}",
                    f"AuthorizedKeysFile {base / 'authorized_keys'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication yes",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "MaxStartups 50",
                    "MaxSessions 20",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        log = open(base / "sshd.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        server = Sshd(base, port, proc, host_key, client_key)
        end = time.monotonic() + 10
        while time.monotonic() < end and proc.poll() is None:
            try:
                with socket.create_connection((listen[0], port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-2.0-"):
                        return server
            except OSError:
                time.sleep(0.05)
        last_error = server.log()[-2000:]
        server.stop()
    raise RuntimeError(f"sshd did not start: {last_error}")
