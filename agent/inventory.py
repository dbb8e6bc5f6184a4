"""The site hierarchy: province -> (optional district-era aggregation node) -> commune.

Since the 2025 reform many communes hang directly under the province while the network still has
district-era aggregation nodes, so a level only has to be *below* its parent's, not exactly one below.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from agent.kernel.errors import ConfigProblem


class Level(IntEnum):
    """Administrative level; a smaller number is higher up."""

    province = 0
    district = 1
    commune = 2


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    level: Level
    parent: str | None
    uplinks: tuple[str, ...] = ()


class Inventory:
    """Validated, immutable site tree."""

    def __init__(self, sites: Iterable[Site]) -> None:
        self.sites: dict[str, Site] = {s.id: s for s in sites}
        self.children: dict[str, list[str]] = {sid: [] for sid in self.sites}
        for s in self.sites.values():
            if s.parent is not None:
                self.children[s.parent].append(s.id)

    def __len__(self) -> int:
        return len(self.sites)

    def __iter__(self) -> Iterator[Site]:
        return iter(self.sites.values())

    def __contains__(self, site_id: object) -> bool:
        return site_id in self.sites

    def ancestors(self, site_id: str) -> list[str]:
        """Parent first, root last."""
        out: list[str] = []
        parent = self.sites[site_id].parent
        while parent is not None:
            out.append(parent)
            parent = self.sites[parent].parent
        return out

    def descendants(self, site_id: str) -> list[str]:
        out: list[str] = []
        stack = list(self.children[site_id])
        while stack:
            sid = stack.pop()
            out.append(sid)
            stack.extend(self.children[sid])
        return out


def validate_sites(sites: list[Site], file: str, keys: list[str]) -> list[ConfigProblem]:
    """Every problem with a list of sites: duplicate ids, unknown parents, level order, cycles.

    ``keys[i]`` says where ``sites[i]`` was defined (``sites[3]`` or ``row 5`` of the CSV). A duplicate
    id is reported where it is repeated, naming where it was first defined.
    """
    problems: list[ConfigProblem] = []
    seen: dict[str, Site] = {}
    key_of: dict[str, str] = {}
    for s, key in zip(sites, keys, strict=True):
        if s.id in seen:
            problems.append(
                ConfigProblem(
                    file, f"{key}.id", f"duplicate site id {s.id!r}: first defined at {key_of[s.id]}"
                )
            )
            continue
        seen[s.id] = s
        key_of[s.id] = key
    for s in seen.values():
        key = key_of.get(s.id, "sites")
        if s.parent is None:
            continue
        if s.parent == s.id:
            problems.append(ConfigProblem(file, f"{key}.parent", f"site {s.id!r} is its own parent"))
            continue
        parent = seen.get(s.parent)
        if parent is None:
            problems.append(ConfigProblem(file, f"{key}.parent", f"unknown parent site {s.parent!r}"))
        elif s.level <= parent.level:
            problems.append(
                ConfigProblem(
                    file,
                    f"{key}.level",
                    f"a {s.level.name} cannot be under a {parent.level.name} ({parent.id!r}); "
                    "a site's level must be below its parent's",
                )
            )
    # Cycles: only possible among sites whose parents exist; level order already forbids them, but a
    # cycle report is clearer than three level errors when someone swaps two parents.
    reported: set[str] = set()
    for start in seen:
        path: list[str] = []
        cur: str | None = start
        while cur is not None and cur in seen and cur not in path:
            path.append(cur)
            cur = seen[cur].parent
        if cur is not None and cur in path:
            cycle = path[path.index(cur) :]
            if not reported.intersection(cycle):
                reported.update(cycle)
                chain = " -> ".join([*cycle, cur])
                problems.append(
                    ConfigProblem(file, f"{key_of.get(cur, 'sites')}.parent", f"parent cycle: {chain}")
                )
    return problems


CSV_COLUMNS = ("id", "name", "level", "parent")


def read_sites_csv(path: Path) -> tuple[list[dict[str, str | None]], list[ConfigProblem]]:
    """Read the spreadsheet sysadmins keep: a header with id,name,level,parent (uplinks optional).

    UTF-8 with or without the BOM that spreadsheet programs write; comma or semicolon separated.
    Returns raw rows for the config model to validate, with the row number in ``_row``.
    """
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [
            ConfigProblem(file, "", f"not UTF-8 text (byte {exc.start}); save the sheet as CSV UTF-8")
        ]
    except OSError as exc:
        return [], [ConfigProblem(file, "", f"cannot read: {exc.strerror}")]
    except ValueError:  # a NUL in the path (found by tests/unit/test_fuzz_config.py)
        return [], [ConfigProblem(file, "", "cannot read: the file name contains a NUL character")]
    first = text.splitlines()[0] if text else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS[:3] if c not in header]
    if missing:
        return [], [
            ConfigProblem(
                file, "header", f"missing column(s) {', '.join(missing)}; need {','.join(CSV_COLUMNS)}"
            )
        ]
    allowed = {*CSV_COLUMNS, "uplinks"}
    unknown = [h for h in header if h not in allowed]
    if unknown:
        return [], [ConfigProblem(file, "header", f"unknown column(s) {', '.join(unknown)}")]
    rows: list[dict[str, str | None]] = []
    problems: list[ConfigProblem] = []
    columns = ",".join(header)
    for raw in reader:
        rowno = reader.line_num  # the line the row ends on (a quoted value may span lines)
        extra = [v for v in raw.get(None) or [] if v.strip()]
        short = [k.strip().lower() for k, v in raw.items() if k is not None and v is None]
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()) and not extra:
            continue
        if extra:
            problems.append(
                ConfigProblem(
                    file,
                    f"row {rowno}",
                    f"more values than the {len(header)} columns ({columns}): extra "
                    f"{', '.join(repr(v) for v in extra)}; a name with a {delimiter!r} in it must be "
                    'quoted ("...")',
                )
            )
            continue
        missing = [c for c in short if c in CSV_COLUMNS[:3]]
        if missing:
            given = len(header) - len(short)
            problems.append(
                ConfigProblem(
                    file,
                    f"row {rowno}",
                    f"only {given} of the {len(header)} columns ({columns}): {', '.join(missing)} missing",
                )
            )
            continue
        out: dict[str, str | None] = {"_row": str(rowno)}
        for k, v in row.items():
            out[k] = v if v != "" else None
        rows.append(out)
    return rows, problems
