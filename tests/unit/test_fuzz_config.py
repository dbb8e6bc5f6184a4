"""Fuzzing the config and web-config loaders: any input is a clean ConfigError or a valid config.

Structures are drawn from the real key vocabulary (so the fuzzer reaches deep into the models) mixed
with random keys and values; raw text covers what YAML itself can throw. Bounded by max_examples.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.config import load_config
from agent.kernel.errors import ConfigError
from collectors import COLLECTORS
from exporters.webconfig import WebConfig

KEYS = [
    "agent", "sites", "sites_file", "collectors", "targets", "listen_address", "site", "interval",
    "timeout", "state_dir", "stale_after_intervals", "max_concurrent_scrapes", "max_label_length",
    "web_config_file", "id", "name", "level", "parent", "uplinks", "enabled", "parts", "systemd_units",
    "address", "port", "auth", "auths", "modules", "community", "community_file", "community_env",
    "password", "password_file", "password_env", "username", "version", "province", "commune",
    *COLLECTORS,
]  # fmt: skip
WEB_KEYS = [
    "tls_server_config", "http_server_config", "basic_auth_users", "cert_file", "key_file",
    "client_ca_file", "client_auth_type", "min_version", "max_version", "headers", "http2",
    "X-Frame-Options", "X-Content-Type-Options", "RequireAndVerifyClientCert", "TLS13", "rate_limit",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "30s",
            "5m",
            "0s",
            "-1s",
            "1h30m",
            ":9469",
            "127.0.0.1:0",
            "[::1]:99999",
            "commune",
            "a\x00b",
            "/",
            "/etc/passwd",
            "/proc/self/status",
            "x" * 300,
            "$2b$04$" + "a" * 53,
            "TLS12",
            "NoClientCert",
        ]
    ),
)


def structures(keys: list[str]) -> st.SearchStrategy[Any]:
    key = st.one_of(st.sampled_from(keys), st.text(max_size=10))
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(key, children, max_size=5)
        ),
        max_leaves=25,
    )


def top(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(st.dictionaries(st.sampled_from(keys), structures(keys), max_size=5), structures(keys))


paths = st.one_of(
    st.sampled_from(["a\x00b", "/", ".", "sites.csv", "/etc/passwd", "/proc/self/status", "/dev/null"]),
    st.text(max_size=12),
)


def leaf() -> st.SearchStrategy[Any]:
    return st.one_of(scalars, structures(KEYS))


def shaped_config() -> st.SearchStrategy[Any]:
    """Follows the file's skeleton (sections, site and target entries) with fuzzed leaves."""
    agent = st.fixed_dictionaries(
        {},
        optional={k: leaf() for k in ["listen_address", "site", "interval", "timeout", "state_dir",
                                      "max_label_length", "stale_after_intervals"]}
        | {"web_config_file": st.one_of(paths, leaf())},
    )  # fmt: skip
    site = st.fixed_dictionaries(
        {"id": st.one_of(st.sampled_from(["a", "b"]), leaf()), "name": leaf()},
        optional={"level": st.one_of(st.sampled_from(["province", "district", "commune"]), leaf()),
                  "parent": st.one_of(st.sampled_from(["a", "b"]), leaf()), "uplinks": leaf()},
    )  # fmt: skip
    kinds = {k: leaf() for k in COLLECTORS}
    targets = {
        k: st.lists(st.dictionaries(st.sampled_from(KEYS), leaf(), max_size=4), max_size=3)
        for k in COLLECTORS
    }
    return st.fixed_dictionaries(
        {},
        optional={
            "agent": agent,
            "sites": st.lists(site, max_size=4),
            "sites_file": st.one_of(paths, leaf()),
            "collectors": st.fixed_dictionaries({}, optional=kinds),
            "targets": st.fixed_dictionaries({}, optional=targets),
        },
    )


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _write(text: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="gs-fuzz-"))
    p = d / "config.yml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    return p


def _load_cleanly(text: str) -> None:
    path = _write(text)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must say what is wrong"
        for p in exc.problems:
            assert str(path) in p.file or p.file.endswith((".csv", ".yml", ".yaml")) or p.file
    finally:
        path.unlink()
        path.parent.rmdir()


@FUZZ
@given(st.one_of(top(KEYS), shaped_config()))
@example({"sites_file": "a\x00b"})  # escaped as ValueError from read_sites_csv before the fix
@example({"agent": {"state_dir": "a\x00b", "web_config_file": "\x00"}})
def test_config_structures_give_config_error_or_config(data: Any) -> None:
    _load_cleanly(yaml.safe_dump(data, allow_unicode=True))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200))
def test_config_raw_text_gives_config_error_or_config(text: str) -> None:
    _load_cleanly(text)


@FUZZ
@given(top(WEB_KEYS))
@example({"tls_server_config": {"cert_file": "/etc/passwd", "key_file": "/etc/passwd",
          "client_auth_type": "VerifyClientCertIfGiven", "client_ca_file": "x\x00"}})  # fmt: skip
def test_web_config_structures_give_config_error_or_config(data: Any) -> None:
    path = _write(yaml.safe_dump(data, allow_unicode=True))
    try:
        WebConfig.load(path)
    except ConfigError as exc:
        assert exc.problems
    finally:
        path.unlink()
        path.parent.rmdir()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200))
def test_web_config_raw_text(text: str) -> None:
    path = _write(text)
    try:
        WebConfig.load(path)
    except ConfigError as exc:
        assert exc.problems
    finally:
        path.unlink()
        path.parent.rmdir()


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=120), st.binary(max_size=80).map(lambda b: "Basic " + b.hex())))
def test_basic_auth_header_never_raises(header: str | None) -> None:
    assert WEB.check_basic_auth(header) is False


WEB = WebConfig.load(_write("basic_auth_users:\n  u: $2b$04$" + "a" * 53 + "\n"))
