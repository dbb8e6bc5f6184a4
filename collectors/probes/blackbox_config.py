"""blackbox_exporter's ``blackbox.yml`` read as giamsat probe modules.

Each module becomes a recipe for a native probe target (``HttpTarget``, ``TcpTarget``, ``IcmpTarget``,
``DnsTarget``) given the ``target`` of a request, with blackbox_exporter 0.23's defaults (IPv6 preferred
with fallback to IPv4, DNS query type ANY, ICMP TTL 64, one echo). A key giamsat does not implement is
an error naming the file, line and key, never silently ignored: a module that seems to check something
it does not would be worse than one that is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from agent.kernel.collector import TargetConfig
from agent.kernel.errors import ConfigError, ConfigProblem
from agent.kernel.model import parse_duration
from agent.kernel.yamlfile import problem_at, read_yaml_mapping

#: Probers giamsat runs; blackbox_exporter 0.23 also has ``grpc`` (and later versions more).
PROBERS = ("http", "tcp", "icmp", "dns")

_TLS = {"insecure_skip_verify", "ca_file", "server_name", "min_version"}
_IP = {"preferred_ip_protocol", "ip_protocol_fallback"}
_RR = {
    "fail_if_matches_regexp",
    "fail_if_all_match_regexp",
    "fail_if_not_matches_regexp",
    "fail_if_none_matches_regexp",
}

#: The keys giamsat implements, per section; everything else in a module is refused.
SUPPORTED: dict[str, set[str]] = {
    "module": {"prober", "timeout", *PROBERS},
    "http": {
        *_IP,
        "valid_status_codes",
        "valid_http_versions",
        "no_follow_redirects",
        "follow_redirects",
        "fail_if_ssl",
        "fail_if_not_ssl",
        "method",
        "headers",
        "body",
        "fail_if_body_matches_regexp",
        "fail_if_body_not_matches_regexp",
        "fail_if_header_matches",
        "fail_if_header_not_matches",
        "tls_config",
    },
    "header_match": {"header", "regexp", "allow_missing"},
    "tls_config": _TLS,
    "tcp": {*_IP, "query_response", "tls", "tls_config"},
    "query_response": {"expect", "send", "starttls"},
    "icmp": {*_IP, "payload_size", "dont_fragment", "ttl"},
    "dns": {
        *_IP,
        "transport_protocol",
        "query_class",
        "query_name",
        "query_type",
        "recursion_desired",
        "valid_rcodes",
        "validate_answer_rrs",
        "validate_authority_rrs",
        "validate_additional_rrs",
    },
    "rr": _RR,
}


@dataclass(frozen=True)
class BlackboxModule:
    """One module: its prober, timeout (0: none, the scrape's decides) and the native target keys."""

    name: str
    prober: str
    timeout: float
    keys: dict[str, Any]

    def with_hostname(self, hostname: str) -> BlackboxModule:
        """The module with the ``hostname`` request parameter applied (HTTP): the ``Host`` header and,
        unless the module sets one, the TLS server name. ValueError when the module's own ``Host``
        header says otherwise, as blackbox_exporter refuses it."""
        headers = dict(self.keys.get("headers") or {})
        own = next((v for k, v in headers.items() if k.lower() == "host"), None)
        if own is not None and own != hostname:
            raise ValueError(
                f"host header defined both in module configuration ({own}) and with URL-parameter "
                f"'hostname' ({hostname[:100]})"
            )
        headers = {k: v for k, v in headers.items() if k.lower() != "host"} | {"Host": hostname}
        tls = dict(self.keys.get("tls_config") or {})
        tls.setdefault("server_name", hostname)
        return BlackboxModule(
            self.name, self.prober, self.timeout, {**self.keys, "headers": headers, "tls_config": tls}
        )

    def target(self, target: str, name: str = "", site: str = "") -> TargetConfig:
        """The native target that probes ``target`` as this module says. ValueError when ``target`` is
        not of the form the prober needs (``host:port`` for TCP)."""
        try:
            return self.build(target, name, site)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise ValueError(str(first["msg"]).removeprefix("Value error, ")) from None

    def build(self, target: str, name: str = "", site: str = "") -> TargetConfig:
        """As ``target``, raising the model's ValidationError."""
        from collectors.probes.dns import DnsTarget
        from collectors.probes.http import HttpTarget
        from collectors.probes.icmp import IcmpTarget
        from collectors.probes.tcp import TcpTarget

        common = {"name": name or target, "site": site or "-", **self.keys}
        if self.prober == "http":
            url = target if target.startswith(("http://", "https://")) else f"http://{target}"
            return HttpTarget.model_validate({**common, "url": url})
        if self.prober == "tcp":
            host, port = split_host_port(target, None)
            return TcpTarget.model_validate({**common, "address": host, "port": port})
        if self.prober == "dns":
            host, port = split_host_port(target, 53)
            return DnsTarget.model_validate({**common, "server": host, "port": port})
        return IcmpTarget.model_validate({**common, "address": target.strip("[]")})


#: giamsat's target keys that blackbox.yml spells otherwise
_BLACKBOX_KEY = {"ip_protocol": "preferred_ip_protocol", "transport": "transport_protocol"}


def split_host_port(target: str, default: int | None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, or a bare host when there is a default port."""
    parts = urlsplit(f"//{target}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {target[:100]!r}") from None
    host = parts.hostname or ""
    if not host or (port is None and default is None):
        raise ValueError(f"target {target[:100]!r} must be host:port")
    return host, port if port is not None else default  # type: ignore[return-value]


def load_blackbox_file(path: Path) -> dict[str, BlackboxModule]:
    """Read a ``blackbox.yml``. Raises ``ConfigError`` naming the file, line and key of every problem."""
    data, root = read_yaml_mapping(path)
    file = str(path)
    problems: list[ConfigProblem] = []

    def at(loc: tuple[int | str, ...], msg: str) -> None:
        problems.append(problem_at(file, root, loc, msg))

    for key in data:
        if key != "modules":
            at((key,), "unknown key; blackbox.yml has only `modules`")
    modules = data.get("modules")
    if not isinstance(modules, dict) or not modules:
        if "modules" in data or not problems:
            at(("modules",), "expected a mapping of module names to modules")
        raise ConfigError(problems)
    out: dict[str, BlackboxModule] = {}
    for name, raw in modules.items():
        loc: tuple[int | str, ...] = ("modules", str(name))
        before = len(problems)
        if not isinstance(raw, dict):
            at(loc, "expected a mapping (prober, timeout, and the prober's section)")
            continue
        prober = raw.get("prober")
        if prober not in PROBERS:
            at(
                (*loc, "prober"),
                f"prober {prober!r} is not supported by giamsat (it runs {', '.join(PROBERS)})",
            )
        _check_keys(raw, "module", loc, at)
        timeout = 0.0
        if raw.get("timeout") is not None:
            try:
                timeout = parse_duration(raw["timeout"])
            except ValueError as exc:
                at((*loc, "timeout"), str(exc))
        if len(problems) > before or prober not in PROBERS:
            continue
        section = raw.get(prober) or {}
        if not isinstance(section, dict):
            at((*loc, prober), "expected a mapping")
            continue
        module = BlackboxModule(str(name), prober, timeout, _native_keys(prober, section))
        try:
            module.build(_SAMPLE[prober])
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                where: tuple[int | str, ...] = tuple(err["loc"])
                if where:
                    where = (_BLACKBOX_KEY.get(str(where[0]), where[0]), *where[1:])
                msg = str(err["msg"]).removeprefix("Value error, ")
                if err["type"] == "missing":
                    msg = "required key is missing"
                at((*loc, prober, *where), msg)
            continue
        out[str(name)] = module
    if problems:
        raise ConfigError(problems)
    return out


_SAMPLE = {"http": "http://127.0.0.1/", "tcp": "127.0.0.1:1", "icmp": "127.0.0.1", "dns": "127.0.0.1"}


def _check_keys(raw: dict[str, Any], section: str, loc: tuple[int | str, ...], at: Any) -> None:
    """Report every key of ``raw`` (and of its nested sections) that giamsat does not implement."""
    allowed = SUPPORTED[section]
    for key, value in raw.items():
        here = (*loc, key)
        if key not in allowed:
            at(here, f"`{key}` is not supported by giamsat; remove it or probe this another way")
            continue
        if section == "module" and key in PROBERS and isinstance(value, dict):
            _check_keys(value, key, here, at)
        elif key == "tls_config" and isinstance(value, dict):
            _check_keys(value, "tls_config", here, at)
        elif key in ("fail_if_header_matches", "fail_if_header_not_matches", "query_response"):
            sub = "query_response" if key == "query_response" else "header_match"
            for i, item in enumerate(value if isinstance(value, list) else []):
                if isinstance(item, dict):
                    _check_keys(item, sub, (*here, i), at)
        elif key.startswith("validate_") and isinstance(value, dict):
            _check_keys(value, "rr", here, at)


def _native_keys(prober: str, s: dict[str, Any]) -> dict[str, Any]:
    """A module's prober section as the keys of giamsat's own target model, with blackbox's defaults."""
    out: dict[str, Any] = {
        "ip_protocol": s.get("preferred_ip_protocol") or "ip6",
        "ip_protocol_fallback": s.get("ip_protocol_fallback", True),
    }
    if prober == "http":
        for key in (
            "valid_status_codes",
            "valid_http_versions",
            "fail_if_ssl",
            "fail_if_not_ssl",
            "headers",
            "body",
            "fail_if_body_matches_regexp",
            "fail_if_body_not_matches_regexp",
            "fail_if_header_matches",
            "fail_if_header_not_matches",
            "tls_config",
        ):
            if s.get(key) is not None:
                out[key] = s[key]
        if s.get("method"):
            out["method"] = str(s["method"]).upper()
        follow = s.get("follow_redirects", True)
        if s.get("no_follow_redirects") is not None:
            follow = not s["no_follow_redirects"]
        out["follow_redirects"] = follow
    elif prober == "tcp":
        for key in ("query_response", "tls", "tls_config"):
            if s.get(key) is not None:
                out[key] = s[key]
    elif prober == "icmp":
        out["count"] = 1  # one echo, as blackbox_exporter sends
        out["packet_timeout"] = 120  # the probe's deadline cuts it short
        out["ttl"] = s.get("ttl") or 64
        for key in ("payload_size", "dont_fragment"):
            if s.get(key) is not None:
                out[key] = s[key]
    else:
        if s.get("query_name") is not None:
            out["query_name"] = s["query_name"]
        out["query_type"] = s.get("query_type") or "ANY"
        out["transport"] = s.get("transport_protocol") or "udp"
        out["recursion_desired"] = s.get("recursion_desired", True)
        for key in (
            "query_class",
            "valid_rcodes",
            "validate_answer_rrs",
            "validate_authority_rrs",
            "validate_additional_rrs",
        ):
            if s.get(key) is not None:
                out[key] = s[key]
    return out
