"""Configuration of remote write (``remote_write:``), apart from the sender so that loading a
configuration does not import the HTTP client."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import ByteSize, ConfigDict, Field, SecretStr, field_validator, model_validator

from agent.kernel.model import CertificateBundle, Duration, Model, ReadableFile, certificate_and_key

#: Why samples are given up on: the ``reason`` of ``giamsat_remote_write_samples_dropped_total``, every
#: one exported from the start at 0 (docs/remote_write.md lists the same, a test checks both).
DROP_REASONS = (
    "buffer_full",  # the buffer reached buffer.max_size: its oldest segments went
    "too_old",  # older than max_sample_age, or refused by the receiver as too old
    "rejected",  # a 4xx other than 429: the receiver will never take the batch
    "disk_full",  # ENOSPC while appending a result to the buffer
    "write_error",  # another error while appending to the buffer
    "corrupt",  # the rest of a buffer segment whose record failed its checksum
    "reload",  # results beyond the hand-over bound while a reload swapped the writers
)

REMOTE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class BasicAuth(Model):
    username: str
    password: SecretStr


class TLSSettings(Model):
    """TLS to the receiver. Without ``ca_file`` the system trust store is used."""

    ca_file: CertificateBundle | None = None
    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = None
    server_name: str | None = Field(default=None, description="name to verify instead of the URL's host")
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _client_certificate(self) -> TLSSettings:
        # loaded here as the sender will load it, so check-config fails where `run` would
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate it belongs to)")
        if self.cert_file is not None:
            certificate_and_key(self.cert_file, self.key_file)
        return self


class BufferSettings(Model):
    """The on-disk buffer under ``<agent.state_dir>/remote_write/<name>/``."""

    max_size: ByteSize = Field(default=ByteSize(1 << 30), description="oldest segments dropped beyond")
    segment_size: ByteSize = Field(default=ByteSize(8 << 20))
    fsync_interval: Duration = 1.0


class RemoteWriteSettings(Model):
    """One remote-write receiver (``remote_write:`` list entry)."""

    # A refused URL may carry a password: never echo input values in validation errors of this model.
    model_config = ConfigDict(hide_input_in_errors=True)

    name: str = Field(pattern=REMOTE_NAME_PATTERN, description="label `remote` and buffer directory name")
    url: str = Field(pattern=r"^https?://")
    remote_timeout: Duration = 30.0
    headers: dict[str, str] = Field(default_factory=dict)
    basic_auth: BasicAuth | None = None
    bearer_token: SecretStr | None = None
    tls: TLSSettings = Field(default_factory=TLSSettings)
    external_labels: dict[str, str] = Field(default_factory=dict)
    max_samples_per_send: int = Field(default=2000, ge=1, le=100_000)
    batch_send_deadline: Duration = 5.0
    min_backoff: Duration = 0.03
    max_backoff: Duration = 5.0
    max_sample_age: Duration | None = Field(
        default=7 * 86400.0, description="drop older samples; keep <= the receiver's out-of-order window"
    )
    backfill_lane: bool = False
    backfill_after: Duration = 60.0
    bandwidth_limit: ByteSize | None = Field(default=None, description="bytes/s of request bodies")
    buffer: BufferSettings = Field(default_factory=BufferSettings)

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, url: str) -> str:
        # The URL is logged and shown in errors; a password in it would leak there (and into the
        # config file, which is not a secret file). The message never repeats the URL.
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ValueError("url is not a valid http(s) URL") from None
        if "@" in parts.netloc:
            raise ValueError(
                "url must not contain a user name or password (user:pass@host); "
                "give them as basic_auth: {username: ..., password_file: ...}"
            )
        if not parts.hostname:
            raise ValueError("url has no host")
        return url

    def model_post_init(self, __context: object) -> None:
        import re

        for k in self.external_labels:
            if not re.match(_LABEL_NAME_PATTERN, k) or k.startswith("__"):
                raise ValueError(f"external_labels: invalid label name {k!r}")
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("give basic_auth or bearer_token, not both")
        if int(self.buffer.segment_size) * 4 > int(self.buffer.max_size):
            raise ValueError("buffer.segment_size must be at most a quarter of buffer.max_size")
        if int(self.buffer.segment_size) < 4096:
            raise ValueError("buffer.segment_size must be at least 4KiB")
