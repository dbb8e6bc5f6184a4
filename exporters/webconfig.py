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
import secrets
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

#: Value of the ``WWW-Authenticate`` header to send with every 401, as exporter-toolkit does.
WWW_AUTHENTICATE = "Basic"

_CACHE_SIZE = 1024
_BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (Go) or refuses (pyca/bcrypt 5) longer passwords


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
        users: dict[bytes, bytes],
        headers: dict[str, str],
        context: ssl.SSLContext | None,
        dummy_hash: bytes,
    ) -> None:
        self.path = path
        self._context = context
        self._users = users
        self._dummy_hash = dummy_hash
        self._cache = _AuthCache()
        self.headers = headers

    @classmethod
    def disabled(cls) -> WebConfig:
        """No TLS, no auth, no extra headers: what the endpoint does without ``--web.config.file``."""
        return cls(None, {}, {}, None, b"")

    @classmethod
    def load(cls, path: str | Path) -> WebConfig:
        """Read and check a web config file (raises ``ConfigError`` naming file, line and key)."""
        from exporters.webconfig_file import read_web_config  # the schema: only when a file is given

        path = Path(path)
        checked = read_web_config(path)
        # An unknown user still costs one bcrypt comparison (against this hash of a random password,
        # at the highest configured cost) so response time does not tell which user names exist.
        dummy = b""
        if checked.users:
            import bcrypt  # only with basic auth configured: a plain agent never loads the extension

            dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(checked.max_bcrypt_cost))
        return cls(path, checked.users, checked.headers, checked.context, dummy)

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
