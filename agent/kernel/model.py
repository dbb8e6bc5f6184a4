"""Building blocks shared by every configuration model: strict models, durations and secrets.

Kept apart from ``agent.config`` so collector modules can import them without importing the whole
configuration (which imports the collector registry).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, model_validator

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
        secret_fields = {
            name for name, field in cls.model_fields.items() if _is_secret_annotation(field.annotation)
        }
        if not secret_fields:
            return data
        out = dict(data)
        for name in secret_fields:
            file_key, env_key = f"{name}_file", f"{name}_env"
            given = [k for k in (name, file_key, env_key) if k in out]
            if len(given) > 1:
                raise ValueError(f"give only one of {', '.join(given)}")
            if file_key in out:
                raw = out.pop(file_key)
                # "${CREDENTIALS_DIRECTORY}/community" works with systemd's LoadCredential=.
                path = Path(os.path.expandvars(str(raw)))
                try:
                    out[name] = path.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ValueError(f"{file_key}: cannot read {path}: {exc.strerror}") from None
                _warn_if_world_readable(path, file_key)
            elif env_key in out:
                var = str(out.pop(env_key))
                if var not in os.environ:
                    raise ValueError(f"{env_key}: environment variable {var} is not set")
                out[name] = os.environ[var]
        return out


def _is_secret_annotation(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return SecretStr in getattr(annotation, "__args__", ())


def secret_value(secret: SecretStr | None) -> str | None:
    """The plain value of an optional secret, for the one place that must hand it to a library."""
    return secret.get_secret_value() if secret is not None else None
