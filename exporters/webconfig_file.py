"""The web config file's schema and checks (exporter-toolkit format; see ``exporters.webconfig``).

Kept apart from ``exporters.webconfig`` so an agent started without ``--web.config.file`` never builds
these models: every pydantic model costs resident memory, and most agents run without a web config.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from agent.kernel.errors import ConfigError, ConfigProblem
from agent.kernel.model import Model
from agent.kernel.yamlfile import line_of, loc_of, problems_from_validation, read_yaml_mapping

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


@dataclass(frozen=True)
class CheckedWebConfig:
    """What the endpoint needs from a valid file: users with their bcrypt hashes, headers, TLS."""

    users: dict[bytes, bytes]
    headers: dict[str, str]
    context: ssl.SSLContext | None
    max_bcrypt_cost: int


def read_web_config(path: Path) -> CheckedWebConfig:
    """Read and check a web config file; every problem is reported with file, line and key."""
    file = str(path)
    data, root = read_yaml_mapping(path, empty_ok=True)  # as exporter-toolkit: no TLS, no auth
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
    users = {
        u.encode("utf-8"): h.get_secret_value().encode("ascii") for u, h in model.basic_auth_users.items()
    }
    return CheckedWebConfig(users, dict(model.http_server_config.headers), context, max(costs))


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
