"""What every probe shares: address resolution and the blackbox_exporter-named result metrics.

A probe reports a down target as data: ``probe_success 0`` plus ``probe_failure_reason{reason}`` with a
value from the probe's bounded reason set. Only a broken collector raises.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import errno
import functools
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from pydantic import Field

from agent.kernel.collector import (
    Collector,
    CollectorContext,
    CollectorSettings,
    Deadline,
    Reply,
    RouteContext,
    RouteRequest,
    TargetConfig,
)
from agent.kernel.families import FamilyShape, ShapedFamily
from agent.kernel.model import Model, certificate_bundle
from agent.kernel.resolver import ResolveError as KernelResolveError
from agent.kernel.resolver import Resolver

IpProtocol = Literal["auto", "ip4", "ip6"]


#: Failure reasons every connection-based probe (TCP, HTTP) can report; each adds its own.
CONNECT_REASONS = (
    "resolve",
    "timeout",
    "connection_refused",
    "net_unreachable",
    "host_unreachable",
    "connect_error",
    "connection_closed",
    "tls_handshake",
    "tls_verify",
)


class ProbeTarget(TargetConfig):
    """Fields every probe target has besides name/site: the preferred IP family."""

    ip_protocol: IpProtocol = Field(
        default="auto", description="ip4 or ip6 to force a family; auto takes the resolver's first answer"
    )
    ip_protocol_fallback: bool = Field(
        default=False,
        description="with ip4/ip6: use the other family when the name has no address of this one "
        "(blackbox_exporter's ip_protocol_fallback)",
    )


def check_regexes(patterns: list[str]) -> list[str]:
    """Compile each pattern, turning ``re.error`` into a ValueError pydantic reports with its key path."""
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {p!r}: {exc}") from None
    return patterns


class ResolveError(Exception):
    """The target's host name did not resolve (to the requested family)."""


_FAMILIES = {"auto": socket.AF_UNSPEC, "ip4": socket.AF_INET, "ip6": socket.AF_INET6}


async def resolve(
    resolver: Resolver, host: str, ip_protocol: IpProtocol, timeout: float, fallback: bool = False
) -> tuple[str, int, float]:
    """Host name or IP literal -> (ip text, address family, seconds spent resolving).

    With ``fallback`` an ip4/ip6 preference is only a preference: an address of the other family is
    taken when there is none of this one (blackbox_exporter's ``ip_protocol_fallback``).
    """
    start = time.perf_counter()
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        if not fallback and (
            (ip_protocol == "ip4" and ip.version == 6) or (ip_protocol == "ip6" and ip.version == 4)
        ):
            raise ResolveError(f"{host} is not an {ip_protocol} address")
        return str(ip), family, time.perf_counter() - start
    try:
        addrs = await resolver.resolve(
            host, None, timeout, family=socket.AF_UNSPEC if fallback else _FAMILIES[ip_protocol]
        )
    except KernelResolveError as exc:
        raise ResolveError(exc.message) from None
    found_family, sockaddr = addrs[0]
    if fallback and ip_protocol != "auto":
        want = _FAMILIES[ip_protocol]
        found_family, sockaddr = next((a for a in addrs if a[0] == want), addrs[0])
    return str(sockaddr[0]).split("%", 1)[0], int(found_family), time.perf_counter() - start


def ip_hash(ip: str) -> float:
    """FNV-1a (32 bit) of the address's bytes (4 for IPv4, 16 for IPv6), as blackbox_exporter hashes it
    for ``probe_ip_addr_hash``: a change of value means the name now resolves elsewhere."""
    h = 0x811C9DC5
    for b in ipaddress.ip_address(ip).packed:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return float(h)


#: The kind of the probe being run; every sample carries it as the ``probe`` label.
current_probe: contextvars.ContextVar[str] = contextvars.ContextVar("current_probe", default="")


def family(name: str, doc: str, typ: str = "gauge") -> Metric:
    """An empty metric family, without client_python's per-call name validation.

    Probe families are built for every target on every run; ``Metric.__init__``'s regex checks showed up
    in profiles (bench/icmp.py). Our names are constants, checked by promtool in the tests.
    """
    fam = Metric.__new__(Metric)
    fam.name, fam.documentation, fam.unit, fam.type, fam.samples = name, doc, "", typ, []
    return fam


_LABELS: dict[str, dict[str, str]] = {}


def probe_labels() -> dict[str, str]:
    """``{"probe": kind}`` for the running probe, shared between samples (label dicts are never mutated)."""
    kind = current_probe.get()
    labels = _LABELS.get(kind)
    if labels is None:
        labels = _LABELS[kind] = {"probe": kind}
    return labels


class ProbeGauge(ShapedFamily):
    """A gauge family with one sample labelled ``probe`` only: most of what a probe reports. Shaped
    (``agent.kernel.families``): its name, help and probe kind are its shape, so the exporter writes
    only its value for every target and round after the first."""

    __slots__ = ("documentation", "labels", "name", "shape", "value")
    type = "gauge"
    unit = ""

    def __init__(self, name: str, doc: str, value: float) -> None:  # no Metric.__init__: see ``family``
        labels = probe_labels()
        key = (name, doc, labels["probe"])
        shape = _GAUGE_SHAPES.get(key)
        if shape is None:
            if len(_GAUGE_SHAPES) >= 4096:  # names are constants; bounded all the same
                _GAUGE_SHAPES.clear()
            shape = _GAUGE_SHAPES[key] = FamilyShape(f"{labels['probe']} {name}")
        self.name, self.documentation, self.labels, self.shape = name, doc, labels, shape
        self.value = float(value)

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        return [Sample(self.name, self.labels, self.value)]

    def sample_values(self) -> tuple[float]:
        return (self.value,)


_GAUGE_SHAPES: dict[tuple[str, str, str], FamilyShape] = {}


def gauge(name: str, doc: str, value: float | None = None) -> Metric:
    """A gauge family, with its one sample (labelled ``probe`` only) when ``value`` is given; without
    one, an empty family to ``add`` samples with more labels to."""
    if value is not None:
        return ProbeGauge(name, doc, value)
    return family(name, doc)


def add(fam: Metric, value: float, **labels: str) -> None:
    """Add one sample with ``labels`` (plus ``probe``) to a gauge family."""
    labels["probe"] = current_probe.get()
    fam.samples.append(Sample(fam.name, labels, float(value)))


def resolve_failed(duration: float, lookup: float) -> list[Metric]:
    """The result of a probe whose target did not resolve, with blackbox_exporter's series for it: the
    lookup time, and an IP protocol and address hash of 0."""
    return result_metrics(False, duration, "resolve", lookup=lookup, family=0, ip="")


def result_metrics(
    success: bool,
    duration: float,
    reason: str = "",
    *,
    lookup: float | None = None,
    family: int | None = None,
    ip: str | None = None,
) -> list[Metric]:
    """The metrics every probe ends with, named as blackbox_exporter names them (plus the reason)."""
    out: list[Metric] = [
        gauge("probe_success", "Displays whether or not the probe was a success", 1.0 if success else 0.0),
        gauge("probe_duration_seconds", "Returns how long the probe took to complete in seconds", duration),
    ]
    if lookup is not None:
        out.append(
            gauge(
                "probe_dns_lookup_time_seconds",
                "Returns the time taken for probe dns lookup in seconds",
                lookup,
            )
        )
    if family is not None:
        out.append(
            gauge(
                "probe_ip_protocol",
                "Specifies whether probe ip protocol is IP4 or IP6",
                {int(socket.AF_INET6): 6.0, int(socket.AF_INET): 4.0}.get(family, 0.0),  # 0: not resolved
            )
        )
    if ip is not None:
        out.append(
            gauge(
                "probe_ip_addr_hash",
                "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
                ip_hash(ip) if ip else 0.0,  # "": not resolved
            )
        )
    if not success and reason:
        fam = gauge(
            "probe_failure_reason",
            "Why the probe failed, from a bounded set of reasons (1 while failing; absent on success)",
        )
        add(fam, 1.0, reason=reason)
        out.append(fam)
    return out


_MARGIN = 0.2  # finish this much before the scheduler's deadline so a dead target is data, not a timeout


def probe_budget(deadline: Deadline) -> float:
    """Seconds this probe may take: what is left of the job's deadline, less a margin.

    The scheduler cancels a job at its deadline and records a *collector* failure; a probe must give up
    a little earlier and report ``probe_success 0`` instead.
    """
    return deadline.left(margin=min(_MARGIN, deadline.timeout * 0.1))


class ProbeCollector(Collector):
    """Base of the probe collectors: ``probe()`` does the work, ``collect()`` adds the ``probe`` label.

    A probe's result says whether its link works with blackbox_exporter's ``probe_success``."""

    blocking_threads = 1
    link_metric = "probe_success"
    link_reason_metric = "probe_failure_reason"

    def __init__(self, settings: CollectorSettings, ctx: CollectorContext) -> None:
        super().__init__(settings, ctx)
        self.resolver = Resolver(ctx.log)

    @classmethod
    def check_targets(
        cls, settings: CollectorSettings, targets: Sequence[TargetConfig]
    ) -> list[tuple[int, str, str]]:
        """A CA bundle a target names must load, so check-config fails where the probe would. (A
        blackbox.yml module's ``tls_config`` is read only when it probes, as blackbox_exporter does.)"""
        problems: list[tuple[int, str, str]] = []
        for i, t in enumerate(targets):
            tls = getattr(t, "tls_config", None)
            if isinstance(tls, TlsOptions) and tls.ca_file is not None:
                try:
                    certificate_bundle(tls.ca_file)
                except ValueError as exc:
                    problems.append((i, "tls_config.ca_file", str(exc)))
        return problems

    async def collect(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        token = current_probe.set(self.kind)
        try:
            return await self.probe(target, deadline)
        finally:
            current_probe.reset(token)

    @abc.abstractmethod
    async def probe(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        """Probe one target; a down target is data (``probe_success 0``), never an exception."""

    def _probe_route(self, request: RouteRequest, ctx: RouteContext) -> Reply | None:
        # On /probe, as blackbox_exporter: no probe label (the module says it), no site/target.
        reply = super()._probe_route(request, ctx)
        if reply is None or reply.families is None:
            return reply
        return Reply(reply.status, reply.text, [strip_probe_label(f) for f in reply.families])


def strip_probe_label(fam: Metric) -> Metric:
    """A copy of ``fam`` without the ``probe`` label (stored families are never mutated)."""
    copy = Metric.__new__(Metric)
    copy.name, copy.documentation, copy.unit, copy.type = fam.name, fam.documentation, fam.unit, fam.type
    copy.samples = [
        Sample(s.name, {k: v for k, v in s.labels.items() if k != "probe"}, s.value, s.timestamp, s.exemplar)
        for s in fam.samples
    ]
    return copy


def connect_error_reason(exc: BaseException) -> str:
    """A bounded reason for a failed connect/read."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_verify"
    if isinstance(exc, ssl.SSLError):
        return "tls_handshake"
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError):
        return "connection_closed"
    if isinstance(exc, OSError):
        return {
            errno.ENETUNREACH: "net_unreachable",
            errno.EHOSTUNREACH: "host_unreachable",
            errno.ETIMEDOUT: "timeout",
            errno.ECONNREFUSED: "connection_refused",
        }.get(exc.errno or 0, "connect_error")
    return "error"


class TlsOptions(Model):
    """TLS client settings of a TCP or HTTP probe (blackbox's ``tls_config``)."""

    insecure_skip_verify: bool = Field(
        default=False, description="accept any certificate (expiry and TLS version are still reported)"
    )
    ca_file: Path | None = Field(default=None, description="PEM CA bundle instead of the system one")
    server_name: str | None = Field(default=None, description="SNI and name to verify; default the host")
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.min_version:
            ctx.minimum_version = getattr(ssl.TLSVersion, f"TLSv1_{self.min_version[-1]}")
        return ctx


#: Go's zero time as a Unix timestamp: what blackbox_exporter reports as the last chain's expiry when no
#: chain was verified (``insecure_skip_verify``).
GO_ZERO_TIME = -62135596800.0


def tls_metrics(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None, opts: TlsOptions | None = None
) -> list[Metric]:
    """blackbox_exporter's TLS series: ``probe_ssl_earliest_cert_expiry``,
    ``probe_ssl_last_chain_expiry_timestamp_seconds``, ``probe_ssl_last_chain_info``,
    ``probe_tls_version_info``, and ``probe_tls_cipher_info``."""
    if ssl_object is None:
        return []
    out: list[Metric] = []
    chain = _peer_chain(ssl_object)
    expiries = [_not_after(der) for der in chain]
    if expiries:
        out.append(
            gauge(
                "probe_ssl_earliest_cert_expiry",
                "Returns last SSL chain expiry in unixtime",
                min(expiries),
            )
        )
    if chain:
        verified = ssl_object.context.verify_mode != ssl.CERT_NONE
        ca_file = opts.ca_file if opts is not None else None
        out.append(
            gauge(
                "probe_ssl_last_chain_expiry_timestamp_seconds",
                "Returns last SSL chain expiry in timestamp",
                _verified_chain_expiry(chain[0], ca_file) if verified else GO_ZERO_TIME,
            )
        )
        fam = gauge("probe_ssl_last_chain_info", "Contains SSL leaf certificate information")
        add(fam, 1.0, **leaf_info(chain[0]))
        out.append(fam)
    version = ssl_object.version()
    if version:
        fam = gauge("probe_tls_version_info", "Returns the TLS version used or NaN when unknown")
        add(fam, 1.0, version=version.replace("TLSv", "TLS "))
        out.append(fam)
    cipher = ssl_object.cipher()
    if cipher:
        fam = gauge("probe_tls_cipher_info", "Returns the TLS cipher negotiated during handshake")
        add(fam, 1.0, cipher=cipher[0])
        out.append(fam)
    return out


def leaf_info(der: bytes) -> dict[str, str]:
    """The labels of ``probe_ssl_last_chain_info`` for the leaf certificate, as blackbox_exporter
    writes them: SHA-256 of the DER, subject and issuer as RFC 4514 strings, DNS names joined by commas."""
    import hashlib

    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return {
        "fingerprint_sha256": hashlib.sha256(der).hexdigest(),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "subjectalternative": ",".join(names),
    }


def _verified_chain_expiry(leaf_der: bytes, ca_file: Path | None) -> float:
    """The earliest expiry along the verified chain: the leaf, then each issuer found in the trust
    bundle (``ca_file``, else the system bundle). Python before 3.13 does not hand out the chain it
    verified, so it is rebuilt by names from the bundle the verification used."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(leaf_der)
    bundle = _trust_bundle(str(ca_file) if ca_file else ssl.get_default_verify_paths().cafile or "")
    earliest = cert.not_valid_after_utc.timestamp()
    seen = {cert.subject}
    while cert.issuer != cert.subject:
        issuer = bundle.get(cert.issuer.public_bytes())
        if issuer is None or issuer.subject in seen:
            break
        seen.add(issuer.subject)
        earliest = min(earliest, issuer.not_valid_after_utc.timestamp())
        cert = issuer
    return earliest


@functools.lru_cache(maxsize=8)
def _trust_bundle(path: str) -> dict[bytes, Any]:
    """Certificates of a PEM bundle by their subject (DER), read once."""
    from cryptography import x509

    if not path:
        return {}
    try:
        certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError):
        return {}
    return {c.subject.public_bytes(): c for c in certs}


def _peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    # Python 3.13 exposes the presented chain; before that only the leaf is available.
    get_chain = getattr(ssl_object, "get_unverified_chain", None)
    if get_chain is not None:
        chain = [c for c in (get_chain() or []) if isinstance(c, bytes)]  # DER, as documented
        if chain:
            return chain
    der = ssl_object.getpeercert(binary_form=True)
    return [der] if der else []


def _not_after(der: bytes) -> float:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
