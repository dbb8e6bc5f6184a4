"""Settings of the SSH collector: named credentials (``auths``), user-defined command modules, targets.

Credentials are named under ``auths`` apart from targets, as snmp_exporter keeps auths apart from modules.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from agent.kernel.collector import CollectorSettings, TargetConfig
from agent.kernel.model import Duration, Model
from collectors.host.options import FS_TYPES_EXCLUDE, MOUNT_POINTS_EXCLUDE
from collectors.host.options import NETDEV_DEVICE_EXCLUDE as DEVICE_EXCLUDE

BUILTIN_MODULES = ("linux",)
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MODULE_NAME = r"^[a-z][a-z0-9_]{0,62}$"
_RESERVED_LABELS = {"site", "target", "module", "instance", "job"}


class SSHAuth(Model):
    """One named credential under ``collectors.ssh.auths``: a key file, or a password."""

    username: str = Field(min_length=1)
    key_file: Path | None = None
    passphrase: SecretStr | None = Field(default=None, description="passphrase of key_file")
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _one_method(self) -> SSHAuth:
        if (self.key_file is None) == (self.password is None):
            raise ValueError("give exactly one of key_file or password (password_file, password_env)")
        if self.passphrase is not None and self.key_file is None:
            raise ValueError("passphrase is only used with key_file")
        return self


class CommandMetric(Model):
    """One metric taken from a command's output."""

    name: str
    help: str = ""
    type: Literal["gauge", "counter"] = "gauge"
    value: str = Field(
        default="", description="regex: group name; keyvalue: key; json: dotted path; number: unused"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="constant labels")
    label_groups: dict[str, str] = Field(
        default_factory=dict, description="regex only: label name -> named group giving its value"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _METRIC_NAME.match(v):
            raise ValueError(f"{v!r} is not a valid Prometheus metric name")
        if v.startswith("ssh_"):
            raise ValueError("names starting with ssh_ are the collector's own")
        return v

    @model_validator(mode="after")
    def _check(self) -> CommandMetric:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")
        for label in [*self.labels, *self.label_groups]:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"{label!r} is not a valid label name")
            if label in _RESERVED_LABELS:
                raise ValueError(f"label {label!r} is reserved (the exporter sets it)")
        both = set(self.labels) & set(self.label_groups)
        if both:
            raise ValueError(f"label(s) {sorted(both)} given both as constant and from a group")
        return self


class CommandModule(Model):
    """A user-defined module: one command, one parser, the metrics to take from its output."""

    command: list[str] = Field(min_length=1, description="argv; each argument is shell-quoted")
    parser: Literal["number", "regex", "keyvalue", "json"]
    pattern: str | None = Field(default=None, description="regex parser: pattern with named groups")
    separator: str = Field(default="=", min_length=1)
    timeout: Duration | None = None
    max_series: int = Field(default=1000, ge=1, le=100_000)
    metrics: list[CommandMetric] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> CommandModule:
        groups: set[str] = set()
        if self.parser == "regex":
            if not self.pattern:
                raise ValueError("the regex parser needs a pattern")
            try:
                groups = set(re.compile(self.pattern, re.MULTILINE).groupindex)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from None
            if not groups:
                raise ValueError("pattern has no named groups, e.g. (?P<value>\\d+)")
        elif self.pattern is not None:
            raise ValueError("pattern is only used by the regex parser")
        names = [m.name for m in self.metrics]
        if len(names) != len(set(names)):
            raise ValueError("metric names must be unique within a module")
        for m in self.metrics:
            if self.parser != "number" and not m.value:
                raise ValueError(f"metric {m.name}: 'value' is required for the {self.parser} parser")
            if self.parser != "regex" and m.label_groups:
                raise ValueError(f"metric {m.name}: label_groups only work with the regex parser")
            missing = {m.value, *m.label_groups.values()} - groups - {""} if self.parser == "regex" else set()
            if missing:
                raise ValueError(f"metric {m.name}: pattern has no group(s) {sorted(missing)}")
        return self

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern or "", re.MULTILINE)


class SSHSettings(CollectorSettings):
    """``collectors.ssh``."""

    known_hosts_file: Path | None = Field(
        default=None, description="OpenSSH known_hosts file; default <state_dir>/ssh_known_hosts"
    )
    trust_on_first_use: bool = Field(
        default=False, description="record the key of a host known_hosts does not mention, then trust it"
    )
    max_concurrency: int = Field(default=8, ge=1, le=256, description="targets talked to at the same time")
    connect_timeout: Duration = 5.0
    command_timeout: Duration = 10.0
    keepalive_interval: Duration = 30.0
    reuse_connections: bool = Field(
        default=True, description="keep one connection per target open between collections (one thread each)"
    )
    max_output_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    user_hz: int = Field(default=100, ge=1, le=10_000, description="USER_HZ of the targets (/proc/stat)")
    df_command: list[str] = Field(default_factory=lambda: ["df", "-P", "-T", "-k"], min_length=1)
    filesystem_mount_points_exclude: str = Field(
        default=MOUNT_POINTS_EXCLUDE, description="regex; as node_exporter's --collector.filesystem flag"
    )
    filesystem_fs_types_exclude: str = Field(default=FS_TYPES_EXCLUDE, description="regex, as above")
    netdev_device_exclude: str = Field(default=DEVICE_EXCLUDE, description="regex; empty: keep every device")
    auths: dict[str, SSHAuth] = Field(default_factory=dict)
    commands: dict[str, CommandModule] = Field(default_factory=dict)

    @field_validator(
        "filesystem_mount_points_exclude", "filesystem_fs_types_exclude", "netdev_device_exclude"
    )
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"does not compile: {exc}") from None
        return v

    @field_validator("commands")
    @classmethod
    def _command_names(cls, v: dict[str, CommandModule]) -> dict[str, CommandModule]:
        seen: dict[str, str] = {}
        for name, module in v.items():
            if not re.match(_MODULE_NAME, name):
                raise ValueError(f"module name {name!r}: use lower case letters, digits and _")
            if name in BUILTIN_MODULES:
                raise ValueError(f"module name {name!r} is built in")
            for m in module.metrics:
                if m.name in seen:
                    raise ValueError(f"metric {m.name} is defined by both {seen[m.name]} and {name}")
                seen[m.name] = name
        return v


class SSHTarget(TargetConfig):
    """One host under ``targets.ssh``."""

    address: str = Field(min_length=1, description="host name or IP address")
    port: int = Field(default=22, ge=1, le=65535)
    auth: str = Field(description="name of an entry under collectors.ssh.auths")
    modules: list[str] = Field(default_factory=lambda: ["linux"], min_length=1)

    @field_validator("modules")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(v) != len(set(v)):
            raise ValueError("modules must not repeat")
        return v
