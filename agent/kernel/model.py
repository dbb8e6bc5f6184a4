"""Building blocks shared by every configuration model: strict models, durations and secrets.

Kept apart from ``agent.config`` so collector modules can import them without importing the whole
configuration (which imports the collector registry).
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import stat
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from agent.kernel.redact import register_secret

log = logging.getLogger("giamsat.config")

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Prometheus-style durations ("30s", "1m30s", "500ms") or plain seconds; returns seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s or 5m, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_RE.match(value):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError(f"expected a duration such as 30s, 5m or 1h30m, got {value!r}")
    if seconds <= 0:
        raise ValueError("duration must be greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in YAML as ``30s``, ``5m``, ``1h30m``, ``250ms`` or a number of seconds."""


def readable_file(path: Path) -> Path:
    """``path`` can be opened and read by this process, as the agent will open it; else a ValueError
    naming the path (check-config reports it at its key)."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except ValueError:  # a NUL in the name
        raise ValueError("cannot read the file: its name contains a NUL character") from None
    return path


def certificate_bundle(path: Path) -> Path:
    """``path`` is readable and holds PEM certificates (a CA bundle) that OpenSSL loads."""
    readable_file(path)
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{path} holds no usable PEM certificate ({_ssl_reason(exc)})") from None
    return path


def certificate_and_key(cert: Path, key: Path | None) -> None:
    """The certificate (and its key, if apart) load as a client or server certificate."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(cert), str(key) if key else None)
    except (ssl.SSLError, OSError) as exc:
        what = f"{cert} and {key}" if key else str(cert)
        raise ValueError(
            f"cannot load the certificate and key from {what} ({_ssl_reason(exc)}); "
            "they must be PEM, the key unencrypted and matching the certificate"
        ) from None


def readable_directory(path: Path) -> Path:
    """``path`` is a directory whose entries this process can list."""
    try:
        with os.scandir(path) as it:
            next(it, None)
    except NotADirectoryError:
        raise ValueError(f"{path} is not a directory") from None
    except OSError as exc:
        raise ValueError(f"cannot read the directory {path}: {exc.strerror or type(exc).__name__}") from None
    except ValueError:
        raise ValueError("cannot read the directory: its name contains a NUL character") from None
    return path


def _ssl_reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__)


ReadableFile = Annotated[Path, AfterValidator(readable_file)]
"""A path to a file the agent reads: check-config opens it (and names it when it cannot)."""

CertificateBundle = Annotated[Path, AfterValidator(certificate_bundle)]
"""A PEM CA bundle: check-config loads it as the TLS code will."""

ReadableDirectory = Annotated[Path, AfterValidator(readable_directory)]
"""A directory a collector reads: check-config lists it."""


def _warn_if_world_readable(path: Path, key: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        log.warning(
            "secret file is readable by every user; chmod o-r it", extra={"key": key, "file": str(path)}
        )


class Model(BaseModel):
    """Strict, immutable config model: unknown keys are errors, so a typo never switches monitoring off.

    Every ``SecretStr`` field ``x`` may instead be given as ``x_file`` (a path; the file's content with
    surrounding whitespace stripped; ``$VARS`` in the path are expanded, so
    ``${CREDENTIALS_DIRECTORY}/name`` reads a systemd ``LoadCredential=`` file) or ``x_env`` (the name
    of an environment variable). Secret values print as ``**********``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _share_fields_set(self) -> Any:
        # Each instance carries the set of keys it was given (~700 bytes for six keys: 3.5 MiB for
        # 5 000 ICMP targets). Frozen models never add to it, and ``model_copy`` copies it before an
        # update, so instances given the same keys can share one set.
        given = self.__pydantic_fields_set__
        shared = _FIELDS_SETS.get(frozenset(given))
        if shared is None:
            if len(_FIELDS_SETS) >= _FIELDS_SETS_MAX:
                return self
            shared = _FIELDS_SETS[frozenset(given)] = given
        object.__setattr__(self, "__pydantic_fields_set__", shared)
        return self

    @model_validator(mode="after")
    def _register_secrets(self) -> Any:
        # Text from outside (a receiver's error body, a device's answer) may quote a secret back: the
        # redactor knows each one before it can be used. A ``password`` beside a ``username`` is also
        # registered as the pair HTTP basic auth sends.
        user = getattr(self, "username", None)
        for name in type(self).model_fields:
            value = getattr(self, name)
            values = (
                value.values() if isinstance(value, dict) else value if isinstance(value, list) else (value,)
            )
            for v in values:
                if isinstance(v, SecretStr):
                    pair = user if name == "password" and isinstance(user, str) else None
                    register_secret(v.get_secret_value(), pair)
        return self

    @model_validator(mode="before")
    @classmethod
    def _resolve_secret_sources(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        sources = _secret_sources(cls)
        if not sources:
            return data
        out = dict(data)
        errors: list[InitErrorDetails] = []
        given: dict[str, str] = {}
        # In the file's order (a dict keeps the YAML order): every problem is reported, each at its key.
        for key in data:
            name = sources.get(key) if isinstance(key, str) else None
            if name is None:
                continue
            if name in given:
                errors.append(_secret_error(key, f"give only one of {given[name]}, {key}"))
                continue
            given[name] = key
            if key == name:
                continue
            raw = out.pop(key)
            if key.endswith("_file"):
                # "${CREDENTIALS_DIRECTORY}/community" works with systemd's LoadCredential=.
                path = Path(os.path.expandvars(str(raw)))
                try:
                    out[name] = path.read_text(encoding="utf-8").strip()
                except (OSError, ValueError) as exc:
                    why = getattr(exc, "strerror", None) or "not a readable UTF-8 text file"
                    errors.append(_secret_error(key, f"cannot read {path}: {why}"))
                    continue
                _warn_if_world_readable(path, key)
            else:
                var = str(raw)
                if var not in os.environ:
                    errors.append(_secret_error(key, f"environment variable {var} is not set"))
                    continue
                out[name] = os.environ[var]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return out


#: The key sets models were given, each shared by every model given those keys (see ``Model``).
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}
_FIELDS_SETS_MAX = 4096


def _secret_sources(cls: type[BaseModel]) -> dict[str, str]:
    """``{key: secret field}`` for every way a model's secrets can be given (``x``, ``x_file``, ``x_env``)."""
    out: dict[str, str] = {}
    for name, field in cls.model_fields.items():
        if _is_secret_annotation(field.annotation):
            out.update({name: name, f"{name}_file": name, f"{name}_env": name})
    return out


def key_error(model: type[BaseModel], key: str, message: str) -> ValidationError:
    """A validation error at ``key`` of ``model``, raised from a model validator (which would otherwise
    report it at the model's own key path and line)."""
    return ValidationError.from_exception_data(model.__name__, [_secret_error(key, message)])


def _secret_error(key: str, message: str) -> InitErrorDetails:
    # The input is the key, never the value: an inline secret must not reach an error message.
    return InitErrorDetails(
        type=PydanticCustomError("secret_source", "{message}", {"message": message}), loc=(key,), input=key
    )


def _is_secret_annotation(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return SecretStr in getattr(annotation, "__args__", ())


def secret_value(secret: SecretStr | None) -> str | None:
    """The plain value of an optional secret, for the one place that must hand it to a library."""
    return secret.get_secret_value() if secret is not None else None
