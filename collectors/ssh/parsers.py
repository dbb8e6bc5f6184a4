"""Pure parsers for the text the SSH collector reads on remote hosts: no I/O, so each is tested alone.

``df -P`` (the ``linux`` module's fallback for hosts without ``stat -f``, busybox) and the user-defined
command parsers; the /proc and /sys files are parsed by the host collector's own parts
(``collectors.ssh.linux``). Every parser raises ``ParseError`` on input it cannot make sense of, never
returns half-guessed numbers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any


class ParseError(ValueError):
    """The remote output is not what the parser expects; the message says where."""


# ---------------------------------------------------------------------------------------------------
# df -P [-T] [-k]
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DfRow:
    device: str
    fstype: str
    mountpoint: str
    size_bytes: float
    free_bytes: float
    avail_bytes: float


_DF_WITH_TYPE = re.compile(r"^(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+%|-)\s+(/.*)$")
_DF_NO_TYPE = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+%|-)\s+(/.*)$")
_DF_BLOCKS = re.compile(r"(\d+)-blocks")


def parse_df(text: str) -> list[DfRow]:
    """POSIX ``df -P`` output, with or without GNU/busybox ``-T`` (a ``Type`` column).

    The block size is read from the header (``1024-blocks``, ``512-blocks``). ``free`` is size minus
    used, which is what statvfs's f_bfree gives node_exporter. A line that does not fit the columns (a
    device name with spaces) is skipped rather than mislabelled; output with no usable line is an error.
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ParseError("df: empty output")
    header = lines[0].split()
    if not header or header[0] != "Filesystem":
        raise ParseError("df: missing 'Filesystem' header; is this df -P output?")
    m = _DF_BLOCKS.search(lines[0])
    if not m:
        raise ParseError("df: header has no N-blocks column; run df with -P")
    block = float(m.group(1))
    typed = len(header) > 1 and header[1] == "Type"
    rows: list[DfRow] = []
    for line in lines[1:]:
        if typed:
            t = _DF_WITH_TYPE.match(line)
            if not t:
                continue
            device, fstype, size, used, avail, _cap, mount = t.groups()
        else:
            u = _DF_NO_TYPE.match(line)
            if not u:
                continue
            device, size, used, avail, _cap, mount = u.groups()
            fstype = ""
        size_b = float(size) * block
        rows.append(DfRow(device, fstype, mount, size_b, size_b - float(used) * block, float(avail) * block))
    if len(lines) > 1 and not rows:
        raise ParseError(f"df: no line could be read, first one: {lines[1][:80]!r}")
    return rows


# ---------------------------------------------------------------------------------------------------
# user-defined parsers: number, regex, key=value, JSON
# ---------------------------------------------------------------------------------------------------
def to_number(value: Any, what: str = "value") -> float:
    """A number from parsed text or JSON: ints, floats, numeric strings, true/false. NaN/Inf refused."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        s = value.strip()
        if s.lower() in ("true", "false"):
            return 1.0 if s.lower() == "true" else 0.0
        try:
            out = float(s)
        except ValueError:
            raise ParseError(f"{what}: {s[:40]!r} is not a number") from None
    else:
        raise ParseError(f"{what}: expected a number, got {type(value).__name__}")
    if not math.isfinite(out):
        raise ParseError(f"{what}: not a finite number")
    return out


def parse_number(text: str) -> float:
    """The whole output is one number (surrounding whitespace ignored)."""
    s = text.strip()
    if not s:
        raise ParseError("number: empty output")
    return to_number(s, "number")


def parse_regex(text: str, pattern: re.Pattern[str]) -> list[dict[str, str]]:
    """Every match of ``pattern`` (MULTILINE is the caller's choice) -> its named groups."""
    out = []
    for m in pattern.finditer(text):
        out.append({k: v for k, v in m.groupdict().items() if v is not None})
    return out


def parse_keyvalue(text: str, separator: str = "=") -> dict[str, str]:
    """``key=value`` lines (blank lines and ``#`` comments skipped; the last of a repeated key wins)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        key, sep, value = s.partition(separator)
        if not sep:
            raise ParseError(f"key/value: line without {separator!r}: {s[:80]!r}")
        out[key.strip()] = value.strip().strip('"')
    return out


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"json: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def json_path(doc: Any, path: str) -> Any:
    """A dotted path into a JSON document: ``a.b.0.c`` (a number indexes a list)."""
    node = doc
    for part in path.split(".") if path else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            raise ParseError(f"json: path {path!r} not found (at {part!r})")
    return node
