"""The site-inventory shorthand for probes: a site lists its links, each with the probes to run on it.

    sites:
      - id: xa-an-binh
        ...
        links:
          - {name: wan, address: 198.18.31.2, probes: [icmp, "tcp:22", "https:8443"]}

expands to ordinary targets (``targets.icmp[]``, ``targets.tcp[]``, ``targets.http[]``) named
``<site>/<link>`` (ICMP) and ``<site>/<link>:<port>`` (TCP, HTTP), bound to that site. The expansion is
pure and lives here; the ICMP collector declares it (``LINKS``) and the configuration loader only calls
it. Explicit ``targets.<kind>`` entries remain for everything the shorthand cannot say.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from agent.kernel.collector import SiteShorthand
from agent.kernel.model import Model

#: collector kinds the shorthand can generate targets for
LINK_KINDS = ("icmp", "tcp", "http")

_SPEC = re.compile(r"^(icmp|tcp|http|https)(?::(\d{1,5}))?$")


class LinkConfig(Model):
    """One link of a site (``sites[].links[]``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    address: str = Field(min_length=1, description="IP address or host name of the far end")
    probes: list[str] = Field(
        default_factory=lambda: ["icmp"], description='icmp, "tcp:PORT", "http[:PORT]", "https[:PORT]"'
    )
    #: extra keys for the generated ICMP target (count, packet_interval, payload_size, dont_fragment...)
    icmp: dict[str, Any] = Field(default_factory=dict)

    @field_validator("probes")
    @classmethod
    def _specs(cls, v: list[str]) -> list[str]:
        for spec in v:
            m = _SPEC.match(spec)
            if not m:
                raise ValueError(
                    f'unknown probe {spec!r}; use icmp, "tcp:PORT", "http[:PORT]" or "https[:PORT]"'
                )
            if m[1] == "tcp" and not m[2]:
                raise ValueError(f'{spec!r} needs a port, e.g. "tcp:22"')
            if m[2] and not 1 <= int(m[2]) <= 65535:
                raise ValueError(f"{spec!r}: port out of range")
        if len(set(v)) != len(v):
            raise ValueError("a probe is listed twice")
        return v


def expand_links(site_id: str, links: list[LinkConfig]) -> dict[str, list[dict[str, Any]]]:
    """Targets (as config dicts, by kind) for one site's links."""
    out: dict[str, list[dict[str, Any]]] = {}
    for link in links:
        base = f"{site_id}/{link.name}"
        for spec in link.probes:
            m = _SPEC.match(spec)
            assert m is not None  # validated
            kind, port = m[1], m[2]
            if kind == "icmp":
                out.setdefault("icmp", []).append(
                    {**link.icmp, "name": base, "site": site_id, "address": link.address}
                )
            elif kind == "tcp":
                out.setdefault("tcp", []).append(
                    {"name": f"{base}:{port}", "site": site_id, "address": link.address, "port": int(port)}
                )
            else:
                host = f"[{link.address}]" if ":" in link.address else link.address
                url = f"{kind}://{host}" + (f":{port}" if port else "") + "/"
                name = f"{base}:{port or (443 if kind == 'https' else 80)}"
                out.setdefault("http", []).append({"name": name, "site": site_id, "url": url})
    return out


#: The ``links:`` key of a site, declared by the ICMP collector (its table line names the key).
LINKS = SiteShorthand("links", LinkConfig, expand_links, LINK_KINDS)
