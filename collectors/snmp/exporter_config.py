"""snmp_exporter's ``snmp.yml`` (its generator's output) read as module definitions.

Both layouts are read: the current one (``auths:`` apart from ``modules:``, snmp_exporter 0.23 and
later) and the older one (a mapping of module names, each carrying its own ``version`` and ``auth``).
The schema is snmp_exporter's own (``config/config.go``): unknown keys and types this collector
cannot render are errors naming the file, the line and the key, never a silently missing metric.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, ValidationError, field_validator, model_validator

from agent.kernel.errors import ConfigError, ConfigProblem
from agent.kernel.model import Duration, Model
from agent.kernel.yamlfile import format_loc, line_of, problems_from_validation, read_yaml_mapping
from collectors.snmp.config import Auth, normalize_oid

#: index types (collector.go indexOidsAsString)
INDEX_TYPES = (
    "gauge",
    "counter",
    "Integer",
    "Integer32",
    "PhysAddress48",
    "OctetString",
    "DisplayString",
    "InetAddress",
    "InetAddressMissingSize",
    "InetAddressIPv4",
    "InetAddressIPv6",
    "LldpPortId",
    "EnumAsInfo",
)
#: metric types snmp_exporter renders (collector.go pduToSamples)
ValueType = Literal[
    "counter",
    "gauge",
    "Float",
    "Double",
    "DateAndTime",
    "ParseDateAndTime",
    "NTPTimeStamp",
    "EnumAsInfo",
    "EnumAsStateSet",
    "Bits",
    # strings: the value becomes a label named after the metric, the sample is 1
    "DisplayString",
    "OctetString",
    "PhysAddress48",
    "InetAddress",
    "InetAddressMissingSize",
    "InetAddressIPv4",
    "InetAddressIPv6",
    "IpAddr",
    "LldpPortId",
]
VALUE_TYPES: tuple[str, ...] = get_args(ValueType)
IndexType = Literal[
    "gauge",
    "counter",
    "Integer",
    "Integer32",
    "PhysAddress48",
    "OctetString",
    "DisplayString",
    "InetAddress",
    "InetAddressMissingSize",
    "InetAddressIPv4",
    "InetAddressIPv6",
    "LldpPortId",
    "EnumAsInfo",
]
_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
#: strftime directives Python's strptime reads as snmp_exporter's timefmt-go does
_DATETIME_OK = re.compile(r"%[aAbBdHIjmMpSyYzZ%eTDFR]")


class ExIndex(Model):
    labelname: str = Field(pattern=_LABEL)
    type: IndexType
    fixed_size: int = Field(default=0, ge=0, le=128)
    implied: bool = False
    enum_values: dict[int, str] = Field(default_factory=dict)


class ExLookup(Model):
    labels: list[str] = Field(default_factory=list)
    labelname: str = Field(pattern=_LABEL)
    oid: str = ""
    type: ValueType | Literal[""] = ""

    @field_validator("oid")
    @classmethod
    def _oid(cls, v: str) -> str:
        return normalize_oid(v) if v else v


class ExRegexExtract(Model):
    value: str = "$1"
    regex: str

    @field_validator("regex")
    @classmethod
    def _compile(cls, v: str) -> str:
        try:
            re.compile(go_regex(v))
        except re.error as exc:
            raise ValueError(f"regex {v!r} does not compile: {exc}") from None
        return v


class ExMetric(Model):
    name: str = Field(pattern=_NAME)
    oid: str
    type: ValueType
    help: str = ""
    indexes: list[ExIndex] = Field(default_factory=list)
    lookups: list[ExLookup] = Field(default_factory=list)
    regex_extracts: dict[str, list[ExRegexExtract]] = Field(default_factory=dict)
    datetime_pattern: str = ""
    enum_values: dict[int, str] = Field(default_factory=dict)
    offset: float = 0.0
    scale: float = 0.0

    @field_validator("oid")
    @classmethod
    def _oid(cls, v: str) -> str:
        return normalize_oid(v)

    @model_validator(mode="after")
    def _check(self) -> ExMetric:
        if self.type == "ParseDateAndTime":
            rest = _DATETIME_OK.sub("", self.datetime_pattern)
            if not self.datetime_pattern or "%" in rest:
                raise ValueError(
                    f"datetime_pattern {self.datetime_pattern!r}: only the directives "
                    "%a %A %b %B %d %e %H %I %j %m %M %p %S %y %Y %z %Z %T %D %F %R are supported"
                )
        for suffix in self.regex_extracts:
            if suffix and not re.fullmatch(r"[a-zA-Z0-9_:]*", suffix):
                raise ValueError(f"regex_extracts key {suffix!r} does not make a valid metric name")
        return self


class ExDynamicFilter(Model):
    oid: str
    targets: list[str] = Field(default_factory=list)
    values: list[str] = Field(default_factory=list)

    @field_validator("oid")
    @classmethod
    def _oid(cls, v: str) -> str:
        return normalize_oid(v)

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        return [normalize_oid(o) for o in v]

    @field_validator("values")
    @classmethod
    def _values(cls, v: list[str]) -> list[str]:
        for x in v:
            try:
                re.compile(go_regex(x, anchored=False))
            except re.error as exc:
                raise ValueError(f"filter value {x!r} does not compile: {exc}") from None
        return v


class ExStaticFilter(Model):
    targets: list[str] = Field(default_factory=list)
    indices: list[str] = Field(default_factory=list)


class ExFilters(Model):
    """The generator's ``filters:`` form (``static`` already applied by it; accepted here too)."""

    static: list[ExStaticFilter] = Field(default_factory=list)
    dynamic: list[ExDynamicFilter] = Field(default_factory=list)


class ExModule(Model):
    walk: list[str] = Field(default_factory=list)
    get: list[str] = Field(default_factory=list)
    metrics: list[ExMetric] = Field(default_factory=list)
    max_repetitions: int = Field(default=25, ge=0, le=65535)
    retries: int = Field(default=3, ge=0, le=100)
    timeout: Duration = 5.0
    use_unconnected_udp_socket: bool = False
    allow_nonincreasing_oids: bool = False
    filters: list[ExDynamicFilter] | ExFilters = Field(default_factory=list)

    @field_validator("walk", "get")
    @classmethod
    def _oids(cls, v: list[str]) -> list[str]:
        return [normalize_oid(o) for o in v]

    @property
    def dynamic_filters(self) -> list[ExDynamicFilter]:
        return self.filters.dynamic if isinstance(self.filters, ExFilters) else list(self.filters)

    def resolved(self) -> tuple[list[str], list[str]]:
        """(walk, get) with static filters applied, as the generator does."""
        walk, get = list(self.walk), list(self.get)
        if isinstance(self.filters, ExFilters):
            for sf in self.filters.static:
                targets = [normalize_oid(t) for t in sf.targets]
                walk = [w for w in walk if w not in targets]
                get += [f"{t}.{i}" for t in targets for i in sf.indices]
        return walk, get


class ExAuth(Model):
    """An ``auths`` entry as snmp_exporter reads it (its defaults: community public, v2)."""

    community: str = "public"
    security_level: Literal["noAuthNoPriv", "authNoPriv", "authPriv"] = "noAuthNoPriv"
    username: str = ""
    password: str = ""
    auth_protocol: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] = "MD5"
    priv_protocol: Literal["DES", "AES", "AES192", "AES192C", "AES256", "AES256C"] = "DES"
    priv_password: str = ""
    context_name: str = ""
    version: Literal[1, 2, 3] = 2

    def to_auth(self) -> Auth:
        """giamsat's ``Auth``; snmp_exporter's AES192/AES256 extend keys the Blumenthal way (gosnmp),
        AES192C/AES256C the Reeder (Cisco) way."""
        priv = {
            "AES192": "AES192-Blumenthal",
            "AES256": "AES256-Blumenthal",
            "AES192C": "AES192-Reeder",
            "AES256C": "AES256-Reeder",
        }.get(self.priv_protocol, self.priv_protocol)
        data: dict[str, Any] = {"version": self.version, "context_name": self.context_name}
        if self.version in (1, 2):
            data["community"] = self.community
        else:
            data.update(
                username=self.username,
                security_level=self.security_level,
                auth_protocol=self.auth_protocol,
                priv_protocol=priv,
            )
            if self.password:
                data["password"] = self.password
            if self.priv_password:
                data["priv_password"] = self.priv_password
        return Auth.model_validate(data)


class ExCurrentFile(Model):
    auths: dict[str, ExAuth] = Field(default_factory=dict)
    modules: dict[str, ExModule] = Field(default_factory=dict)
    version: int = 0


class ExLegacyModule(ExModule):
    """A pre-0.23 module: its credentials inside."""

    version: Literal[1, 2, 3] = 2
    auth: dict[str, Any] = Field(default_factory=dict)


@dataclass
class ModuleFile:
    """What one or more snmp.yml files define: auths and modules (with, for the older layout, the auth
    each module carried, registered under the module's name)."""

    auths: dict[str, Auth] = field(default_factory=dict)
    modules: dict[str, ExModule] = field(default_factory=dict)
    module_auth: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # module -> file it came from


def go_regex(pattern: str, anchored: bool = True) -> str:
    """A Go RE2 pattern in Python's syntax (named groups ``(?P<x>`` are the same; ``\\z`` differs);
    anchored as snmp_exporter compiles ``regex_extracts`` (``^(?:...)$``)."""
    pattern = pattern.replace(r"\z", r"\Z")
    return f"^(?:{pattern})\\Z" if anchored else pattern


def _problems(
    exc: ValidationError | ValueError, file: str, root: Any, prefix: tuple[str, ...]
) -> list[ConfigProblem]:
    if isinstance(exc, ValidationError):
        probs = problems_from_validation(exc, file, root)
        if prefix:
            # errors of a nested model: key paths and lines are relative to the module
            out = []
            for err in exc.errors(include_url=False):
                loc = (*prefix, *err["loc"])
                msg = str(err["msg"]).removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown key (not in snmp_exporter's snmp.yml format, or not supported here)"
                elif err["type"] == "literal_error" and loc[-1] == "type":
                    msg = f"unsupported type {err.get('input')!r}: {msg}"
                out.append(ConfigProblem(file, format_loc(loc), msg, line_of(root, loc)))
            return out
        return probs
    return [ConfigProblem(file, ".".join(prefix), str(exc))]


def load_file(path: Path) -> ModuleFile:
    """One snmp.yml file. Raises ``ConfigError`` naming file, line and key of every problem."""
    file = str(path)
    data, root = read_yaml_mapping(path)  # libyaml where it is safe: upstream's snmp.yml is 2 MB
    out = ModuleFile()
    problems: list[ConfigProblem] = []
    current = "modules" in data or "auths" in data
    if current:
        for key in data:
            if key not in ("auths", "modules", "version"):
                problems.append(ConfigProblem(file, str(key), "unknown key", line_of(root, (str(key),))))
        for name, raw in dict(data.get("auths") or {}).items():
            try:
                out.auths[str(name)] = ExAuth.model_validate(raw or {}).to_auth()
            except ValidationError as exc:
                problems += _problems(exc, file, root, ("auths", str(name)))
        for name, raw in dict(data.get("modules") or {}).items():
            try:
                out.modules[str(name)] = ExModule.model_validate(raw or {})
                out.files[str(name)] = file
            except ValidationError as exc:
                problems += _problems(exc, file, root, ("modules", str(name)))
    else:
        for name, raw in data.items():
            try:
                lm = ExLegacyModule.model_validate(raw or {})
                auth = ExAuth.model_validate({**lm.auth, "version": lm.version}).to_auth()
            except ValidationError as exc:
                problems += _problems(exc, file, root, (str(name),))
                continue
            plain = {k: v for k, v in lm.model_dump().items() if k not in ("version", "auth")}
            out.modules[str(name)] = ExModule.model_validate(plain)
            out.auths[str(name)] = auth
            out.module_auth[str(name)] = str(name)
            out.files[str(name)] = file
    if problems:
        raise ConfigError(problems)
    return out


def load_files(patterns: list[str]) -> ModuleFile:
    """Several snmp.yml files (globs, as snmp_exporter's ``--config.file``): later ones add to and
    replace what earlier ones defined. A pattern matching nothing is an error."""
    merged = ModuleFile()
    for pattern in patterns:
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not paths:
            raise ConfigError([ConfigProblem(pattern, "", "no file matches this pattern")])
        for p in paths:
            one = load_file(Path(p))
            merged.auths.update(one.auths)
            merged.modules.update(one.modules)
            merged.module_auth.update(one.module_auth)
            merged.files.update(one.files)
    return merged
