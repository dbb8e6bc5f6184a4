"""A Debian root booted under a real systemd with systemd-nspawn, driven from the host with nsenter.

The host has no systemd as PID 1, so machinectl and systemd-run --machine cannot reach the container;
every command runs inside the container's namespaces (nsenter into its PID 1), where systemctl talks to
the container's systemd. The root is an overlay on the cached pristine root: the test's changes land in
a scratch upper directory and the cache stays clean. --private-network: the container has its own
loopback and nothing else.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "DEBIAN_FRONTEND=noninteractive",
    "SYSTEMD_COLORS=0",
    "SYSTEMD_PAGER=",
    "HOME=/root",
]


class Container:
    def __init__(self, pristine: Path, scratch: Path) -> None:
        self.scratch = scratch
        self.root = scratch / "merged"
        self.log_path = scratch / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0
        for d in ("upper", "work", "merged"):
            (scratch / d).mkdir(parents=True)
        opts = f"lowerdir={pristine},upperdir={scratch / 'upper'},workdir={scratch / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)], check=True)

    def boot(self, timeout: float = 90) -> float:
        """Boot and wait until systemd reports the system up; return the seconds it took."""
        t0 = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "--directory",
                    str(self.root),
                    "--register=no",
                    "--keep-unit",
                    "--boot",
                    "--private-network",
                    # nspawn's own filter refuses adjtimex() without CAP_SYS_TIME; a real host does not,
                    # and the unit's filter must be what decides (the host collector's timex part).
                    "--system-call-filter=adjtimex clock_adjtime",
                    "--console=read-only",
                    "--quiet",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        while not self.leader:
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError(f"systemd-nspawn did not start a container:\n{self.console()}")
            pids = children.read_text().split() if children.exists() else []
            for pid in pids:
                if os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid"):
                    self.leader = int(pid)
            time.sleep(0.05)
        while True:
            r = self.run("systemctl is-system-running --wait", check=False, timeout=timeout)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"container did not come up ({state!r}):\n{self.console()}")
            time.sleep(0.2)
        return time.monotonic() - t0

    def run(self, script: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run a shell script as root inside the container."""
        cmd = ["nsenter", "--target", str(self.leader), "--all", "env", "-i", *ENV, "/bin/sh", "-c", script]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(
                f"in the container: {script}\nexit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
            )
        return r

    def out(self, script: str, timeout: float = 180) -> str:
        return self.run(script, timeout=timeout).stdout.strip()

    def write(self, path: str, text: str) -> None:
        """Write a file inside the container, through its shell (so ownership and modes stay theirs)."""
        self.run(f"cat > {shlex.quote(path)} <<'GIAMSAT_EOF'\n{text}GIAMSAT_EOF")

    def read(self, path: str) -> str:
        return (self.root / path.lstrip("/")).read_text()

    def console(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGTERM to systemd-nspawn: the container's systemd powers off cleanly.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        subprocess.run(["umount", "--lazy", str(self.root)], check=False)
