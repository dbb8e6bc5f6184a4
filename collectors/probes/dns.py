"""DNS probe: one query to a given server (UDP or TCP), checking rcode and, optionally, the answer.

dnspython (well kept, asyncio-native ``dns.asyncquery``) builds and parses the messages; hand-written
DNS encoding would be longer and less right. Names follow blackbox_exporter's ``dns`` prober, plus
``probe_dns_rcode``.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import socket
import time
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client.core import Metric
from pydantic import Field, field_validator

from agent.kernel.collector import Deadline, TargetConfig
from agent.kernel.model import Model

if TYPE_CHECKING:
    import dns.message

# dnspython is imported where it is used (13 MiB RSS): an agent without DNS targets never loads it.
from collectors.probes.common import (
    ProbeCollector,
    ProbeTarget,
    ResolveError,
    add,
    check_regexes,
    connect_error_reason,
    gauge,
    probe_budget,
    resolve,
    resolve_failed,
    result_metrics,
)

#: Every value the ``reason`` label can take for a DNS probe.
REASONS = (
    "resolve",
    "timeout",
    "connection_refused",
    "connect_error",
    "connection_closed",
    "bad_response",  # not a DNS answer to our query
    "rcode",  # rcode not in valid_rcodes
    "answer_mismatch",  # an expect_answer regex matched no answer record
    "rr_validation",  # a validate_*_rrs rule failed
)


class RRValidator(Model):
    """blackbox_exporter's ``validate_answer_rrs`` (and authority, additional): regexes on each record
    written as ``name<TAB>ttl<TAB>class<TAB>type<TAB>data``."""

    fail_if_matches_regexp: list[str] = Field(default_factory=list)
    fail_if_all_match_regexp: list[str] = Field(default_factory=list)
    fail_if_not_matches_regexp: list[str] = Field(default_factory=list)
    fail_if_none_matches_regexp: list[str] = Field(default_factory=list)

    @field_validator("*")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        return check_regexes(v)

    def fails(self, records: list[str]) -> bool:
        if not records and (self.fail_if_not_matches_regexp or self.fail_if_none_matches_regexp):
            return True
        for rec in records:
            if any(re.search(p, rec) for p in self.fail_if_matches_regexp):
                return True
            if any(not re.search(p, rec) for p in self.fail_if_not_matches_regexp):
                return True
        if self.fail_if_all_match_regexp and all(
            all(re.search(p, rec) for p in self.fail_if_all_match_regexp) for rec in records
        ):
            return True
        return bool(self.fail_if_none_matches_regexp) and not any(
            re.search(p, rec) for rec in records for p in self.fail_if_none_matches_regexp
        )


class DnsTarget(ProbeTarget):
    """``targets.dns[]``: a server and the query to ask it."""

    server: str = Field(min_length=1, description="resolver address (IP or name)")
    port: int = Field(default=53, ge=1, le=65535)
    query_name: str = Field(min_length=1)
    query_type: str = "A"
    query_class: str = "IN"
    transport: Literal["udp", "tcp"] = "udp"
    recursion_desired: bool = True
    valid_rcodes: list[str] = Field(default_factory=lambda: ["NOERROR"])
    expect_answer: list[str] = Field(
        default_factory=list, description="regexes; each must match at least one answer record's text"
    )
    validate_answer_rrs: RRValidator = Field(default_factory=RRValidator)
    validate_authority_rrs: RRValidator = Field(default_factory=RRValidator)
    validate_additional_rrs: RRValidator = Field(default_factory=RRValidator)

    @field_validator("query_class")
    @classmethod
    def _qclass(cls, v: str) -> str:
        import dns.exception
        import dns.rdataclass

        try:
            dns.rdataclass.from_text(v.upper())
        except dns.exception.DNSException:
            raise ValueError(f"unknown DNS query class {v!r}") from None
        return v.upper()

    @field_validator("query_type")
    @classmethod
    def _qtype(cls, v: str) -> str:
        import dns.exception
        import dns.rdatatype

        try:
            dns.rdatatype.from_text(v.upper())
        except dns.exception.DNSException:
            raise ValueError(f"unknown DNS query type {v!r}") from None
        return v.upper()

    @field_validator("valid_rcodes")
    @classmethod
    def _rcodes(cls, v: list[str]) -> list[str]:
        import dns.exception
        import dns.rcode

        for r in v:
            try:
                dns.rcode.from_text(r.upper())
            except dns.exception.DNSException:
                raise ValueError(f"unknown DNS rcode {r!r}") from None
        return [r.upper() for r in v]

    @field_validator("expect_answer")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        return check_regexes(v)


class DnsCollector(ProbeCollector):
    kind = "dns"
    target_model = DnsTarget

    async def start(self) -> None:
        # ~0.2 s of imports, paid only by agents that have DNS targets
        for mod in ("dns.asyncbackend", "dns.asyncquery", "dns.flags", "dns.message"):
            importlib.import_module(mod)

    async def probe(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, DnsTarget)
        start = time.perf_counter()
        budget = probe_budget(deadline)
        try:
            ip, family, lookup = await resolve(
                self.resolver, target.server, target.ip_protocol, budget, target.ip_protocol_fallback
            )
        except ResolveError:
            elapsed = time.perf_counter() - start
            return [*resolve_failed(elapsed, elapsed), *_unanswered(elapsed)]
        import dns.asyncbackend
        import dns.asyncquery  # imported in start(); here for the names
        import dns.exception
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rdatatype

        query = dns.message.make_query(target.query_name, target.query_type, target.query_class)
        if not target.recursion_desired:
            query.flags &= ~dns.flags.RD
        t1 = time.perf_counter()
        remaining = max(0.01, budget - (t1 - start))
        reason = ""
        response: dns.message.Message | None = None
        connected = t1
        try:
            async with asyncio.timeout(remaining):
                backend = dns.asyncbackend.get_backend("asyncio")
                if target.transport == "udp":
                    udp = await backend.make_socket(family, socket.SOCK_DGRAM)  # type: ignore[no-untyped-call]
                    async with udp:
                        connected = time.perf_counter()
                        response = await dns.asyncquery.udp(query, ip, port=target.port, sock=udp)
                else:
                    tcp = await backend.make_socket(  # type: ignore[no-untyped-call]
                        family, socket.SOCK_STREAM, 0, None, (ip, target.port)
                    )
                    async with tcp:
                        connected = time.perf_counter()
                        response = await dns.asyncquery.tcp(query, ip, port=target.port, sock=tcp)
        except (TimeoutError, dns.exception.Timeout):
            reason = "timeout"
        except (dns.exception.DNSException, ValueError):
            reason = "bad_response"
        except OSError as exc:
            reason = connect_error_reason(exc)
        t2 = time.perf_counter()
        phases = gauge("probe_dns_duration_seconds", "Duration of DNS request by phase")
        add(phases, lookup, phase="resolve")
        add(phases, connected - t1, phase="connect")
        add(phases, t2 - connected, phase="request")
        extra: list[Metric] = [phases]
        sections = (response.answer, response.authority, response.additional) if response else ([], [], [])
        extra += [  # 0 without an answer, as blackbox has them
            gauge(
                "probe_dns_answer_rrs",
                "Returns number of entries in the answer resource record list",
                sum(len(r) for r in sections[0]),
            ),
            gauge(
                "probe_dns_authority_rrs",
                "Returns number of entries in the authority resource record list",
                sum(len(r) for r in sections[1]),
            ),
            gauge(
                "probe_dns_additional_rrs",
                "Returns number of entries in the additional resource record list",
                sum(len(r) for r in sections[2]),
            ),
        ]
        if response is not None:
            rcode = response.rcode()
            # one line per record, as in a zone file: "name ttl IN type data"
            answers = [line for rrset in response.answer for line in rrset.to_text().splitlines()]
            extra.append(
                gauge(
                    "probe_dns_rcode", "The response code of the DNS answer (0 NOERROR, 3 NXDOMAIN...)", rcode
                )
            )
            for rrset in (*response.answer, *response.authority):
                if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                    extra.append(
                        gauge("probe_dns_serial", "Returns the serial number of the zone", rrset[0].serial)
                    )
                    break
            if dns.rcode.to_text(rcode) not in target.valid_rcodes:
                reason = "rcode"
            elif any(not any(re.search(p, a) for a in answers) for p in target.expect_answer):
                reason = "answer_mismatch"
            elif (
                target.validate_answer_rrs.fails(_records(response.answer))
                or target.validate_authority_rrs.fails(_records(response.authority))
                or target.validate_additional_rrs.fails(_records(response.additional))
            ):
                reason = "rr_validation"
        extra.append(
            gauge(
                "probe_dns_query_succeeded",
                "Displays whether or not the query was executed successfully",
                1 if response is not None else 0,
            )
        )
        return [
            *result_metrics(
                not reason, time.perf_counter() - start, reason, lookup=lookup, family=family, ip=ip
            ),
            *extra,
        ]


def _unanswered(lookup: float) -> list[Metric]:
    """The DNS series of a query never sent (the server's name did not resolve), as blackbox has them."""
    phases = gauge("probe_dns_duration_seconds", "Duration of DNS request by phase")
    for phase, value in (("resolve", lookup), ("connect", 0.0), ("request", 0.0)):
        add(phases, value, phase=phase)
    return [
        phases,
        gauge("probe_dns_answer_rrs", "Returns number of entries in the answer resource record list", 0),
        gauge(
            "probe_dns_authority_rrs", "Returns number of entries in the authority resource record list", 0
        ),
        gauge(
            "probe_dns_additional_rrs", "Returns number of entries in the additional resource record list", 0
        ),
        gauge("probe_dns_query_succeeded", "Displays whether or not the query was executed successfully", 0),
    ]


def _records(section: list[Any]) -> list[str]:
    """Each record of a message section as miekg/dns (blackbox_exporter) prints it:
    ``name<TAB>ttl<TAB>class<TAB>type<TAB>data``, so blackbox.yml regexes match the same text."""
    import dns.rdataclass
    import dns.rdatatype

    return [
        f"{rrset.name}\t{rrset.ttl}\t{dns.rdataclass.to_text(rrset.rdclass)}\t"
        f"{dns.rdatatype.to_text(rrset.rdtype)}\t{rd.to_text()}"
        for rrset in section
        for rd in rrset
    ]
