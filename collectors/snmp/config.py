"""Configuration of the SNMP collector, laid out the snmp_exporter way: ``auths`` apart from ``modules``.

Credentials live in ``collectors.snmp.auths`` (secret fields are ``SecretStr``, so ``_file``/``_env``
work and values print as ``**********``); what to read lives in ``modules`` (the shipped ones plus the
user's own); a target names one auth and a list of modules.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from agent.kernel.allowlist import AllowList, check_entry
from agent.kernel.collector import CollectorSettings, TargetConfig
from agent.kernel.errors import ConfigError
from agent.kernel.model import Duration, Model

if TYPE_CHECKING:
    from collectors.snmp.exporter_config import ExModule, ModuleFile

_OID_RE = re.compile(r"^\.?[0-2](\.\d+)+$")
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
#: AES-192/256 keys are longer than MD5/SHA-1 localized keys; vendors extend them two different ways, so
#: the name says which. net-snmp "AES192"/"AES256" = Blumenthal; net-snmp and snmp_exporter
#: "AES192C"/"AES256C" (Cisco) = Reeder. With SHA-256 or longer auth no extension happens and both agree.
PRIV_PROTOCOLS = (
    "DES",
    "AES",
    "AES128",
    "AES192-Blumenthal",
    "AES256-Blumenthal",
    "AES192-Reeder",
    "AES256-Reeder",
)
_AMBIGUOUS_PRIV = {
    "AES192": "AES192-Blumenthal (net-snmp AES192) or AES192-Reeder (Cisco, net-snmp/snmp_exporter AES192C)",
    "AES256": "AES256-Blumenthal (net-snmp AES256) or AES256-Reeder (Cisco, net-snmp/snmp_exporter AES256C)",
    "AES192C": "AES192-Reeder",
    "AES256C": "AES256-Reeder",
}

ENGINES = ("gufo", "pysnmp")


def normalize_oid(value: str) -> str:
    value = str(value).strip()
    if not _OID_RE.match(value):
        raise ValueError(f"expected a numeric OID such as 1.3.6.1.2.1.1.3, got {value!r}")
    return value.lstrip(".")


class Auth(Model):
    """One set of SNMP credentials (snmp_exporter ``auths`` entry)."""

    version: Literal[1, 2, 3] = 2
    community: SecretStr | None = None
    security_level: Literal["noAuthNoPriv", "authNoPriv", "authPriv"] = "authPriv"
    username: str | None = None
    password: SecretStr | None = None
    auth_protocol: str = "SHA256"
    priv_protocol: str = "AES"
    priv_password: SecretStr | None = None
    context_name: str = ""

    @field_validator("auth_protocol")
    @classmethod
    def _auth_proto(cls, v: str) -> str:
        norm = v.upper().replace("-", "")
        if norm not in AUTH_PROTOCOLS:
            raise ValueError(f"auth_protocol must be one of {', '.join(AUTH_PROTOCOLS)}, got {v!r}")
        return norm

    @field_validator("priv_protocol")
    @classmethod
    def _priv_proto(cls, v: str) -> str:
        for name in PRIV_PROTOCOLS:
            if v.lower() == name.lower():
                return "AES" if name == "AES128" else name
        if v.upper() in _AMBIGUOUS_PRIV:
            raise ValueError(
                f"priv_protocol {v!r} is ambiguous about the AES key extension; write "
                f"{_AMBIGUOUS_PRIV[v.upper()]}"
            )
        raise ValueError(f"priv_protocol must be one of {', '.join(PRIV_PROTOCOLS)}, got {v!r}")

    @model_validator(mode="after")
    def _check(self) -> Auth:
        if self.version in (1, 2):
            if self.community is None:
                raise ValueError("SNMPv1/v2c needs community (or community_file / community_env)")
            return self
        if not self.username:
            raise ValueError("SNMPv3 needs username")
        if self.security_level != "noAuthNoPriv" and self.password is None:
            raise ValueError(f"security_level {self.security_level} needs password (or password_file)")
        if self.security_level == "authPriv" and self.priv_password is None:
            raise ValueError("security_level authPriv needs priv_password (or priv_password_file)")
        return self


MetricType = Literal["gauge", "counter", "timeticks", "info", "enum"]
StringFormat = Literal["text", "hex", "mac", "ip"]
IndexType = Literal["integer", "string", "ipv4", "rest"]


class Index(Model):
    """How one label is read from a table row's index (the OID suffix after the column)."""

    labelname: str = Field(pattern=_LABEL_RE.pattern)
    type: IndexType = "integer"


class Lookup(Model):
    """An extra label read from another column with the same row index (or a scalar for scalars)."""

    labelname: str = Field(pattern=_LABEL_RE.pattern)
    oid: str
    format: StringFormat = "text"

    @field_validator("oid")
    @classmethod
    def _norm(cls, v: str) -> str:
        return normalize_oid(v)


class MetricDef(Model):
    """One metric of a module: a scalar (no ``indexes``) read with GET, or a table column walked."""

    name: str = Field(pattern=_NAME_RE.pattern)
    oid: str
    type: MetricType = "gauge"
    help: str = ""
    indexes: list[Index] = Field(default_factory=list)
    lookups: list[Lookup] = Field(default_factory=list)
    #: multiply the raw value (e.g. 60 for minutes to seconds); timeticks are always scaled to seconds.
    scale: float = 1.0
    #: multiply each row by another column of the same row (hrStorageSize times hrStorageAllocationUnits)
    multiply_by: str | None = None
    #: for ``enum``: value -> state name; emitted as a state set (one series per state, 1 for the current)
    enum_values: dict[int, str] = Field(default_factory=dict)
    #: for ``info``: the label holding the string value (default: the metric name without ``_info``)
    label: str | None = Field(default=None, pattern=_LABEL_RE.pattern)
    format: StringFormat = "text"

    @field_validator("oid", "multiply_by")
    @classmethod
    def _norm(cls, v: str | None) -> str | None:
        return normalize_oid(v) if v is not None else None

    @model_validator(mode="after")
    def _check(self) -> MetricDef:
        if self.type == "enum" and not self.enum_values:
            raise ValueError(f"{self.name}: type enum needs enum_values (value: name)")
        names = [i.labelname for i in self.indexes] + [lk.labelname for lk in self.lookups]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate label names {names}")
        return self

    @property
    def scalar(self) -> bool:
        return not self.indexes

    @property
    def value_label(self) -> str:
        if self.label:
            return self.label
        if self.type == "enum":
            return self.name
        return self.name.removesuffix("_info")


class Module(Model):
    """A named set of metrics (snmp_exporter ``modules`` entry)."""

    metrics: list[MetricDef] = Field(min_length=1)
    #: subtrees to walk whole (snmp_exporter ``walk``), e.g. a table entry when most of its columns are
    #: used: one walk instead of one per column. Columns outside these subtrees are walked one by one.
    walk: list[str] = Field(default_factory=list)

    @field_validator("walk")
    @classmethod
    def _norm_walk(cls, v: list[str]) -> list[str]:
        return [normalize_oid(o) for o in v]

    @model_validator(mode="after")
    def _unique(self) -> Module:
        names = [m.name for m in self.metrics]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"duplicate metric names {dups}")
        return self


class OnDemand(Model):
    """``collectors.snmp.on_demand``: devices not in ``targets.snmp`` that ``/snmp?target=`` may poll.

    Empty by default: an open ``/snmp`` would let anyone who reaches the agent make it send SNMP
    (with the configured credentials) anywhere. Matched by the kernel's ``AllowList``, the same rules
    as ``collectors.blackbox.on_demand`` (SNMP targets are not URLs, so URL prefixes are refused).
    """

    #: CIDRs (``198.18.40.0/24``), single addresses, host names or ``*.suffix`` (case-insensitive; a
    #: name is never resolved to check it against a CIDR)
    allow: list[str] = Field(default_factory=list)
    #: on-demand polls running at once; more are answered 503
    max_concurrent: int = Field(default=4, ge=1, le=256)
    _allow: AllowList = PrivateAttr(default_factory=AllowList)

    @field_validator("allow")
    @classmethod
    def _entries(cls, v: list[str]) -> list[str]:
        out = []
        for e in v:
            e = str(e).strip()
            if "://" in e:
                raise ValueError(f"{e!r} is a URL prefix; SNMP devices are CIDRs, addresses or host names")
            try:
                out.append(check_entry(e))
            except ValueError:
                raise ValueError(
                    f"{e!r} is neither a CIDR, an address nor a host name (or *.suffix)"
                ) from None
        return out

    @model_validator(mode="after")
    def _parse(self) -> OnDemand:
        self._allow = AllowList.parse(self.allow)
        return self

    def allows(self, host: str) -> bool:
        """Whether ``host`` (an address literal or a name, as the request gave it) may be polled."""
        return self._allow.allows_host(host)


class SnmpSettings(CollectorSettings):
    """``collectors.snmp``."""

    engine: Literal["gufo", "pysnmp"] = "gufo"
    auths: dict[str, Auth] = Field(default_factory=dict)
    modules: dict[str, Module] = Field(default_factory=dict, description="user-defined modules")
    #: per SNMP request (snmp_exporter defaults: 5 s, 3 retries, 25 max-repetitions)
    request_timeout: Duration = 5.0
    retries: int = Field(default=3, ge=0, le=10)
    max_repetitions: int = Field(default=25, ge=1, le=200)
    #: devices polled at the same time; the rest wait their turn (a dead one holds a slot only until
    #: its own deadline)
    max_concurrent_devices: int = Field(default=128, ge=1, le=10000)
    #: refuse walks returning more varbinds than this (a broken agent that never ends its table)
    max_varbinds_per_walk: int = Field(default=100_000, ge=100)
    #: snmp_exporter ``snmp.yml`` files (generator output, either layout; globs allowed): their modules
    #: and auths are used as they are, next to the shipped ones
    module_files: list[str] = Field(default_factory=list)
    on_demand: OnDemand = Field(default_factory=OnDemand)
    _files: Any = PrivateAttr(default=None)

    @field_validator("modules")
    @classmethod
    def _no_shadow(cls, v: dict[str, Module]) -> dict[str, Module]:
        from collectors.snmp.modules import SHIPPED, SHIPPED_EXPORTER

        clash = sorted(set(v) & (set(SHIPPED) | set(SHIPPED_EXPORTER)))
        if clash:
            raise ValueError(f"module name(s) {clash} are shipped modules; pick other names")
        return v

    @model_validator(mode="after")
    def _load_files(self) -> SnmpSettings:
        from collectors.snmp.exporter_config import ModuleFile, load_files

        if not self.module_files:
            self._files = ModuleFile()
            return self
        try:
            files = load_files(self.module_files)
        except ConfigError as exc:
            raise ValueError("; ".join(str(p) for p in exc.problems)) from None
        clash = sorted(set(files.modules) & set(self.modules))
        if clash:
            raise ValueError(f"modules {clash} are defined both here and in module_files")
        clash = sorted(set(files.auths) & set(self.auths))
        if clash:
            raise ValueError(f"auths {clash} are defined both here and in module_files")
        self._files = files
        return self

    @property
    def exporter_modules(self) -> dict[str, ExModule]:
        """snmp_exporter-format modules: the shipped ones, replaced or added to by ``module_files``."""
        from collectors.snmp.modules import SHIPPED_EXPORTER

        files: ModuleFile = self._files
        return {**SHIPPED_EXPORTER, **(files.modules if files else {})}

    @property
    def all_auths(self) -> dict[str, Auth]:
        files: ModuleFile = self._files
        return {**(files.auths if files else {}), **self.auths}

    def module_auth(self, module: str) -> str | None:
        """The auth a pre-0.23 snmp.yml module carried (registered under the module's name)."""
        files: ModuleFile = self._files
        return files.module_auth.get(module) if files else None


class SnmpTarget(TargetConfig):
    """``targets.snmp[]``: one device."""

    address: str = Field(description="IP address or host name")
    port: int = Field(default=161, ge=1, le=65535)
    auth: str
    modules: list[str] = Field(default_factory=lambda: ["system", "if_mib"], min_length=1)
    engine: Literal["gufo", "pysnmp"] | None = None
    request_timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=10)
    max_repetitions: int | None = Field(default=None, ge=1, le=200)
