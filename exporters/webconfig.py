"""TLS, basic auth and response headers for the HTTP endpoint, from a ``--web.config.file``.

The file uses the Prometheus exporter-toolkit format (docs/web-configuration.md in
prometheus/exporter-toolkit), so operators reuse the files and habits they already have for
node_exporter and Prometheus itself::

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file, as in the toolkit
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12
    http_server_config:
      headers:
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

Differences from the toolkit, refused with a clear error rather than silently ignored: inline
``cert``/``key``/``client_ca``, ``cipher_suites``, ``curve_preferences``, ``client_allowed_sans``,
``rate_limit`` and ``client_auth_type: RequireAnyClientCert`` (Python's ``ssl`` cannot require a client
certificate without verifying it). ``RequestClientCert`` verifies nothing in the toolkit either, so it
behaves like ``NoClientCert``. ``http2`` is accepted and ignored (the endpoint speaks HTTP/1.1).

Basic auth answers the same 401 whatever was wrong (unknown user, bad password, malformed header), spends
one bcrypt comparison even for an unknown user so timing does not reveal which users exist, and caches
the outcome per (user, hash, password) under a keyed digest, so a Prometheus scraping every 15 s pays
bcrypt once, not on every scrape, and no plain password is kept in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import ssl
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from agent.config import line_of, loc_of, problems_from_validation, read_yaml_mapping
from agent.errors import ConfigError, ConfigProblem
from agent.model import Model

#: Value of the ``WWW-Authenticate`` header to send with every 401, as exporter-toolkit does.
WWW_AUTHENTICATE = "Basic"

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]

_TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# The headers exporter-toolkit lets a config set, with their allowed values where the toolkit restricts
# them (None: any value). Same list, so a file valid there is valid here and the reverse.
_ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_UNSUPPORTED_TLS_KEYS = {
    "cert": "give the certificate as cert_file",
    "key": "give the key as key_file",
    "client_ca": "give the client CA as client_ca_file",
    "cipher_suites": "the OpenSSL defaults for TLS 1.2 and 1.3 are used; remove the key",
    "curve_preferences": "the OpenSSL defaults are used; remove the key",
    "client_allowed_sans": "issue client certificates from a dedicated CA instead",
}

_BCRYPT_RE = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
_CACHE_SIZE = 1024
_BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (Go) or refuses (pyca/bcrypt 5) longer passwords


class _Strict(Model):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TLSServerConfig(_Strict):
    """``tls_server_config``: the server certificate and, optionally, client certificate checking."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    prefer_server_cipher_suites: bool = True

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        if v is not None and "\0" in v:
            raise ValueError("a file name cannot contain a NUL character")
        return v

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, hint in _UNSUPPORTED_TLS_KEYS.items():
                if key in data:
                    raise ValueError(f"{key} is not supported by giamsat: {hint}")
        return data


class HTTPServerConfig(_Strict):
    """``http_server_config``: extra response headers (and ``http2``, accepted for compatibility)."""

    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v


class WebConfigFile(_Strict):
    """The whole web config file."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, SecretStr] = Field(default_factory=dict)

    @field_validator("basic_auth_users", "http_server_config", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        # A section whose entries are all commented out is YAML null; Go's yaml reads it as empty too.
        return {} if v is None else v

    @model_validator(mode="before")
    @classmethod
    def _refuse_rate_limit(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rate_limit" in data:
            raise ValueError(
                "rate_limit is not supported by giamsat: the agent already bounds concurrent scrapes "
                "(agent.max_concurrent_scrapes); remove the key"
            )
        return data


@dataclass
class _AuthCache:
    """Bounded map of keyed digests of (user, hash, password) to the bcrypt outcome."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    entries: OrderedDict[bytes, bool] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # bcrypt is deliberately CPU-heavy: one comparison at a time, as exporter-toolkit does, so a flood
    # of bad passwords costs one core, not all of them.
    bcrypt_lock: threading.Lock = field(default_factory=threading.Lock)
    misses: int = 0

    def digest(self, user: bytes, hashed: bytes, password: bytes) -> bytes:
        mac = hmac.new(self.key, digestmod=hashlib.sha256)
        for part in (user, hashed, password):
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    def get(self, k: bytes) -> bool | None:
        with self.lock:
            ok = self.entries.get(k)
            if ok is not None:
                self.entries.move_to_end(k)
            return ok

    def put(self, k: bytes, ok: bool) -> None:
        with self.lock:
            self.entries[k] = ok
            self.entries.move_to_end(k)
            while len(self.entries) > _CACHE_SIZE:
                self.entries.popitem(last=False)


class WebConfig:
    """A validated web config: TLS context, basic-auth check and response headers for the endpoint.

    Use ``WebConfig.load(path)`` (raises ``ConfigError``) or ``WebConfig.disabled()`` for plain HTTP
    without auth.
    """

    def __init__(
        self,
        path: Path | None,
        model: WebConfigFile,
        context: ssl.SSLContext | None,
        dummy_hash: bytes,
    ) -> None:
        self.path = path
        self.model = model
        self._context = context
        self._users: dict[bytes, bytes] = {
            u.encode("utf-8"): h.get_secret_value().encode("ascii") for u, h in model.basic_auth_users.items()
        }
        self._dummy_hash = dummy_hash
        self._cache = _AuthCache()
        self.headers: dict[str, str] = dict(model.http_server_config.headers)

    @classmethod
    def disabled(cls) -> WebConfig:
        """No TLS, no auth, no extra headers: what the endpoint does without ``--web.config.file``."""
        return cls(None, WebConfigFile(), None, b"")

    @classmethod
    def load(cls, path: str | Path) -> WebConfig:
        """Read and check a web config file; every problem is reported with file, line and key."""
        path = Path(path)
        file = str(path)
        data, root = read_yaml_mapping(path)
        try:
            model = WebConfigFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(problems_from_validation(exc, file, root)) from None

        problems: list[ConfigProblem] = []

        def problem(key: str, message: str) -> None:
            problems.append(ConfigProblem(file, key, message, line_of(root, loc_of(key))))

        for name, value in model.http_server_config.headers.items():
            key = f"http_server_config.headers.{name}"
            if name not in _ALLOWED_HEADERS:
                problem(key, f"this header cannot be set; allowed: {', '.join(sorted(_ALLOWED_HEADERS))}")
                continue
            allowed = _ALLOWED_HEADERS[name]
            if allowed is not None and value not in allowed:
                problem(key, f"must be one of {', '.join(allowed)}")
            if any(c in value for c in "\r\n\0"):
                problem(key, "header values cannot contain line breaks")

        costs = [10]
        for user, hashed in model.basic_auth_users.items():
            key = f"basic_auth_users.{user}"
            if not user or ":" in user:
                problem(key, "a user name must be non-empty and cannot contain ':' (basic auth splits on it)")
            m = _BCRYPT_RE.match(hashed.get_secret_value())
            if m is None or not 4 <= int(m.group(1)) <= 31:
                problem(
                    key,
                    "not a bcrypt hash; create one with: htpasswd -nBC 10 '' | tr -d ':\\n' "
                    "(or python3 -m exporters.webconfig hash-password)",
                )
            else:
                costs.append(int(m.group(1)))

        context = None
        tls = model.tls_server_config
        if tls is not None:
            context = _build_context(tls, path.parent, problem)
        if problems:
            raise ConfigError(problems)
        # An unknown user still costs one bcrypt comparison (against this hash of a random password,
        # at the highest configured cost) so response time does not tell which user names exist.
        dummy = b""
        if model.basic_auth_users:
            import bcrypt  # only with basic auth configured: a plain agent never loads the extension

            dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(max(costs)))
        return cls(path, model, context, dummy)

    @property
    def tls_enabled(self) -> bool:
        return self._context is not None

    @property
    def auth_required(self) -> bool:
        return bool(self._users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context to wrap the listening socket with, or None for plain HTTP."""
        return self._context

    def check_basic_auth(self, authorization_header: str | None) -> bool:
        """True if no users are configured or the ``Authorization`` header holds valid credentials.

        On False answer 401 with ``WWW-Authenticate: Basic`` and nothing else: the same response whatever
        was wrong.
        """
        if not self._users:
            return True
        creds = _parse_basic(authorization_header)
        if creds is None:
            return False
        user, password = creds
        hashed = self._users.get(user)
        valid_user = hashed is not None
        if hashed is None:
            hashed = self._dummy_hash
        k = self._cache.digest(user, hashed, password)
        ok = self._cache.get(k)
        if ok is None:
            with self._cache.bcrypt_lock:
                self._cache.misses += 1
                ok = _bcrypt_check(password, hashed)
            self._cache.put(k, ok)
        return ok and valid_user

    @property
    def bcrypt_comparisons(self) -> int:
        """How many bcrypt comparisons were paid (cache misses); for tests and self-metrics."""
        return self._cache.misses


def _bcrypt_check(password: bytes, hashed: bytes) -> bool:
    import bcrypt

    if len(password) > _BCRYPT_MAX_PASSWORD:
        # pyca/bcrypt 5 raises on these; still spend the time so length does not show in timing.
        bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed)
        return False
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user, password


def _build_context(tls: TLSServerConfig, base: Path, problem: Any) -> ssl.SSLContext | None:
    key = "tls_server_config"
    if not tls.cert_file:
        problem(f"{key}.cert_file", "missing: TLS needs cert_file and key_file")
    if not tls.key_file:
        problem(f"{key}.key_file", "missing: TLS needs cert_file and key_file")
    if tls.client_auth_type == "RequireAnyClientCert":
        problem(
            f"{key}.client_auth_type",
            "RequireAnyClientCert is not supported (it accepts any certificate without checking it); "
            "use RequireAndVerifyClientCert with client_ca_file",
        )
    needs_ca = tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
    if needs_ca and not tls.client_ca_file:
        problem(f"{key}.client_ca_file", f"missing: client_auth_type {tls.client_auth_type} needs it")
    if tls.client_ca_file and not needs_ca:
        problem(
            f"{key}.client_auth_type",
            "client_ca_file is set but client certificates are not verified; "
            "set client_auth_type: RequireAndVerifyClientCert",
        )
    lo, hi = _TLS_VERSIONS[tls.min_version], _TLS_VERSIONS[tls.max_version]
    if lo > hi:
        problem(f"{key}.max_version", "must not be lower than min_version")
    if not tls.cert_file or not tls.key_file:
        return None

    def resolve(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else base / q

    cert, keyf = resolve(tls.cert_file), resolve(tls.key_file)
    ok = True
    for name, p in (("cert_file", cert), ("key_file", keyf)):
        if not p.is_file():
            problem(f"{key}.{name}", f"cannot read {p}: no such file")
            ok = False
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = lo
    ctx.maximum_version = hi
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if ok:
        try:
            ctx.load_cert_chain(cert, keyf)
        except PermissionError:
            problem(f"{key}.key_file", f"permission denied reading {keyf} or {cert}")
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                problem(f"{key}.key_file", f"{keyf} is not the key of the certificate in {cert}")
            else:
                problem(f"{key}.cert_file", f"cannot load certificate/key ({exc.reason or 'bad PEM'})")
    if needs_ca and tls.client_ca_file:
        ca = resolve(tls.client_ca_file)
        try:
            ctx.load_verify_locations(cafile=ca)
        except FileNotFoundError:
            problem(f"{key}.client_ca_file", f"cannot read {ca}: no such file")
        except PermissionError:
            problem(f"{key}.client_ca_file", f"permission denied reading {ca}")
        except ssl.SSLError as exc:
            problem(f"{key}.client_ca_file", f"not a PEM CA certificate ({exc.reason or 'bad PEM'})")
        ctx.verify_mode = (
            ssl.CERT_REQUIRED if tls.client_auth_type.startswith("Require") else ssl.CERT_OPTIONAL
        )
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _hash_password_main(argv: list[str]) -> int:
    """``python3 -m exporters.webconfig hash-password [--cost N]``: print a bcrypt hash for the config."""
    import getpass

    import bcrypt

    cost = 10
    if len(argv) >= 2 and argv[0] == "--cost":
        cost = int(argv[1])
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    data = password.encode("utf-8")
    if not data or len(data) > _BCRYPT_MAX_PASSWORD:
        print(f"password must be 1 to {_BCRYPT_MAX_PASSWORD} bytes", file=sys.stderr)
        return 1
    print(bcrypt.hashpw(data, bcrypt.gensalt(cost)).decode("ascii"))
    return 0


if __name__ == "__main__":  # pragma: no cover - thin CLI
    if sys.argv[1:2] != ["hash-password"]:
        print("usage: python3 -m exporters.webconfig hash-password [--cost N] < password", file=sys.stderr)
        sys.exit(2)
    sys.exit(_hash_password_main(sys.argv[2:]))
