"""DNS probe: one query to a given server (UDP or TCP), checking rcode and, optionally, the answer.

dnspython (well kept, asyncio-native ``dns.asyncquery``) builds and parses the messages; hand-written
DNS encoding would be longer and less right. Names follow blackbox_exporter's ``dns`` prober, plus
``probe_dns_rcode``.
"""

from __future__ import annotations

import importlib
import re
import time
from typing import TYPE_CHECKING, Literal

from prometheus_client.core import Metric
from pydantic import Field, field_validator

from agent.kernel.collector import Deadline, TargetConfig

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
)


class DnsTarget(ProbeTarget):
    """``targets.dns[]``: a server and the query to ask it."""

    server: str = Field(min_length=1, description="resolver address (IP or name)")
    port: int = Field(default=53, ge=1, le=65535)
    query_name: str = Field(min_length=1)
    query_type: str = "A"
    transport: Literal["udp", "tcp"] = "udp"
    recursion_desired: bool = True
    valid_rcodes: list[str] = Field(default_factory=lambda: ["NOERROR"])
    expect_answer: list[str] = Field(
        default_factory=list, description="regexes; each must match at least one answer record's text"
    )

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
        for mod in ("dns.asyncquery", "dns.flags", "dns.message"):
            importlib.import_module(mod)

    async def probe(self, target: TargetConfig | None, deadline: Deadline) -> list[Metric]:
        assert isinstance(target, DnsTarget)
        start = time.perf_counter()
        budget = probe_budget(deadline)
        try:
            ip, family, lookup = await resolve(self.resolver, target.server, target.ip_protocol, budget)
        except ResolveError:
            return result_metrics(False, time.perf_counter() - start, "resolve")
        import dns.asyncquery  # imported in start(); here for the names
        import dns.exception
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rdatatype

        query = dns.message.make_query(target.query_name, target.query_type)
        if not target.recursion_desired:
            query.flags &= ~dns.flags.RD
        t1 = time.perf_counter()
        remaining = max(0.01, budget - (t1 - start))
        reason = ""
        response: dns.message.Message | None = None
        try:
            if target.transport == "udp":
                response = await dns.asyncquery.udp(query, ip, timeout=remaining, port=target.port)
            else:
                response = await dns.asyncquery.tcp(query, ip, timeout=remaining, port=target.port)
        except dns.exception.Timeout:
            reason = "timeout"
        except (dns.exception.DNSException, ValueError):
            reason = "bad_response"
        except OSError as exc:
            reason = connect_error_reason(exc)
        t2 = time.perf_counter()
        phases = gauge("probe_dns_duration_seconds", "Duration of DNS request by phase")
        add(phases, lookup, phase="resolve")
        add(phases, t2 - t1, phase="request")
        extra: list[Metric] = [phases]
        if response is not None:
            rcode = response.rcode()
            # one line per record, as in a zone file: "name ttl IN type data"
            answers = [line for rrset in response.answer for line in rrset.to_text().splitlines()]
            extra += [
                gauge(
                    "probe_dns_rcode", "The response code of the DNS answer (0 NOERROR, 3 NXDOMAIN...)", rcode
                ),
                gauge(
                    "probe_dns_answer_rrs",
                    "Returns number of entries in the answer resource record list",
                    sum(len(r) for r in response.answer),
                ),
                gauge(
                    "probe_dns_authority_rrs",
                    "Returns number of entries in the authority resource record list",
                    sum(len(r) for r in response.authority),
                ),
                gauge(
                    "probe_dns_additional_rrs",
                    "Returns number of entries in the additional resource record list",
                    sum(len(r) for r in response.additional),
                ),
            ]
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
        extra.append(
            gauge(
                "probe_dns_query_succeeded",
                "Displays whether or not the query was executed successfully",
                1 if response is not None else 0,
            )
        )
        return [
            *result_metrics(not reason, time.perf_counter() - start, reason, lookup=lookup, family=family),
            *extra,
        ]
