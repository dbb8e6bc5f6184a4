"""remote_write settings: credentials never in the URL (it is logged), and never echoed in errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from exporters.remote_write_settings import RemoteWriteSettings


@pytest.mark.parametrize(
    "url",
    [
        "http://site7:S3cretPw@127.0.0.1:9090/api/v1/write",
        "https://site7@rw.example.vn/api/v1/write",
        "https://:S3cretPw@rw.example.vn/api/v1/write",
    ],
)
def test_userinfo_in_url_is_refused_without_echoing_it(url: str) -> None:
    """Guards secrets hygiene: "remote write started" logs the URL, so a password in it leaked to the
    log; it is refused with a pointer to basic_auth, and the error text does not repeat the URL."""
    with pytest.raises(ValidationError) as err:
        RemoteWriteSettings.model_validate({"name": "central", "url": url})
    text = str(err.value)
    assert "basic_auth" in text
    assert "S3cretPw" not in text and "site7" not in text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9090/api/v1/write",
        "https://rw.example.vn/api/v1/write?extra_label=a@b",
        "http://[::1]:8428/api/v1/write",
    ],
)
def test_plain_urls_are_accepted(url: str) -> None:
    assert RemoteWriteSettings.model_validate({"name": "central", "url": url}).url == url


@pytest.mark.parametrize("url", ["http:///api/v1/write", "http://h:99999/w"])
def test_urls_without_host_or_with_a_bad_port_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="url"):
        RemoteWriteSettings.model_validate({"name": "central", "url": url})
