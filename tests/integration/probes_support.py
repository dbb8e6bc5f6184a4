"""Helpers for the probe tests: a netns lab (host - router - target), config-driven runs, sample lookup.

Lab addresses: 198.18.30.0/24 between this (host) namespace and the router, 198.18.31.0/24 between the
router and the target. Names carry the pid, and the block is held under a machine-wide lock
(``exclusive_addresses``), so parallel test sessions never collide.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.core import Metric

from agent.config import load_config
from agent.kernel.pipeline import Pipeline
from agent.kernel.results import JobResult
from agent.kernel.store import Store
from agent.scheduler import Runner

HOST_IP, ROUTER_A, ROUTER_B, TARGET_IP = "198.18.30.1", "198.18.30.2", "198.18.31.1", "198.18.31.2"
LAB_BLOCK = "198.18.30.0/23"  # held with tests.helpers.exclusive_addresses while the lab exists


def sh(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, input=input, timeout=30)


def in_ns(
    ns: str, *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check, input=input)


@dataclass
class Lab:
    router: str
    target: str
    host_if: str
    target_if: str

    def nft(self, ns: str, hook: str, *rules: str) -> None:
        """Load ``rules`` into a filter chain on ``hook`` (input, forward, output) in namespace ``ns``."""
        body = "\n".join(f"    {r}" for r in rules)
        ruleset = (
            f"table inet gs {{\n  chain filt {{\n    type filter hook {hook} priority 0;\n{body}\n  }}\n}}\n"
        )
        in_ns(ns, "nft", "-f", "-", input=ruleset)

    def flush_nft(self, ns: str) -> None:
        in_ns(ns, "nft", "flush", "ruleset")


def make_lab() -> Lab:
    pid = os.getpid()
    lab = Lab(router=f"gsp{pid}r", target=f"gsp{pid}t", host_if=f"gp{pid}h", target_if=f"gp{pid}t")
    r_a, r_b = f"gp{pid}ra", f"gp{pid}rb"
    try:
        sh("ip", "netns", "add", lab.router)
        sh("ip", "netns", "add", lab.target)
        sh("ip", "link", "add", lab.host_if, "type", "veth", "peer", "name", r_a)
        sh("ip", "link", "set", r_a, "netns", lab.router)
        sh("ip", "link", "add", r_b, "type", "veth", "peer", "name", lab.target_if)
        sh("ip", "link", "set", r_b, "netns", lab.router)
        sh("ip", "link", "set", lab.target_if, "netns", lab.target)
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", lab.host_if)
        sh("ip", "link", "set", lab.host_if, "up")
        sh("ip", "route", "add", "198.18.31.0/24", "via", ROUTER_A, "dev", lab.host_if)
        in_ns(lab.router, "ip", "addr", "add", f"{ROUTER_A}/24", "dev", r_a)
        in_ns(lab.router, "ip", "addr", "add", f"{ROUTER_B}/24", "dev", r_b)
        for ns, ifs in ((lab.router, (r_a, r_b, "lo")), (lab.target, (lab.target_if, "lo"))):
            for i in ifs:
                in_ns(ns, "ip", "link", "set", i, "up")
        in_ns(lab.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # ICMP errors are rate limited per destination (1/s, burst 6): off, so each echo gets its error
        in_ns(lab.router, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
        in_ns(lab.target, "ip", "addr", "add", f"{TARGET_IP}/24", "dev", lab.target_if)
        in_ns(lab.target, "ip", "route", "add", "default", "via", ROUTER_B)
        # let the target namespace use unprivileged ping sockets (the sysctl is per namespace)
        in_ns(lab.target, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    except Exception:
        destroy_lab(lab)
        raise
    return lab


def destroy_lab(lab: Lab) -> None:
    sh("ip", "link", "del", lab.host_if, check=False)
    sh("ip", "netns", "del", lab.router, check=False)
    sh("ip", "netns", "del", lab.target, check=False)


def write_config(
    tmp: Path, targets: dict[str, list[dict[str, Any]]], collectors: dict[str, Any] | None = None
) -> Path:
    cfg = {
        "agent": {"state_dir": str(tmp / "state"), "timeout": "30s", "interval": "60s"},
        "sites": [{"id": "tinh", "name": "Tỉnh", "level": "province"}],
        "collectors": {"host": {"enabled": False}, "textfile": {"enabled": False}, **(collectors or {})},
        "targets": {kind: [{"site": "tinh", **t} for t in ts] for kind, ts in targets.items()},
    }
    path = tmp / "giamsat.yml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


async def run_config(path: Path) -> dict[str, JobResult]:
    """Load a config, run every job once through the real runner, return results by target name."""
    runner = Runner(load_config(path), Pipeline(Store()))
    await runner.open()
    try:
        results = await runner.run_once()
    finally:
        await runner.close()
    return {r.target or "": r for r in results}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def value(families: Iterable[Metric], name: str, **labels: str) -> float | None:
    """The value of sample ``name`` with exactly ``labels`` (a subset match), or None."""
    for fam in families:
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def label_values(families: Iterable[Metric], name: str, label: str) -> list[str]:
    return [s.labels[label] for fam in families for s in fam.samples if s.name == name and label in s.labels]


def make_cert(tmp: Path, not_after: datetime.datetime, cn: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for ``cn`` and 127.0.0.1, valid until ``not_after``: (cert, key) PEM paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(cn), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
