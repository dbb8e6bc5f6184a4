"""giamsat's /probe side by side with Debian's blackbox_exporter, both reading the same blackbox.yml.

Real servers on loopback: HTTP and HTTPS (a CA from tests/pki.py), a line-based TCP server that speaks
an SMTP-like STARTTLS dialogue, and dnsmasq. For each module and target both exporters are asked the
same request; the series sets (names and label sets) must be equal, and the values equal where they do
not depend on timing.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import GIAMSAT, free_port, http_get, stop_process, wait_for
from tests.pki import CA

BLACKBOX = shutil.which("prometheus-blackbox-exporter") or "prometheus-blackbox-exporter"

BLACKBOX_YML = """\
modules:
  http_2xx:
    prober: http
    http:
      preferred_ip_protocol: ip4
  http_2xx_default:
    prober: http
  http_post_2xx:
    prober: http
    timeout: 5s
    http:
      method: POST
      headers:
        Content-Type: application/json
      body: '{{}}'
  http_body_regex:
    prober: http
    http:
      fail_if_body_not_matches_regexp: ["Cong thong tin"]
      fail_if_body_matches_regexp: ["maintenance"]
  http_header_rules:
    prober: http
    http:
      fail_if_header_matches:
        - {{header: Set-Cookie, allow_missing: true, regexp: '.*'}}
      fail_if_header_not_matches:
        - {{header: X-Portal, regexp: '^vn$'}}
  http_no_redirects:
    prober: http
    http:
      no_follow_redirects: true
      valid_status_codes: [302]
  http_version_11:
    prober: http
    http:
      valid_http_versions: ["HTTP/1.1"]
  https_ca:
    prober: http
    http:
      fail_if_not_ssl: true
      tls_config:
        ca_file: {ca}
  https_insecure:
    prober: http
    http:
      fail_if_ssl: true
      tls_config:
        insecure_skip_verify: true
  tcp_connect:
    prober: tcp
  tls_connect:
    prober: tcp
    tcp:
      tls: true
      tls_config:
        ca_file: {ca}
  smtp_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
        - expect: "^220 ([^ ]+) ESMTP (.+)$"
        - send: "EHLO prober\\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO prober\\r"
        - expect: "^250-AUTH"
        - send: "QUIT\\r"
      tls_config:
        ca_file: {ca}
  banner_mismatch:
    prober: tcp
    tcp:
      query_response:
        - expect: "^SSH-2.0-"
  dns_a:
    prober: dns
    dns:
      query_name: wan.huyen.test
      query_type: A
      preferred_ip_protocol: ip4
      validate_answer_rrs:
        fail_if_not_matches_regexp: ["wan.huyen.test.\\t[0-9]+\\tIN\\tA\\t198.18.31.5"]
  dns_a_wrong:
    prober: dns
    dns:
      query_name: wan.huyen.test
      query_type: A
      validate_answer_rrs:
        fail_if_matches_regexp: [".*198.18.31.5"]
  dns_tcp_txt:
    prober: dns
    dns:
      transport_protocol: tcp
      query_name: info.huyen.test
      query_type: TXT
  dns_nxdomain:
    prober: dns
    dns:
      query_name: nothing.huyen.test
      query_type: A
      valid_rcodes: [NXDOMAIN]
  icmp:
    prober: icmp
    icmp:
      preferred_ip_protocol: ip4
  https_system_ca:
    prober: http
  http_ip6_only:
    prober: http
    http: {{preferred_ip_protocol: ip6, ip_protocol_fallback: false}}
  tcp_ip6_only:
    prober: tcp
    tcp: {{preferred_ip_protocol: ip6, ip_protocol_fallback: false}}
  dns_ip6_only:
    prober: dns
    dns: {{preferred_ip_protocol: ip6, ip_protocol_fallback: false, query_name: wan.huyen.test}}
  icmp_ip6_only:
    prober: icmp
    icmp: {{preferred_ip_protocol: ip6, ip_protocol_fallback: false}}
"""

#: Series whose values depend on time or on the run, not on what was probed.
TIMINGS = {
    "probe_duration_seconds",
    "probe_dns_lookup_time_seconds",
    "probe_http_duration_seconds",
    "probe_icmp_duration_seconds",
    "probe_dns_duration_seconds",
}


class _Web(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ok":
            self._send(
                200,
                b"Cong thong tin dien tu: OK",
                {"Last-Modified": "Wed, 21 Oct 2026 07:28:00 GMT", "X-Portal": "vn"},
            )
        elif self.path == "/cookie":
            self._send(200, b"ok", {"Set-Cookie": "a=b", "X-Portal": "vn"})
        elif self.path == "/redirect":
            self._send(302, b"", {"Location": "/ok"})
        elif self.path == "/error":
            self._send(503, b"maintenance")
        elif self.path.startswith("/away/"):  # to another address, on IPv6 loopback
            self._send(302, b"", {"Location": f"http://[::1]:{self.path.rsplit('/', 1)[1]}/ok"})
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self._send(201, b"got " + self.rfile.read(length))


def _serve_http(ctx: ssl.SSLContext | None) -> tuple[http.server.ThreadingHTTPServer, int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Web)
    srv.daemon_threads = True
    if ctx is not None:
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


def _readline(sock: socket.socket | ssl.SSLSocket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        c = sock.recv(1)
        if not c:
            break
        line += c
    return line


def _smtp_session(conn: socket.socket, ctx: ssl.SSLContext) -> None:
    """An SMTP-like STARTTLS dialogue, enough for blackbox's smtp_starttls example."""
    try:
        conn.settimeout(10)
        conn.sendall(b"220 mail.huyen.test ESMTP giamsat-test\r\n")
        _readline(conn)  # EHLO
        conn.sendall(b"250-mail.huyen.test\r\n250-STARTTLS\r\n250 OK\r\n")
        _readline(conn)  # STARTTLS
        conn.sendall(b"220 go ahead\r\n")
        with ctx.wrap_socket(conn, server_side=True) as tls:
            _readline(tls)  # EHLO
            tls.sendall(b"250-mail.huyen.test\r\n250-AUTH PLAIN\r\n250 OK\r\n")
            _readline(tls)  # QUIT
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def _listen(handler: object) -> tuple[socket.socket, int]:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)

    def accept() -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(conn,), daemon=True).start()  # type: ignore[arg-type]

    threading.Thread(target=accept, daemon=True).start()
    return lsock, lsock.getsockname()[1]


def _tls_accept(ctx: ssl.SSLContext) -> object:
    def handle(conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    return handle


def _silent(conn: socket.socket) -> None:
    try:
        conn.settimeout(10)
        conn.sendall(b"hello, this is not ssh\r\n")
        conn.recv(1)
    except OSError:
        pass
    finally:
        conn.close()


def _dnsmasq(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            f"--port={port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            f"--pid-file={tmp / 'dnsmasq.pid'}",
            "--local=/huyen.test/",
            "--host-record=wan.huyen.test,198.18.31.5",
            "--txt-record=info.huyen.test,giamsat",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    q = dns.message.make_query("wan.huyen.test", "A")

    def answers() -> bool:
        dns.query.udp(q, "127.0.0.1", port=port, timeout=0.2)
        return True

    wait_for(answers, 10, what="dnsmasq")
    return proc, port


@dataclass
class Lab:
    giamsat: str
    blackbox: str
    http: int
    https: int
    smtp: int
    tls: int
    banner: int
    dead: int
    dns: int


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("bbparity")
    ca = CA(tmp)
    pair = ca.issue("server", "localhost", server=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pair.cert, pair.key)
    http_srv, http_port = _serve_http(None)
    https_srv, https_port = _serve_http(server_ctx)
    smtp_sock, smtp_port = _listen(lambda c: _smtp_session(c, server_ctx))
    tls_sock, tls_port = _listen(_tls_accept(server_ctx))
    banner_sock, banner_port = _listen(_silent)
    dnsmasq, dns_port = _dnsmasq(tmp)
    bb_yml = tmp / "blackbox.yml"
    bb_yml.write_text(BLACKBOX_YML.format(ca=ca.pair.cert))
    cfg = tmp / "giamsat.yml"
    cfg.write_text(
        textwrap.dedent(
            f"""\
            agent:
              site: tinh
              interval: 1s
              timeout: 5s
              state_dir: {tmp / "state"}
            sites:
              - {{id: tinh, name: "Tỉnh", level: province}}
            collectors:
              host: {{enabled: false}}
              blackbox:
                config_file: blackbox.yml
                on_demand: ["127.0.0.0/8", "localhost"]
            targets:
              blackbox:
                - {{name: portal, site: tinh, module: http_2xx, target: "http://127.0.0.1:{http_port}/ok"}}
            """
        )
    )
    gs_port, bb_port = free_port(), free_port()
    with (tmp / "giamsat.log").open("wb") as gs_log, (tmp / "blackbox.log").open("wb") as bb_log:
        procs = [
            subprocess.Popen(
                [GIAMSAT, "run", "--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{gs_port}"],
                stdout=subprocess.DEVNULL,
                stderr=gs_log,
            ),
            subprocess.Popen(
                [BLACKBOX, f"--config.file={bb_yml}", f"--web.listen-address=127.0.0.1:{bb_port}"],
                stdout=subprocess.DEVNULL,
                stderr=bb_log,
            ),
        ]
    gs, bb = f"http://127.0.0.1:{gs_port}", f"http://127.0.0.1:{bb_port}"
    try:
        wait_for(lambda: http_get(gs + "/-/ready")[0] == 200, 30, what="giamsat ready")
        wait_for(lambda: http_get(bb + "/-/healthy")[0] == 200, 30, what="blackbox_exporter ready")
        yield Lab(gs, bb, http_port, https_port, smtp_port, tls_port, banner_port, free_port(), dns_port)
    finally:
        for p in procs:
            stop_process(p)
        stop_process(dnsmasq)
        for s in (smtp_sock, tls_sock, banner_sock):
            s.close()
        for srv in (http_srv, https_srv):
            srv.shutdown()
            srv.server_close()


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _series(text: str) -> Series:
    out: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _probe(base: str, module: str, target: str) -> Series:
    from urllib.parse import urlencode

    params = {"module": module, "target": target}
    if " hostname=" in target:  # a case that also sends the hostname parameter
        params["target"], _, params["hostname"] = target.partition(" hostname=")
    status, body, _ = http_get(
        f"{base}/probe?{urlencode(params)}",
        timeout=15,
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"},
    )
    assert status == 200, body
    return _series(body)


def _cases(lab: Lab) -> list[tuple[str, str]]:
    h = f"127.0.0.1:{lab.http}"
    return [
        ("http_2xx", f"http://{h}/ok"),  # targets.blackbox: from the background result
        ("http_2xx", f"http://{h}/error"),
        ("http_2xx", h + "/redirect"),  # no scheme: http://
        ("http_2xx", f"http://127.0.0.1:{lab.dead}/"),  # refused
        ("http_2xx_default", f"http://localhost:{lab.http}/ok"),  # IPv6 preferred, falls back to IPv4
        ("http_post_2xx", f"http://{h}/post"),
        ("http_body_regex", f"http://{h}/ok"),
        ("http_body_regex", f"http://{h}/error"),
        ("http_header_rules", f"http://{h}/ok"),
        ("http_header_rules", f"http://{h}/cookie"),
        ("http_no_redirects", f"http://{h}/redirect"),
        ("http_version_11", f"http://{h}/ok"),
        ("https_ca", f"https://localhost:{lab.https}/ok"),
        ("https_insecure", f"https://127.0.0.1:{lab.https}/ok"),
        ("https_ca", f"https://127.0.0.1:{lab.https}/ok hostname=localhost"),  # Host header and SNI
        ("tcp_connect", f"127.0.0.1:{lab.http}"),
        ("tcp_connect", f"127.0.0.1:{lab.dead}"),
        ("tls_connect", f"localhost:{lab.tls}"),
        ("smtp_starttls", f"localhost:{lab.smtp}"),
        ("banner_mismatch", f"127.0.0.1:{lab.banner}"),
        ("dns_a", f"127.0.0.1:{lab.dns}"),
        ("dns_a_wrong", f"127.0.0.1:{lab.dns}"),
        ("dns_tcp_txt", f"127.0.0.1:{lab.dns}"),
        ("dns_nxdomain", f"127.0.0.1:{lab.dns}"),
        ("icmp", "127.0.0.1"),
        ("https_system_ca", f"https://127.0.0.1:{lab.https}/ok"),  # certificate not trusted
        ("tls_connect", f"127.0.0.1:{lab.http}"),  # no TLS there
        ("dns_tcp_txt", f"127.0.0.1:{lab.dead}"),  # refused
        # no address of the family asked for: a resolve failure, without any lookup sent anywhere
        ("http_ip6_only", f"http://{h}/ok"),
        ("tcp_ip6_only", h),
        ("dns_ip6_only", f"127.0.0.1:{lab.dns}"),
        ("icmp_ip6_only", "127.0.0.1"),
    ]


def test_same_series_and_values_as_blackbox_exporter_with_the_same_blackbox_yml(lab: Lab) -> None:
    wait_for(
        lambda: _probe(lab.giamsat, "http_2xx", f"http://127.0.0.1:{lab.http}/ok"),
        15,
        what="first background result",
    )
    mismatches: list[str] = []
    for module, target in _cases(lab):
        ours, theirs = _probe(lab.giamsat, module, target), _probe(lab.blackbox, module, target)
        case = f"{module} {target}"
        if set(ours) != set(theirs):
            only_ours = sorted(_fmt(k) for k in set(ours) - set(theirs))
            only_theirs = sorted(_fmt(k) for k in set(theirs) - set(ours))
            mismatches.append(f"{case}: only giamsat {only_ours}; only blackbox {only_theirs}")
            continue
        for key, value in theirs.items():
            if key[0] in TIMINGS:
                continue
            if ours[key] != value:
                mismatches.append(f"{case}: {_fmt(key)} giamsat {ours[key]} blackbox {value}")
    assert mismatches == [], "\n".join(mismatches)


def _fmt(key: tuple[str, frozenset[tuple[str, str]]]) -> str:
    name, labels = key
    return name + "{" + ",".join(f"{k}={v!r}" for k, v in sorted(labels)) + "}"


def test_probe_success_agrees_on_every_case(lab: Lab) -> None:
    """The outcome a dashboard shows (kept apart so a series difference cannot hide it)."""
    outcomes = {}
    for module, target in _cases(lab):
        ours = _probe(lab.giamsat, module, target)[("probe_success", frozenset())]
        theirs = _probe(lab.blackbox, module, target)[("probe_success", frozenset())]
        outcomes[(module, target)] = (ours, theirs)
    assert {k: v for k, v in outcomes.items() if v[0] != v[1]} == {}
    assert (0.0, 0.0) in outcomes.values() and (1.0, 1.0) in outcomes.values()


def test_targets_outside_the_allow_list_are_refused_and_not_contacted(lab: Lab) -> None:
    from urllib.parse import urlencode

    for module, target in [
        ("http_2xx", "http://198.51.100.7/"),  # TEST-NET-2: never sent, refused before
        ("tcp_connect", "example.invalid:22"),
        ("icmp", "10.0.0.1"),
    ]:
        status, body, _ = http_get(f"{lab.giamsat}/probe?{urlencode({'module': module, 'target': target})}")
        assert (status, body.strip()) == (403, "target is not in collectors.blackbox.on_demand")
    status, body, _ = http_get(f"{lab.giamsat}/probe?module=nope&target=127.0.0.1")
    assert (status, body.strip()) == (400, 'Unknown module "nope"')  # blackbox_exporter's answer
    status, body, _ = http_get(f"{lab.giamsat}/probe?module=http_2xx")
    assert (status, body.strip()) == (400, "Target parameter is missing")


def test_timeout_comes_from_the_scrape_header(lab: Lab) -> None:
    """A blackholed-by-silence TCP peer: the probe gives up at the scrape's timeout less 0.5 s."""
    from urllib.parse import urlencode

    status, body, _ = http_get(
        f"{lab.giamsat}/probe?{urlencode({'module': 'banner_mismatch', 'target': f'127.0.0.1:{lab.tls}'})}",
        timeout=15,
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
    )
    assert status == 200
    series = _series(body)
    assert series[("probe_success", frozenset())] == 0
    assert series[("probe_duration_seconds", frozenset())] < 1.5  # the header's budget, not 120 s


def test_prometheus_with_the_readme_scrape_job_scrapes_giamsat_unchanged(lab: Lab, tmp_path: Path) -> None:
    """blackbox_exporter's README job, only the probed URLs and the exporter's address changed."""
    from tests.prom import prometheus, query

    address = lab.giamsat.removeprefix("http://")
    ok, down = f"http://127.0.0.1:{lab.http}/ok", f"http://127.0.0.1:{lab.http}/error"
    config = textwrap.dedent(
        f"""\
        global:
          scrape_interval: 1s
          scrape_timeout: 1s
        scrape_configs:
          - job_name: 'blackbox'
            metrics_path: /probe
            params:
              module: [http_2xx]  # Look for a HTTP 200 response.
            static_configs:
              - targets:
                - {ok}
                - {down}
            relabel_configs:
              - source_labels: [__address__]
                target_label: __param_target
              - source_labels: [__param_target]
                target_label: instance
              - target_label: __address__
                replacement: {address}  # The blackbox exporter's real hostname:port.
        """
    )
    with prometheus(tmp_path / "prom", config) as prom:

        def both_scraped() -> list[dict[str, object]] | None:
            result = query(prom, 'probe_success{job="blackbox"}')
            return result if len(result) == 2 else None

        result = wait_for(both_scraped, 30, what="two probe_success series in Prometheus")
        by_instance = {r["metric"]["instance"]: r["value"][1] for r in result}
        assert by_instance == {ok: "1", down: "0"}
        # exactly blackbox's labels: job and instance from Prometheus, nothing of giamsat's
        labels = {k for r in result for k in r["metric"]}
        assert labels == {"__name__", "job", "instance"}
        assert {r["value"][1] for r in query(prom, 'up{job="blackbox"}')} == {"1"}
        phases = query(prom, 'probe_http_duration_seconds{job="blackbox"}')
        assert {r["metric"]["phase"] for r in phases} == {
            "resolve",
            "connect",
            "tls",
            "processing",
            "transfer",
        }


def test_an_on_demand_probe_is_not_redirected_outside_the_allow_list(lab: Lab) -> None:
    """The allow-list has 127.0.0.0/8 and localhost; a redirect to [::1] is not followed (blackbox
    follows it: it has no allow-list)."""
    listener = socket.socket(socket.AF_INET6)
    listener.bind(("::1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    v6_port = listener.getsockname()[1]
    try:
        target = f"http://127.0.0.1:{lab.http}/away/{v6_port}"
        ours = _probe(lab.giamsat, "http_2xx", target)
        with pytest.raises(TimeoutError):
            listener.accept()[0].close()  # giamsat never connected there
        assert ours[("probe_success", frozenset())] == 0
        assert ours[("probe_http_status_code", frozenset())] == 302
        _probe(lab.blackbox, "http_2xx", target)
        listener.accept()[0].close()  # blackbox_exporter did
    finally:
        listener.close()


def test_configured_target_by_name_and_debug_output(lab: Lab) -> None:
    """``module=blackbox&target=NAME`` (what ``giamsat inventory export-sd`` writes) serves the same
    result as ``module=http_2xx&target=URL``; ``debug=true`` shows the series and the module."""
    by_name = _probe(lab.giamsat, "blackbox", "portal")
    by_url = _probe(lab.giamsat, "http_2xx", f"http://127.0.0.1:{lab.http}/ok")
    assert set(by_name) == set(by_url) and by_name[("probe_success", frozenset())] == 1
    assert http_get(f"{lab.giamsat}/probe?module=blackbox&target=nope")[0] == 404
    status, body, _ = http_get(
        f"{lab.giamsat}/probe?module=tcp_connect&target=127.0.0.1:{lab.http}&debug=true"
    )
    assert status == 200
    assert "probe_success 1.0" in body and "Module configuration:" in body and "prober: tcp" in body


def test_hostile_requests_get_a_clear_status_never_a_server_error(lab: Lab) -> None:
    from urllib.parse import quote

    targets = [
        "127.0.0.1:99999",
        "[::1",
        "127.0.0.1:0",
        "http://127.0.0.1:0/",
        "http://user:pw@127.0.0.1/",
        "127.0.0.1\r\nHost: evil",
        "ⅷ.example",
        "%00",
        "127.0.0.1:" + "9" * 300,
        "http://[::ffff:127.0.0.1]:1/",
        "0x7f.1",
    ]
    for module in ("http_2xx", "tcp_connect", "dns_a", "icmp"):
        for target in targets:
            status, body, _ = http_get(
                f"{lab.giamsat}/probe?module={module}&target={quote(target)}", timeout=15
            )
            assert status in (200, 400, 403), (module, target, status, body)
            assert "Traceback" not in body
    assert http_get(f"{lab.giamsat}/-/healthy")[0] == 200


def test_an_agent_with_only_on_demand_probing_serves_probe(lab: Lab, tmp_path: Path) -> None:
    """No targets.blackbox at all: the collector still starts, to answer on-demand requests."""
    (tmp_path / "blackbox.yml").write_text("modules:\n  tcp_connect: {prober: tcp}\n")
    cfg = tmp_path / "giamsat.yml"
    cfg.write_text(
        textwrap.dedent(
            f"""\
            agent: {{state_dir: {tmp_path / "state"}}}
            sites: [{{id: tinh, name: T, level: province}}]
            collectors:
              host: {{enabled: false}}
              blackbox: {{config_file: blackbox.yml, on_demand: [127.0.0.1/32]}}
            """
        )
    )
    port = free_port()
    with (tmp_path / "agent.log").open("wb") as log:
        proc = subprocess.Popen(
            [GIAMSAT, "run", "--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 20, what="agent ready")
        assert _probe(url, "tcp_connect", f"127.0.0.1:{lab.http}")[("probe_success", frozenset())] == 1
        assert http_get(f"{url}/probe?module=tcp_connect&target=127.0.0.2:{lab.http}")[0] == 403
    finally:
        stop_process(proc)


def test_module_defaults_to_http_2xx_as_in_blackbox_exporter(lab: Lab) -> None:
    from urllib.parse import quote

    target = quote(f"http://127.0.0.1:{lab.http}/ok")
    status, body, _ = http_get(f"{lab.giamsat}/probe?target={target}")
    assert status == 200 and _series(body)[("probe_success", frozenset())] == 1
