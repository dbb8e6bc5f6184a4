"""Which addresses a remote client may make the agent connect to: CIDRs, host names and URL prefixes.

An endpoint that probes on request (``/probe?target=...``) would otherwise let anyone who can reach the
agent make it connect anywhere: inside the province network, to the agent's own host, to another
network through a VPN. The configuration lists what may be asked for; the list is empty by default.

Matching is literal, so what is allowed is what the configuration says:
- an IP literal is allowed when it falls inside a listed network (``198.18.0.0/15``, ``::1/128``, a
  bare address is a /32 or /128). A host name is *not* matched against networks: its address is only
  known after a lookup whose answer the name's owner controls;
- a host name is allowed when it is listed (case-insensitive, without a trailing dot); ``*.example.vn``
  allows every name under ``example.vn`` (not ``example.vn`` itself);
- a URL is allowed when it falls under a listed URL prefix (same scheme, host and port; its path
  starts with the prefix's path, compared segment by segment), or when its host is allowed as above.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _host_key(host: str) -> str:
    return host.strip().rstrip(".").lower()


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _url_key(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of an http(s) URL, or None if it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, _host_key(parts.hostname), port or default, parts.path or "/"


def check_entry(entry: str) -> str:
    """The entry if it is a network, address, host name or http(s) URL prefix; else ValueError."""
    entry = entry.strip()
    if not entry:
        raise ValueError("an empty entry")
    if "://" in entry:
        if _url_key(entry) is None:
            raise ValueError(f"{entry!r} is not an http:// or https:// URL prefix (without user:password@)")
        return entry
    try:
        ipaddress.ip_network(entry, strict=False)
        return entry
    except ValueError:
        pass
    name = entry.removeprefix("*.")
    labels = _host_key(name).split(".")
    # an all-digit last label is no host name: the resolver reads "10.0.0" or "2130706433" as an address
    if labels[-1].isdigit() or not all(
        lbl and len(lbl) <= 63 and all(c.isalnum() or c in "-_" for c in lbl) for lbl in labels
    ):
        raise ValueError(f"{entry!r} is neither a network (CIDR), an address, a host name nor a URL prefix")
    return entry


@dataclass(frozen=True)
class AllowList:
    """A parsed allow-list; empty allows nothing."""

    networks: tuple[_Network, ...] = ()
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # ".example.vn" for "*.example.vn"
    prefixes: tuple[tuple[str, str, int, str], ...] = field(default=())

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Build from configuration entries (each checked with ``check_entry``)."""
        networks: list[_Network] = []
        names: set[str] = set()
        suffixes: list[str] = []
        prefixes: list[tuple[str, str, int, str]] = []
        for raw in entries:
            entry = check_entry(raw)
            if "://" in entry:
                key = _url_key(entry)
                assert key is not None
                prefixes.append(key)
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                suffixes.append("." + _host_key(entry[2:]))
            else:
                names.add(_host_key(entry))
        return cls(tuple(networks), frozenset(names), tuple(suffixes), tuple(prefixes))

    def __bool__(self) -> bool:
        return bool(self.networks or self.names or self.suffixes or self.prefixes)

    def allows_host(self, host: str) -> bool:
        """An IP literal inside a listed network, or a listed host name."""
        ip = _ip(host)
        if ip is not None:
            return any(ip.version == n.version and ip in n for n in self.networks)
        key = _host_key(host)
        if not key:
            return False
        return key in self.names or any(key.endswith(s) for s in self.suffixes)

    def allows_url(self, url: str) -> bool:
        """A URL under a listed prefix, or whose host is allowed."""
        key = _url_key(url)
        if key is None:
            return False
        scheme, host, port, path = key
        for p_scheme, p_host, p_port, p_path in self.prefixes:
            if (scheme, host, port) != (p_scheme, p_host, p_port):
                continue
            if p_path == "/" or path == p_path or path.startswith(p_path.rstrip("/") + "/"):
                return True
        return self.allows_host(host)
