"""TLS and basic auth on a real socket: generated CA, server and client certificates, real handshakes."""

from __future__ import annotations

import http.client
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from exporters.webconfig import WebConfig
from tests.helpers import free_port, stop_process, wait_for
from tests.pki import CA, Pair
from tests.prom import prometheus, query
from tests.unit.test_webconfig import basic
from tests.webserver import serve

HASH = bcrypt.hashpw(b"s3cret-scrape", bcrypt.gensalt(4)).decode()


@dataclass
class PKI:
    dir: Path
    ca: CA
    server: Pair
    client: Pair
    rogue_client: Pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d)
    rogue = CA(d, "rogue CA")
    return PKI(
        d,
        ca,
        ca.issue("server", "localhost", server=True),
        ca.issue("client", "prometheus", server=False),
        rogue.issue("rogue-client", "prometheus", server=False),
    )


def load(pki: PKI, body: str) -> WebConfig:
    p = pki.dir / "web.yml"
    p.write_text(body)
    return WebConfig.load(p)


def client_ctx(
    pki: PKI, cert: Pair | None = None, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.pair.cert))
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def get(
    port: int, ctx: ssl.SSLContext | None, auth: str | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """GET /metrics; headers come back case-insensitive (Go writes Www-Authenticate)."""
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": auth} if auth else {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def refused(port: int, ctx: ssl.SSLContext | None) -> bool:
    """True if the server would not serve this client (handshake or first read fails)."""
    try:
        get(port, ctx)
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError):
        return True
    return False


@pytest.fixture
def tls_only(pki: PKI) -> Iterator[int]:
    wc = load(
        pki,
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n    X-Frame-Options: deny\n",
    )
    with serve(wc) as port:
        yield port


def test_tls_serves_verified_clients_and_sets_headers(pki: PKI, tls_only: int) -> None:
    status, headers, body = get(tls_only, client_ctx(pki))
    assert (status, body) == (200, b"# HELP test_up A test gauge.\n# TYPE test_up gauge\ntest_up 1\n")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "deny"


def test_plain_http_to_tls_port_gets_nothing(tls_only: int) -> None:
    assert refused(tls_only, None)


def test_client_that_distrusts_the_server_cert_fails(pki: PKI, tls_only: int) -> None:
    other = ssl.create_default_context(cafile=str(pki.dir / "rogue-CA.crt"))
    with pytest.raises(ssl.SSLCertVerificationError):
        get(tls_only, other)


def test_min_version_tls13_refuses_tls12_clients(pki: PKI) -> None:
    wc = load(
        pki,
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n  min_version: TLS13\n",
    )
    with serve(wc) as port:
        assert refused(port, client_ctx(pki, max_version=ssl.TLSVersion.TLSv1_2))
        assert get(port, client_ctx(pki))[0] == 200


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_require_and_verify_client_cert(pki: PKI, max_version: ssl.TLSVersion) -> None:
    wc = load(
        pki,
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca.pair.cert}\n",
    )
    with serve(wc) as port:
        assert get(port, client_ctx(pki, pki.client, max_version))[0] == 200
        assert refused(port, client_ctx(pki, None, max_version))
        assert refused(port, client_ctx(pki, pki.rogue_client, max_version))


def test_verify_client_cert_if_given(pki: PKI) -> None:
    wc = load(
        pki,
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {pki.ca.pair.cert}\n",
    )
    with serve(wc) as port:
        assert get(port, client_ctx(pki, pki.client))[0] == 200
        assert get(port, client_ctx(pki))[0] == 200
        assert refused(port, client_ctx(pki, pki.rogue_client))


def test_basic_auth_over_tls_same_401_whatever_was_wrong(pki: PKI) -> None:
    wc = load(
        pki,
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n",
    )
    with serve(wc) as port:
        ctx = client_ctx(pki)
        assert get(port, ctx, basic("prometheus", "s3cret-scrape"))[0] == 200
        answers = [
            get(port, ctx, auth)
            for auth in (
                None,
                basic("prometheus", "wrong"),
                basic("nobody", "s3cret-scrape"),
                "Basic %%%",
            )
        ]
        for status, headers, body in answers:
            assert status == 401
            assert headers["WWW-Authenticate"] == "Basic"
            assert body == answers[0][2]


def test_client_cert_and_basic_auth_together(pki: PKI) -> None:
    wc = load(
        pki,
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca.pair.cert}\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n",
    )
    with serve(wc) as port:
        good = client_ctx(pki, pki.client)
        assert get(port, good, basic("prometheus", "s3cret-scrape"))[0] == 200
        assert get(port, good, basic("prometheus", "nope"))[0] == 401
        assert refused(port, client_ctx(pki))


def test_real_prometheus_scrapes_with_its_tls_config_and_basic_auth(pki: PKI, tmp_path: Path) -> None:
    """Prometheus's own tls_config/basic_auth against this web config: only the right pair gets in."""
    wc = load(
        pki,
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca.pair.cert}\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n",
    )
    (tmp_path / "good-pw").write_text("s3cret-scrape\n")
    (tmp_path / "bad-pw").write_text("guess\n")
    with serve(wc) as port:
        jobs = {
            "good": (True, "good-pw"),
            "wrong_password": (True, "bad-pw"),
            "no_client_cert": (False, "good-pw"),
        }
        config = "global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n"
        for job, (with_cert, pw) in jobs.items():
            tls = f"      ca_file: {pki.ca.pair.cert}\n"
            if with_cert:
                tls += f"      cert_file: {pki.client.cert}\n      key_file: {pki.client.key}\n"
            config += (
                f"  - job_name: {job}\n    scheme: https\n    tls_config:\n{tls}"
                f"    basic_auth:\n      username: prometheus\n      password_file: {tmp_path / pw}\n"
                f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            )
        with prometheus(tmp_path / "prom", config) as url:
            up = wait_for(
                lambda: _up_by_job(url) if len(_up_by_job(url)) == 3 else None, 30, what="3 scrapes"
            )
            assert up == {"good": 1.0, "wrong_password": 0.0, "no_client_cert": 0.0}
            assert float(query(url, 'test_up{job="good"}')[0]["value"][1]) == 1.0


def _up_by_job(url: str) -> dict[str, float]:
    return {r["metric"]["job"]: float(r["value"][1]) for r in query(url, "up")}


def test_the_same_file_serves_node_exporter_and_giamsat_alike(pki: PKI, tmp_path: Path) -> None:
    """Format compatibility with the peer: one web config file, loaded by Debian's node_exporter 1.5
    (exporter-toolkit) and by giamsat, gives the same answers to the same clients."""
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca.pair.cert}\n"
        "  min_version: TLS12\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        f"basic_auth_users:\n  prometheus: '{'$2y$' + HASH[4:]}'\n"
    )
    port = free_port()
    with (tmp_path / "node.log").open("wb") as log:
        node = subprocess.Popen(
            [
                "/usr/bin/prometheus-node-exporter",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.config.file={tmp_path / 'web.yml'}",
                "--collector.disable-defaults",
                "--collector.loadavg",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        good = client_ctx(pki, pki.client)
        wait_for(
            lambda: get(port, good, basic("prometheus", "s3cret-scrape"))[0] == 200, 20, what="node_exporter"
        )
        with serve(WebConfig.load(tmp_path / "web.yml")) as ours:
            for p in (port, ours):
                status, headers, _ = get(p, good, basic("prometheus", "s3cret-scrape"))
                assert status == 200 and headers["X-Frame-Options"] == "deny"
                for auth in (None, basic("prometheus", "nope"), basic("nobody", "s3cret-scrape")):
                    status, headers, _ = get(p, good, auth)
                    assert (status, headers["WWW-Authenticate"]) == (401, "Basic"), p
                assert refused(p, client_ctx(pki))
                assert refused(p, client_ctx(pki, pki.rogue_client))
    finally:
        stop_process(node)
