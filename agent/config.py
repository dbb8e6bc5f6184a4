"""Load and validate the agent's YAML configuration, reporting every problem with file, line and key path.

Layout of the file::

    agent:      listen address, defaults for interval/timeout, state directory, the agent's own site
    sites:      the site inventory (or ``sites_file:`` pointing at the CSV sysadmins keep)
    collectors: per-collector settings, ``collectors.<kind>``
    targets:    per-collector target lists, ``targets.<kind>[]``, each target bound to a site

The ``collectors`` and ``targets`` sections are built from the collector table in
``collectors/__init__.py``, so a collector's own model decides what its keys are.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationError, create_model, field_validator

from agent.inventory import Inventory, Level, Site, read_sites_csv, validate_sites
from agent.kernel.collector import CollectorSettings, SiteShorthand, TargetConfig
from agent.kernel.errors import ConfigError, ConfigProblem
from agent.kernel.model import Duration, Model
from agent.kernel.yamlfile import (
    Tree,
    config_dir,
    format_loc,
    line_of,
    loc_of,
    problem_at,
    problems_from_validation,
    read_yaml_data,
)
from collectors import COLLECTORS

SITE_ID_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"


class AgentSettings(Model):
    """The ``agent:`` section."""

    listen_address: str = ":9469"
    site: str | None = Field(default=None, description="id of the site this agent runs at")
    interval: Duration = 30.0
    timeout: Duration = 10.0
    state_dir: Path = Path("/var/lib/giamsat")
    stale_after_intervals: int = Field(default=3, ge=1, le=100)
    max_concurrent_scrapes: int = Field(default=8, ge=1, le=1024)
    max_label_length: int = Field(default=256, ge=16, le=16384)
    max_series_per_target: int = Field(
        default=10_000, ge=10, le=10_000_000, description="samples kept per job result; health families first"
    )
    web_config_file: Path | None = None
    status_page_language: Literal["auto", "vi", "en"] = Field(
        default="auto", description="language of the status page at /; auto follows the browser"
    )

    @field_validator("listen_address")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        parse_listen_address(v)
        return v


def parse_listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[v6]:PORT`` -> (host, port)."""
    host, sep, port_s = value.rpartition(":")
    if not sep or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9469 or :9469, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ":PORT" means all interfaces, as in every exporter
    return host, int(port_s)


class SiteConfig(Model):
    """One site of the inventory."""

    # Python's re rather than pydantic-core's Rust regex: the site tree is checked in every agent, and
    # the Rust engine's code alone adds ~0.4 MiB of resident memory. \Z, not $, which in
    # Python also matches before a final newline.
    model_config = ConfigDict(regex_engine="python-re")

    id: str
    name: str = Field(min_length=1, max_length=200)
    level: Level
    parent: str | None = None
    uplinks: list[str] = Field(
        default_factory=list, description="names of targets that are this site's links"
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_site_id(v)

    @field_validator("level", mode="before")
    @classmethod
    def _level_by_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return Level[v.strip().lower()]
            except KeyError:
                raise ValueError(
                    f"level must be one of {', '.join(m.name for m in Level)}, got {v!r}"
                ) from None
        return v

    @field_validator("uplinks", mode="before")
    @classmethod
    def _uplinks_from_csv(cls, v: Any) -> Any:
        if isinstance(v, str):  # the CSV column holds "wan;backup"
            return [p.strip() for p in v.replace(",", ";").split(";") if p.strip()]
        return v if v is not None else []


_SITE_ID = re.compile(SITE_ID_PATTERN)


def check_site_id(value: str) -> str:
    """A site id as it goes into labels and file names: ASCII, as the error explains with a suggestion.

    Sheets are typed with the commune's Vietnamese name (``xã-an-bình``); the id suggested is that
    name without its diacritics (``xa-an-binh``).
    """
    if _SITE_ID.match(value):
        return value
    if not value:
        raise ValueError("a site id cannot be empty")
    suggestion = ascii_site_id(value)
    if any(ord(c) > 127 for c in value):
        why = "has letters with diacritics or other non-ASCII characters"
    elif len(value) > 64:
        why = "is longer than 64 characters"
    else:
        why = "has characters other than ASCII letters, digits, '-', '_' and '.' (or does not start with a letter or digit)"
    hint = f"; use {suggestion!r}" if suggestion and _SITE_ID.match(suggestion) else ""
    raise ValueError(f"site id {value!r} {why}: ids go into labels and file names{hint}")


def ascii_site_id(value: str) -> str:
    """``Xã An Bình`` -> ``xa-an-binh``: diacritics dropped (đ -> d), other characters to '-'."""
    text = unicodedata.normalize("NFKD", value.replace("đ", "d").replace("Đ", "D"))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"[^a-z0-9_.-]+", "-", text).strip("-_.")
    return re.sub(r"-{2,}", "-", text)[:64]


@functools.lru_cache(maxsize=16)
def site_model(shorthand_keys: tuple[str, ...]) -> type[SiteConfig]:
    """``SiteConfig`` plus the shorthand keys a file uses (``links:``), each typed by the collector that
    expands it; built only for files that use them."""
    if not shorthand_keys:
        return SiteConfig
    fields: dict[str, Any] = {}
    for key in shorthand_keys:
        sh = site_shorthand(key)
        fields[key] = (
            list[sh.model],  # type: ignore[name-defined]
            Field(default_factory=list, description=f"expanded into {', '.join(sh.kinds)} targets"),
        )
    return create_model("SiteConfig", __base__=SiteConfig, **fields)


def site_shorthand(key: str) -> SiteShorthand:
    """The shorthand a site key stands for, from the collector whose table line names the key."""
    sh = COLLECTORS[COLLECTORS.site_keys()[key]].site_shorthand
    assert sh is not None and sh.key == key, f"collector for site key {key!r} declares no such shorthand"
    return sh


class Config(Model):
    """The whole configuration file.

    The ``collectors`` and ``targets`` sections hold only the collector kinds a file uses, and the
    site shorthand keys (``links:``) and the ``remote_write:`` section are typed only in files that have them (see
    ``config_model``): loading a configuration builds and imports only what it uses, which keeps a
    small agent small (each pydantic model costs resident memory).
    """

    KINDS: ClassVar[tuple[str, ...]] = ()
    SITE_KEYS: ClassVar[tuple[str, ...]] = ()

    agent: AgentSettings = Field(default_factory=AgentSettings)
    sites: list[SiteConfig] = Field(default_factory=list)
    sites_file: Path | None = None
    collectors: Any = None
    targets: Any = None
    remote_write: list[Any] = Field(default_factory=list)  # list[RemoteWriteSettings] when present

    @property
    def kinds(self) -> tuple[str, ...]:
        """The collector kinds this configuration has sections for."""
        return type(self).KINDS

    def collector_settings(self, kind: str) -> CollectorSettings:
        if kind in self.kinds:
            settings: CollectorSettings = getattr(self.collectors, kind)
            return settings
        return COLLECTORS[kind].settings_model()

    def targets_of(self, kind: str) -> list[TargetConfig]:
        return list(getattr(self.targets, kind, None) or [])


@dataclass(frozen=True)
class Sections:
    """Which parts of the full schema a configuration file needs."""

    kinds: tuple[str, ...]
    #: the site shorthand keys (``links``) some site uses
    site_keys: tuple[str, ...] = ()
    remote_write: bool = False


@functools.lru_cache(maxsize=16)
def config_model(sections: Sections) -> type[Config]:
    """The Config model for exactly the sections a file has (see ``sections_used``)."""
    kinds = sections.kinds
    settings: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    for kind in kinds:
        cls = COLLECTORS[kind]
        settings[kind] = (cls.settings_model, Field(default_factory=cls.settings_model))
        if cls.target_model is not None:
            targets[kind] = (list[cls.target_model], Field(default_factory=list))  # type: ignore[name-defined]
    collectors_section = create_model("CollectorsSection", __base__=Model, **settings)
    targets_section = create_model("TargetsSection", __base__=Model, **targets)
    optional: dict[str, Any] = {}
    if sections.site_keys:
        optional["sites"] = (list[site_model(sections.site_keys)], Field(default_factory=list))  # type: ignore[misc]
    if sections.remote_write:
        from exporters.remote_write_settings import RemoteWriteSettings

        optional["remote_write"] = (list[RemoteWriteSettings], Field(default_factory=list))
    model = create_model(
        "Config",
        __base__=Config,
        collectors=(collectors_section, Field(default_factory=collectors_section)),
        targets=(targets_section, Field(default_factory=targets_section)),
        **optional,
    )
    model.KINDS = kinds
    model.SITE_KEYS = sections.site_keys
    return model


def full_config_model() -> type[Config]:
    """The Config model with every section (imports every collector: for tools and tests)."""
    return config_model(Sections(tuple(COLLECTORS), tuple(COLLECTORS.site_keys()), remote_write=True))


def sections_used(data: dict[str, Any]) -> Sections:
    """The sections a raw configuration has: collector kinds it mentions (plus those on by default and
    those a site shorthand generates targets for, in table order), the site shorthand keys it uses, and
    whether there is a ``remote_write:``."""
    used = set(COLLECTORS.default_on())
    for section in ("collectors", "targets"):
        block = data.get(section)
        if isinstance(block, dict):
            used.update(k for k in block if isinstance(k, str) and k in COLLECTORS)
    sites = data.get("sites")
    site_dicts = [s for s in sites if isinstance(s, dict)] if isinstance(sites, list) else []
    keys = tuple(key for key in COLLECTORS.site_keys() if any(key in s for s in site_dicts))
    for key in keys:
        used.update(site_shorthand(key).kinds)
    kinds = tuple(k for k in COLLECTORS if k in used)
    return Sections(kinds, keys, remote_write="remote_write" in data)


def _reword(loc: tuple[int | str, ...], err_type: str, msg: str) -> str:
    if err_type == "extra_forbidden" and len(loc) == 2 and loc[0] in ("collectors", "targets"):
        return f"unknown collector kind; known: {', '.join(COLLECTORS)}"
    return msg


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration with its inventory, and where it came from."""

    path: Path
    config: Config
    inventory: Inventory


def load_config(path: str | Path) -> LoadedConfig:
    """Read, validate and cross-check a configuration file. Raises ``ConfigError`` with every problem."""
    path = Path(path)
    data, root = read_yaml_data(path)  # the node tree is composed again only if there are problems
    return build_config(data, path, root)


def build_config(data: dict[str, Any], path: Path, root: Tree = None) -> LoadedConfig:
    file = str(path)
    problems: list[ConfigProblem] = []
    csv_rows: list[dict[str, str | None]] = []
    csv_file = ""
    if data.get("sites_file"):
        csv_path = Path(str(data["sites_file"]))
        if not csv_path.is_absolute():
            csv_path = path.parent / csv_path
        csv_file = str(csv_path)
        csv_rows, csv_problems = read_sites_csv(csv_path)
        problems += csv_problems
    config: Config | None = None
    generated: dict[str, list[str]] = {}  # site id -> names of the targets its shorthand expanded to
    dir_token = config_dir.set(path.parent)  # files named in the configuration are read from its directory
    try:
        model = config_model(sections_used(data))
        config = model.model_validate(data)
        shorthands = [site_shorthand(key) for key in model.SITE_KEYS]
        if any(getattr(site, sh.key, None) for sh in shorthands for site in config.sites):
            # Site shorthands (links:): generated targets go after the explicit ones.
            targets = {k: list(v or []) for k, v in dict(data.get("targets") or {}).items()}
            for site in config.sites:
                for sh in shorthands:
                    for kind, items in sh.expand(site.id, getattr(site, sh.key, [])).items():
                        targets.setdefault(kind, []).extend(items)
                        generated.setdefault(site.id, []).extend(str(t["name"]) for t in items)
            config = model.model_validate({**data, "targets": targets})
    except ValidationError as exc:
        problems += problems_from_validation(exc, file, root, _reword)
    finally:
        config_dir.reset(dir_token)

    # The site tree is checked even when other sections are invalid, so one run shows every problem.
    yaml_sites: list[tuple[int, SiteConfig]] = []
    if config is not None:
        yaml_sites = list(enumerate(config.sites))
    elif isinstance(data.get("sites"), list):
        for i, raw in enumerate(data["sites"]):
            with contextlib.suppress(ValidationError):  # already reported above with its key path
                yaml_sites.append((i, SiteConfig.model_validate(raw)))
    sites: list[SiteConfig] = [s for _, s in yaml_sites]
    keys = [f"sites[{i}]" for i, _ in yaml_sites]
    for row in csv_rows:
        rowno = row.pop("_row")
        key = f"row {rowno}"
        try:
            site = SiteConfig.model_validate(row)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(ConfigProblem(csv_file, f"{key}.{format_loc(tuple(err['loc']))}", msg))
            continue
        sites.append(site)
        keys.append(key)
    # A site whose shorthand generated targets but that names no uplinks: those targets are its uplinks.
    site_objs = [
        Site(s.id, s.name, s.level, s.parent, tuple(s.uplinks) or tuple(generated.get(s.id, ())))
        for s in sites
    ]
    for p in validate_sites(site_objs, file, keys):
        if p.key.startswith("row "):
            problems.append(ConfigProblem(csv_file, p.key, p.message))
        else:
            problems.append(ConfigProblem(file, p.key, p.message, line_of(root, loc_of(p.key))))
    if config is None:
        # Sites named by the agent and by targets are checked from the raw file too, so a run that
        # found schema errors still shows them (keys the schema already reported are not repeated).
        ids = {s.id for s in sites} | {str(r.get("id")) for r in csv_rows}
        if isinstance(data.get("sites"), list):  # an invalid site is still not an unknown one
            ids |= {str(raw.get("id")) for raw in data["sites"] if isinstance(raw, dict)}
        reported = {p.key for p in problems}
        for loc, site_id in _raw_site_references(data):
            key = format_loc(loc)
            if site_id not in ids and key not in reported:
                problems.append(problem_at(file, root, loc, f"unknown site {site_id!r}"))
        raise ConfigError(problems)

    remote_names: set[str] = set()
    for i, rw in enumerate(config.remote_write):
        if rw.name in remote_names:
            problems.append(
                problem_at(
                    file,
                    root,
                    ("remote_write", i, "name"),
                    f"duplicate remote_write name {rw.name!r}: names must be unique (each owns a buffer directory)",
                )
            )
        remote_names.add(rw.name)
    ids = {s.id for s in sites}
    if config.agent.site is not None and config.agent.site not in ids:
        problems.append(problem_at(file, root, ("agent", "site"), f"unknown site {config.agent.site!r}"))
    names_by_kind: dict[str, set[str]] = {}
    for kind in config.kinds:
        seen: set[str] = set()
        for i, target in enumerate(config.targets_of(kind)):
            if target.site not in ids:
                problems.append(
                    problem_at(file, root, ("targets", kind, i, "site"), f"unknown site {target.site!r}")
                )
            if target.name in seen:
                problems.append(
                    problem_at(
                        file,
                        root,
                        ("targets", kind, i, "name"),
                        f"duplicate {kind} target name {target.name!r}",
                    )
                )
            seen.add(target.name)
        names_by_kind[kind] = seen
        cls = COLLECTORS[kind]
        settings = config.collector_settings(kind)
        # the defaults a target inherits, as the scheduler applies them
        effective = settings.model_copy(
            update={
                "interval": settings.interval or config.agent.interval,
                "timeout": settings.timeout or config.agent.timeout,
            }
        )
        for i, key, msg in cls.check_targets(effective, config.targets_of(kind)):
            problems.append(problem_at(file, root, ("targets", kind, i, key), msg))
    all_names = set().union(*names_by_kind.values()) if names_by_kind else set()
    for i, s in enumerate(config.sites):
        for j, up in enumerate(s.uplinks):
            if up not in all_names:
                problems.append(
                    problem_at(file, root, ("sites", i, "uplinks", j), f"no target is named {up!r}")
                )
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(path=path, config=config, inventory=Inventory(site_objs))


def _raw_site_references(data: dict[str, Any]) -> Iterator[tuple[tuple[int | str, ...], str]]:
    """(key path, site id) of ``agent.site`` and every ``targets.<kind>[i].site`` given as a string."""
    agent = data.get("agent")
    if isinstance(agent, dict) and isinstance(agent.get("site"), str):
        yield ("agent", "site"), agent["site"]
    targets = data.get("targets")
    if not isinstance(targets, dict):
        return
    for kind, items in targets.items():
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("site"), str):
                yield ("targets", kind, i, "site"), item["site"]
