"""blackbox.yml read as modules, the on-demand allow-list and blackbox_exporter's timeout rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.kernel.allowlist import AllowList, check_entry
from agent.kernel.errors import ConfigError
from collectors.probes.blackbox import scrape_timeout
from collectors.probes.blackbox_config import load_blackbox_file
from collectors.probes.dns import DnsTarget
from collectors.probes.http import HttpTarget
from collectors.probes.icmp import IcmpTarget
from collectors.probes.tcp import TcpTarget

ORACLES = Path(__file__).resolve().parents[1] / "data" / "oracles" / "blackbox_exporter"


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_blackbox_file(path)
    return [f"{p.line}: {p.key}" for p in err.value.problems]


def test_upstream_example_yml_every_unsupported_key_is_named_with_its_line() -> None:
    assert _problems(ORACLES / "example.yml") == [
        "13: modules.http_2xx_example.http.http_headers",
        "37: modules.http_with_proxy.http.proxy_url",
        "38: modules.http_with_proxy.http.skip_resolve_phase_with_proxy",
        "42: modules.http_with_proxy_and_headers.http.proxy_url",
        "44: modules.http_with_proxy_and_headers.http.proxy_connect_header",
        "59: modules.http_post_body_file.http.body_file",
        "68: modules.http_basic_auth_example.http.basic_auth",
        "75: modules.http_json_cel_match.http.fail_if_body_json_not_matches_cel",
        "87: modules.http_2xx_oauth_client_credentials.http.oauth2",
        "102: modules.http_gzip.http.compression",
        "107: modules.http_gzip_with_accept_encoding.http.compression",
        "186: modules.icmp_example.icmp.source_ip_address",
        "222: modules.unix_socket_ping.prober",
        "225: modules.unix_socket_ping.unix",
        "233: modules.postgresql.tcp.query_response[1].expect_bytes",
        "239: modules.http_with_header_from_files.http.http_headers",
        "243: modules.websocket_example_basic_auth.prober",
        "245: modules.websocket_example_basic_auth.websocket",
        "258: modules.websocket_example_bearer_token.prober",
        "260: modules.websocket_example_bearer_token.websocket",
    ]


def test_upstream_blackbox_yml_every_unsupported_key_is_named_with_its_line() -> None:
    assert _problems(ORACLES / "blackbox.yml") == [
        # Python's re refuses "^+OK" (RE2 reads it as "^OK"): said, not guessed
        "16: modules.pop3s_banner.tcp.query_response[0].expect",
        "21: modules.grpc.prober",
        "23: modules.grpc.grpc",
        "26: modules.grpc_plain.prober",
        "28: modules.grpc_plain.grpc",
        "43: modules.ssh_banner_extract.tcp.query_response[0].labels",
        "64: modules.websocket.prober",
        "69: modules.http_3xx.http.enable_http3",
        "70: modules.http_3xx.http.enable_http2",
        "77: modules.postgresql.tcp.query_response[1].expect_bytes",
    ]


def test_the_supported_modules_of_the_upstream_files_become_native_targets(tmp_path: Path) -> None:
    upstream = yaml.safe_load((ORACLES / "example.yml").read_text())["modules"]
    names = [
        "http_2xx_example",
        "http_post_2xx",
        "http_custom_ca_example",
        "tls_connect",
        "tcp_connect_example",
        "imap_starttls",
        "smtp_starttls",
        "irc_banner_example",
        "rabbitmq",
        "dns_udp_example",
        "dns_soa",
        "dns_tcp_example",
    ]
    del upstream["http_2xx_example"]["http"]["http_headers"]
    f = tmp_path / "blackbox.yml"
    f.write_text(yaml.safe_dump({"modules": {n: upstream[n] for n in names}}))
    modules = load_blackbox_file(f)
    assert len(modules) == 12
    http = modules["http_2xx_example"].target("https://portal.example.gov.vn/")
    assert isinstance(http, HttpTarget)
    assert (http.ip_protocol, http.ip_protocol_fallback, http.headers["Host"]) == (
        "ip4",
        False,
        "vhost.example.com",
    )
    assert http.fail_if_header_matches[0].allow_missing
    smtp = modules["smtp_starttls"].target("mail.example.gov.vn:25")
    assert isinstance(smtp, TcpTarget)
    assert (smtp.address, smtp.port, [s.starttls for s in smtp.query_response].count(True)) == (
        "mail.example.gov.vn",
        25,
        1,
    )
    dns = modules["dns_udp_example"].target("198.18.0.53")
    assert isinstance(dns, DnsTarget)
    assert (dns.server, dns.port, dns.query_type, dns.ip_protocol) == ("198.18.0.53", 53, "A", "ip6")
    assert modules["dns_soa"].target("[::1]:5353").port == 5353  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="host:port"):
        modules["tcp_connect_example"].target("no-port.example")


def test_icmp_module_is_one_echo_with_ttl_64(tmp_path: Path) -> None:
    f = tmp_path / "b.yml"
    f.write_text("modules:\n  icmp:\n    prober: icmp\n")
    icmp = load_blackbox_file(f)["icmp"].target("198.18.0.1")
    assert isinstance(icmp, IcmpTarget)
    assert (icmp.count, icmp.ttl) == (1, 64)


def test_bad_values_are_reported_at_their_blackbox_key(tmp_path: Path) -> None:
    f = tmp_path / "b.yml"
    f.write_text(
        "modules:\n"
        "  a:\n    prober: http\n    timeout: soon\n"
        "  b:\n    prober: dns\n    dns:\n      query_type: NOPE\n      query_name: x\n"
        "  c:\n    prober: dns\n"
        "  d:\n    prober: tcp\n    tcp:\n      preferred_ip_protocol: ip5\n"
        "extra: 1\n"
    )
    with pytest.raises(ConfigError) as err:
        load_blackbox_file(f)
    got = [str(p).replace(str(f), "F") for p in err.value.problems]
    assert got[0] == "F:16: extra: unknown key; blackbox.yml has only `modules`"
    assert got[1].startswith("F:4: modules.a.timeout: expected a duration")
    assert got[2] == "F:8: modules.b.dns.query_type: unknown DNS query type 'NOPE'"
    assert got[3] == "F:11: modules.c.dns.query_name: required key is missing"
    assert got[4].startswith("F:15: modules.d.tcp.preferred_ip_protocol: Input should be")


@pytest.mark.parametrize(
    ("entries", "allowed", "refused"),
    [
        ([], [], ["127.0.0.1", "localhost", "http://127.0.0.1/"]),
        (["198.18.0.0/15", "::1"], ["198.18.7.1", "[::1]", "::1"], ["198.20.0.1", "::2", "host.example"]),
        (
            ["portal.example.gov.vn"],
            ["PORTAL.example.gov.vn.", "http://portal.example.gov.vn:8080/x"],
            ["example.gov.vn", "a.portal.example.gov.vn"],
        ),
        (
            ["*.example.gov.vn"],
            ["a.example.gov.vn", "https://b.c.example.gov.vn/"],
            ["example.gov.vn", "badexample.gov.vn"],
        ),
    ],
)
def test_allow_list_hosts(entries: list[str], allowed: list[str], refused: list[str]) -> None:
    allow = AllowList.parse(entries)
    for t in allowed:
        assert allow.allows_url(t) if "://" in t else allow.allows_host(t), t
    for t in refused:
        assert not (allow.allows_url(t) if "://" in t else allow.allows_host(t)), t


def test_allow_list_url_prefixes_compare_scheme_host_port_and_whole_path_segments() -> None:
    allow = AllowList.parse(["https://portal.example.gov.vn/dich-vu/"])
    assert allow.allows_url("https://portal.example.gov.vn/dich-vu/")
    assert allow.allows_url("https://portal.example.gov.vn:443/dich-vu/a?b=c")
    for url in (
        "http://portal.example.gov.vn/dich-vu/",  # scheme
        "https://portal.example.gov.vn:8443/dich-vu/",  # port
        "https://portal.example.gov.vn/dich-vu-khac/",  # not a segment of the prefix
        "https://portal.example.gov.vn.evil.example/dich-vu/",  # host
        "https://user:pw@portal.example.gov.vn/dich-vu/",  # userinfo
        "https://portal.example.gov.vn/",
    ):
        assert not allow.allows_url(url), url
    assert not allow.allows_host("portal.example.gov.vn")  # a URL prefix allows only its URLs


@pytest.mark.parametrize(
    "entry", ["", "ftp://x/", "http://u:p@x/", "not a name", "10.0.0.0/33", "10.0.0", "2130706433", "*.1"]
)
def test_allow_list_refuses_entries_it_cannot_read(entry: str) -> None:
    with pytest.raises(ValueError):
        check_entry(entry)


@pytest.mark.parametrize(
    ("header", "module", "want"),
    [
        ("", 0.0, 119.5),  # no header: 120 s, less the offset
        ("10", 0.0, 9.5),
        ("10", 5.0, 5.0),  # the module's when shorter
        ("10", 30.0, 9.5),
        ("0.2", 3.0, 3.0),  # the scrape's less the offset is negative: the module's
    ],
)
def test_timeout_is_blackbox_exporters(header: str, module: float, want: float) -> None:
    headers = {"x-prometheus-scrape-timeout-seconds": header} if header else {}
    assert scrape_timeout(headers, module) == pytest.approx(want)


def test_timeout_header_that_is_not_a_number_is_refused() -> None:
    for bad in ("soon", "nan", "inf"):
        with pytest.raises(ValueError):
            scrape_timeout({"x-prometheus-scrape-timeout-seconds": bad}, 0.0)


def _check(tmp_path: Path, giamsat_yml: str, blackbox_yml: str | None) -> list[str]:
    from agent.config import load_config

    if blackbox_yml is not None:
        (tmp_path / "blackbox.yml").write_text(blackbox_yml)
    cfg = tmp_path / "giamsat.yml"
    cfg.write_text("sites:\n  - {id: tinh, name: T, level: province}\n" + giamsat_yml)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    return [str(p).replace(str(tmp_path) + "/", "") for p in err.value.problems]


def test_config_errors_name_the_file_line_and_key(tmp_path: Path) -> None:
    modules = (
        "modules:\n  tcp: {prober: tcp}\n  web:\n    prober: http\n    http: {proxy_url: 'http://p:3128'}\n"
    )
    section = "collectors:\n  blackbox:\n    config_file: blackbox.yml\n"
    # the module file's own problems, at its own lines, read relative to the configuration's directory
    assert _check(tmp_path, section, modules) == [
        "blackbox.yml:5: modules.web.http.proxy_url: `proxy_url` is not supported by giamsat; remove it or "
        "probe this another way"
    ]
    modules = "modules:\n  tcp: {prober: tcp}\n"
    assert _check(tmp_path, section + "    on_demand: ['not a host']\n", modules) == [
        "giamsat.yml:6: collectors.blackbox.on_demand[0]: 'not a host' is neither a network (CIDR), an address, "
        "a host name nor a URL prefix"
    ]
    targets = "targets:\n  blackbox:\n    - {name: a, site: tinh, module: nope, target: x}\n"
    assert _check(tmp_path, section + targets, modules) == [
        "giamsat.yml:8: targets.blackbox[0].module: no module 'nope' in blackbox.yml"
    ]
    assert _check(tmp_path, section + targets.replace("nope", "tcp"), modules) == [
        "giamsat.yml:8: targets.blackbox[0].target: target 'x' must be host:port"
    ]


def test_ip_addr_hash_is_blackbox_exporters() -> None:
    from collectors.probes.common import ip_hash

    # blackbox_exporter 0.23's probe_ip_addr_hash for a probe of 127.0.0.1 (read off its /probe)
    assert ip_hash("127.0.0.1") == 3668918509.0
    assert ip_hash("::1") != ip_hash("127.0.0.1") and 0 <= ip_hash("::1") < 2**32
