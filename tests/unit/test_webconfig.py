"""The web config file: exporter-toolkit format, errors naming file, line and key, and basic auth."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest

from agent.kernel.errors import ConfigError
from exporters.webconfig import WebConfig
from tests.pki import CA

HASH_ALICE = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)).decode()
# exporter-toolkit documents hashes from htpasswd, which writes the $2y$ prefix.
HASH_BOB_2Y = "$2y$" + bcrypt.hashpw(b"builder", bcrypt.gensalt(4)).decode()[4:]


def basic(user: str | bytes, password: str | bytes) -> str:
    u = user.encode() if isinstance(user, str) else user
    p = password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(u + b":" + p).decode()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "web.yml"
    p.write_text(text)
    return p


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        WebConfig.load(path)
    return [str(p) for p in ei.value.problems]


def test_empty_file_means_plain_http_without_auth(tmp_path: Path) -> None:
    wc = WebConfig.load(write(tmp_path, ""))
    assert wc.ssl_context() is None
    assert wc.check_basic_auth(None)
    assert wc.headers == {}


def test_basic_auth_accepts_only_the_right_pair(tmp_path: Path) -> None:
    wc = WebConfig.load(
        write(tmp_path, f"basic_auth_users:\n  alice: '{HASH_ALICE}'\n  bob: '{HASH_BOB_2Y}'\n")
    )
    assert wc.check_basic_auth(basic("alice", "wonderland"))
    assert wc.check_basic_auth(basic("bob", "builder"))
    assert wc.check_basic_auth("basic " + basic("bob", "builder").split()[1])  # scheme is case-insensitive
    for header in [
        None,
        "",
        basic("alice", "builder"),
        basic("bob", "wonderland"),
        basic("mallory", "wonderland"),
        basic("alice", "wonderland\n"),
        basic("alice", "x" * 200),
        basic(b"\xff\xfe", b"\x00"),
        "Basic not-base64!!",
        "Basic " + base64.b64encode(b"alicewonderland").decode(),
        "Bearer abc",
        "Basic",
    ]:
        assert not wc.check_basic_auth(header), header


def test_bcrypt_paid_once_per_credentials(tmp_path: Path) -> None:
    wc = WebConfig.load(write(tmp_path, f"basic_auth_users:\n  alice: '{HASH_ALICE}'\n"))
    for _ in range(5):
        assert wc.check_basic_auth(basic("alice", "wonderland"))
        assert not wc.check_basic_auth(basic("alice", "wrong"))
        assert not wc.check_basic_auth(basic("nobody", "wrong"))
    assert wc.bcrypt_comparisons == 3


def test_headers_follow_the_toolkit_list(tmp_path: Path) -> None:
    wc = WebConfig.load(
        write(
            tmp_path,
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
            "    X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000\n",
        )
    )
    assert wc.headers == {
        "X-Frame-Options": "deny",
        "X-Content-Type-Options": "nosniff",
        "Strict-Transport-Security": "max-age=31536000",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config:\n  cert_file: a.crt\n", "tls_server_config.key_file: missing"),
        ("tls_server_config:\n  key_file: a.key\n", "tls_server_config.cert_file: missing"),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n",
            "tls_server_config.cert_file: cannot read",
        ),
        ("tls_server_config:\n  cert_fil: a.crt\n", "tls_server_config.cert_fil: unknown key"),
        ("tls_server_config:\n  min_version: TLS14\n", "tls_server_config.min_version: Input should be"),
        ("tls_server_config:\n  client_auth_type: Always\n", "tls_server_config.client_auth_type:"),
        (
            "tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "tls_server_config: Value error, cipher_suites is not supported",
        ),
        ("rate_limit: {interval: 1s, burst: 20}\n", "rate_limit is not supported"),
        ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice: not a bcrypt hash"),
        ("basic_auth_users:\n  alice: 12\n", "basic_auth_users.alice: Input should be a valid string"),
        ("basic_auth_users: [alice]\n", "basic_auth_users: Input should be a valid dictionary"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "must be one of deny, sameorigin"),
        ("http_server_config:\n  headers:\n    Server: giamsat\n", "this header cannot be set"),
        ("tls_server_config: [\n", "invalid YAML"),
        ("- a\n- b\n", "must be a YAML mapping"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(write(tmp_path, text))
    assert any(
        str(tmp_path / "web.yml") in p and expected.replace("Value error, ", "") in p for p in found
    ), found


def test_error_carries_the_line(tmp_path: Path) -> None:
    found = problems(write(tmp_path, "# comment\nbasic_auth_users:\n  alice: plain\n"))
    assert found == [
        f"{tmp_path / 'web.yml'}:3: basic_auth_users.alice: not a bcrypt hash; create one with: "
        "htpasswd -nBC 10 '' | tr -d ':\\n' (or python3 -m exporters.webconfig hash-password)"
    ]


def test_secret_hash_never_in_errors(tmp_path: Path) -> None:
    found = problems(write(tmp_path, "basic_auth_users:\n  alice: CANARY-hash-value\n"))
    assert not any("CANARY" in p for p in found)


def test_tls_problems(tmp_path: Path) -> None:
    ca = CA(tmp_path)
    server = ca.issue("server", "localhost", server=True)
    other = ca.issue("other", "localhost", server=True)
    text = (
        f"tls_server_config:\n  cert_file: {server.cert.name}\n  key_file: {other.key.name}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\n  max_version: TLS12\n"
    )
    found = problems(write(tmp_path, text))
    assert any("tls_server_config.key_file" in p and "is not the key of the certificate" in p for p in found)
    assert any("tls_server_config.client_ca_file: missing" in p for p in found)
    assert any("tls_server_config.max_version: must not be lower" in p for p in found)
    text = f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n  client_auth_type: RequireAnyClientCert\n"
    assert any("RequireAnyClientCert is not supported" in p for p in problems(write(tmp_path, text)))
    bad_ca = tmp_path / "bad-ca.pem"
    bad_ca.write_text("not a certificate\n")
    text = (
        f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
        f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {bad_ca}\n"
    )
    assert any(
        "tls_server_config.client_ca_file: not a PEM CA certificate" in p
        for p in problems(write(tmp_path, text))
    )


def test_relative_paths_are_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = CA(tmp_path)
    server = ca.issue("server", "localhost", server=True)
    path = write(
        tmp_path, f"tls_server_config:\n  cert_file: {server.cert.name}\n  key_file: {server.key.name}\n"
    )
    monkeypatch.chdir("/")
    wc = WebConfig.load(path)
    assert wc.ssl_context() is not None


def test_unreadable_paths_are_config_errors(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.yml", tmp_path, Path("web\x00.yml")):
        with pytest.raises(ConfigError) as ei:
            WebConfig.load(path)
        assert "cannot read" in str(ei.value)
