"""The redactor: every registered secret, in every form it travels in, and any Basic/Bearer credential."""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

import pytest

from agent.kernel import redact as redact_module
from agent.kernel.redact import MASK, redact, redact_value, register_secret
from exporters.remote_write_settings import RemoteWriteSettings


@pytest.fixture(autouse=True)
def no_secrets_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry is process-wide (every config loaded in this process adds to it): start each test
    from an empty one and put the process's back afterwards."""
    monkeypatch.setattr(redact_module, "_forms", set())
    monkeypatch.setattr(redact_module, "_secret_pattern", None)
    monkeypatch.setattr(redact_module, "_pattern", re.compile(redact_module._SCHEME))


def test_each_form_of_a_registered_secret_is_masked() -> None:
    secret = "s3cr3t/+tok=en?"
    register_secret(secret, user="rw-user")
    forms = [
        secret,
        quote(secret, safe=""),
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(secret.encode()).decode().rstrip("="),
        base64.urlsafe_b64encode(secret.encode()).decode(),
        base64.b64encode(b"rw-user:" + secret.encode()).decode(),
    ]
    for form in forms:
        text = f'error: bad credentials "{form}" (quoted back by a proxy)'
        assert form not in redact(text) and MASK in redact(text), form
        assert form not in redact_value(text), form


def test_credentials_after_an_auth_scheme_are_masked_even_if_unknown() -> None:
    text = "401: you sent Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc and basic dXNlcjpwYXNz"
    out = redact(text)
    assert "eyJhbGciOiJIUzI1NiJ9" not in out and "dXNlcjpwYXNz" not in out
    assert out.startswith("401: you sent Authorization: Bearer ")


def test_a_configuration_model_registers_its_secrets_when_built() -> None:
    token = "canary-token-from-a-model-7731"
    RemoteWriteSettings.model_validate({"name": "r", "url": "http://127.0.0.1:1/w", "bearer_token": token})
    assert redact(f"echo {token}") == f"echo {MASK}"
    password = "canary-password-7732"
    RemoteWriteSettings.model_validate(
        {
            "name": "r",
            "url": "http://127.0.0.1:1/w",
            "basic_auth": {"username": "u7732", "password": password},
        }
    )
    pair = base64.b64encode(f"u7732:{password}".encode()).decode()
    assert redact_value(f"x {pair} y") == f"x {MASK} y"


def test_short_or_plain_text_is_left_alone() -> None:
    register_secret("abc")  # too short to mask without masking words
    for text in ("abc abcd public", "remote=basic url=http://x/y", "basic authentication failed"):
        assert redact(text) == text


def test_label_values_from_devices_are_masked_before_being_cut_short() -> None:
    from exporters.exposition import clean_label_value

    community = "canary-community-5521"
    register_secret(community)
    assert clean_label_value(f"Cisco IOS, snmp-server community {community} RO", 256).endswith(f"{MASK} RO")
    # cut after masking: no prefix of the secret survives the length bound
    assert community[:10] not in clean_label_value(f"x{community}", 12)
