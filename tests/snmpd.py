"""A real net-snmp ``snmpd`` for tests and benchmarks: private config, private state, stopped by PID.

Every instance gets its own temp dir holding ``snmpd.conf`` and the persistent dir (``persistentDir``
and ``SNMP_PERSISTENT_DIR``), and runs with ``-C`` so it never reads /etc/snmp or touches
/var/lib/snmp. ``netns`` runs it inside a network namespace the caller created.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

COMMUNITY = "gs-test-community"
AUTH_PASS = "gs-auth-pass-1"
PRIV_PASS = "gs-priv-pass-2"


@dataclass(frozen=True)
class V3User:
    name: str
    auth: str | None  # net-snmp name: MD5 SHA SHA-224 SHA-256 SHA-384 SHA-512
    priv: str | None  # net-snmp name: DES AES AES192 AES256 AES192C AES256C

    @property
    def level(self) -> str:
        return "priv" if self.priv else ("auth" if self.auth else "noauth")

    def create_line(self) -> str:
        parts = ["createUser", self.name]
        if self.auth:
            parts += [self.auth, AUTH_PASS]
        if self.priv:
            parts += [self.priv, PRIV_PASS]
        return " ".join(parts)


V3_USERS = [
    V3User("gs_sha256_aes", "SHA-256", "AES"),
    V3User("gs_sha512_aes256", "SHA-512", "AES256"),
    V3User("gs_sha384_aes192", "SHA-384", "AES192"),
    V3User("gs_sha224_aes", "SHA-224", "AES"),
    V3User("gs_sha_aes256b", "SHA", "AES256"),  # key extension: Blumenthal (net-snmp "AES256")
    V3User("gs_sha_aes256r", "SHA", "AES256C"),  # key extension: Reeder/Cisco (net-snmp "AES256C")
    V3User("gs_md5_aes192r", "MD5", "AES192C"),
    V3User("gs_md5_des", "MD5", "DES"),
    V3User("gs_sha_auth", "SHA", None),
    V3User("gs_noauth", None, None),
]


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Snmpd:
    host: str = "127.0.0.1"
    port: int = 0
    netns: str | None = None
    users: list[V3User] = field(default_factory=lambda: list(V3_USERS))
    sys_name: str = "gs-test-agent"
    extra_lines: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    tmp: Path | None = None

    def start(self) -> Snmpd:
        self.tmp = Path(tempfile.mkdtemp(prefix="gs-snmpd-"))
        if not self.port:
            self.port = 161 if self.netns else free_udp_port(self.host)
        persist = self.tmp / "persist"
        persist.mkdir()
        lines = [
            f"agentaddress udp:{self.host}:{self.port}",
            f"[snmp] persistentDir {persist}",
            f"rocommunity {COMMUNITY} default",
            f"sysName {self.sys_name}",
            "sysLocation giamsat test rack",
            "sysContact noc@example.invalid",
            "sysServices 72",
            "disk / 10000",
        ]
        for u in self.users:
            lines += [u.create_line(), f"rouser {u.name} {u.level}"]
        lines += self.extra_lines
        conf = self.tmp / "snmpd.conf"
        conf.write_text("\n".join(lines) + "\n")
        log = self.tmp / "snmpd.log"
        cmd = ["snmpd", "-f", "-Lf", str(log), "-C", "-c", str(conf), "-p", str(self.tmp / "snmpd.pid")]
        # Only the MIB-II, UCD and host-resources parts the tests read; keeps start-up fast.
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(persist), SNMPCONFPATH=str(self.tmp), MIBS="")
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                text = (self.tmp / "snmpd.log").read_text() if self.tmp else ""
                raise RuntimeError(f"snmpd exited with {self.proc.returncode}: {text[-2000:]}")
            out = self.cli("snmpget", "1.3.6.1.2.1.1.5.0", check=False, timeout=1)
            if self.sys_name in out:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("snmpd did not answer within 15 s")

    def cli(
        self, tool: str, *oids: str, check: bool = True, timeout: float = 5, user: V3User | None = None
    ) -> str:
        """Run ``snmpget``/``snmpwalk``/``snmpbulkwalk`` against this agent; numeric output."""
        if user is None:
            auth = ["-v2c", "-c", COMMUNITY]
        else:
            auth = [
                "-v3",
                "-u",
                user.name,
                "-l",
                {"priv": "authPriv", "auth": "authNoPriv"}.get(user.level, "noAuthNoPriv"),
            ]
            if user.auth:
                auth += ["-a", user.auth, "-A", AUTH_PASS]
            if user.priv:
                auth += ["-x", user.priv, "-X", PRIV_PASS]
        cmd = [
            tool,
            *auth,
            "-On",
            "-Oe",
            "-Ot",
            "-OU",
            "-r",
            "1",
            "-t",
            str(timeout),
            f"{self.address}",
            *oids,
        ]
        env = dict(os.environ, MIBS="", SNMPCONFPATH="/nonexistent")
        if self.tmp is not None:  # the tools keep state too; never in /var/lib/snmp
            env["SNMP_PERSISTENT_DIR"] = str(self.tmp / "persist-tools")
        res = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout * 4 + 30, check=False
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"{tool} failed: {res.stderr.strip()}")
        return res.stdout

    @property
    def address(self) -> str:
        return f"udp:{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def parse_numeric(output: str) -> dict[str, str]:
    """``.1.3.6.1.2.1.2.2.1.2.1 = STRING: "lo"`` lines -> {"1.3.6.1.2.1.2.2.1.2.1": 'STRING: "lo"'}."""
    out = {}
    for line in output.splitlines():
        oid, sep, rest = line.partition(" = ")
        if sep:
            out[oid.lstrip(".")] = rest.strip()
    return out
