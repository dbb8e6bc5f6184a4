"""Pure parsers for the text the SSH collector reads on remote hosts: no I/O, so each is tested alone.

The /proc and ``df -P`` parsers follow node_exporter's reading of the same files (procfs library), so
the ``linux`` module's figures match what node_exporter would report on that host. Every parser raises
``ParseError`` on input it cannot make sense of, never returns half-guessed numbers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from collectors.host.parts import meminfo


class ParseError(ValueError):
    """The remote output is not what the parser expects; the message says where."""


# ---------------------------------------------------------------------------------------------------
# several files in one command: `tail -n +1 f1 f2 ...` prints "==> f1 <==" before each file
# ---------------------------------------------------------------------------------------------------
_HEADER = re.compile(r"^==> (.+) <==$")


def split_sections(text: str) -> dict[str, str]:
    """Output of ``tail -n +1 FILE...`` (or ``head``) -> {file name: content}."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            current = sections.setdefault(m.group(1), [])
            continue
        if current is None:
            if line.strip():
                raise ParseError("output does not start with a '==> file <==' header")
            continue
        current.append(line)
    return {name: "\n".join(lines).strip("\n") + "\n" for name, lines in sections.items()}


# ---------------------------------------------------------------------------------------------------
# /proc/loadavg
# ---------------------------------------------------------------------------------------------------
def parse_loadavg(text: str) -> tuple[float, float, float]:
    """``0.52 0.58 0.59 1/467 12345`` -> (load1, load5, load15)."""
    parts = text.split()
    if len(parts) < 3:
        raise ParseError(f"/proc/loadavg: expected at least 3 fields, got {len(parts)}")
    try:
        return float(parts[0]), float(parts[1]), float(parts[2])
    except ValueError:
        raise ParseError("/proc/loadavg: load averages are not numbers") from None


# ---------------------------------------------------------------------------------------------------
# /proc/meminfo
# ---------------------------------------------------------------------------------------------------
def parse_meminfo(text: str) -> dict[str, float]:
    """/proc/meminfo -> {node_exporter metric suffix: value}, by the host collector's parser (one parser
    for both transports); output without a MemTotal line is not /proc/meminfo."""
    out = meminfo.parse_meminfo(text)
    if "MemTotal_bytes" not in out:
        raise ParseError("/proc/meminfo: no MemTotal line")
    return out


# ---------------------------------------------------------------------------------------------------
# /proc/stat
# ---------------------------------------------------------------------------------------------------
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass
class ProcStat:
    """What node_exporter's cpu and stat collectors take from /proc/stat, in seconds and counts."""

    cpu_seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # cpu -> mode -> seconds
    guest_seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # cpu -> user|nice
    boot_time: float | None = None
    context_switches: float | None = None
    forks: float | None = None
    interrupts: float | None = None
    procs_running: float | None = None
    procs_blocked: float | None = None


def parse_stat(text: str, user_hz: float = 100.0) -> ProcStat:
    """/proc/stat -> per-cpu seconds per mode (jiffies / USER_HZ) and the system-wide counters.

    Guest time is already included in user/nice, so it is reported apart (as node_exporter does) and
    not subtracted.
    """
    st = ProcStat()
    scalars = {
        "btime": "boot_time",
        "ctxt": "context_switches",
        "processes": "forks",
        "intr": "interrupts",
        "procs_running": "procs_running",
        "procs_blocked": "procs_blocked",
    }
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        try:
            if key.startswith("cpu") and key != "cpu":
                cpu = key[3:]
                if not cpu.isdigit():
                    raise ParseError(f"/proc/stat: unexpected cpu line {key!r}")
                values = [float(v) / user_hz for v in parts[1:]]
                if len(values) < 4:
                    raise ParseError(f"/proc/stat: {key} has {len(values)} fields, expected at least 4")
                st.cpu_seconds[cpu] = dict(zip(CPU_MODES, values, strict=False))
                if len(values) >= 10:
                    st.guest_seconds[cpu] = {"user": values[8], "nice": values[9]}
                elif len(values) == 9:
                    st.guest_seconds[cpu] = {"user": values[8], "nice": 0.0}
            elif key in scalars and len(parts) >= 2:
                setattr(st, scalars[key], float(parts[1]))
        except ValueError:
            raise ParseError(f"/proc/stat: non-numeric field on line {key!r}") from None
    if not st.cpu_seconds:
        raise ParseError("/proc/stat: no per-cpu lines")
    return st


# ---------------------------------------------------------------------------------------------------
# /proc/net/dev
# ---------------------------------------------------------------------------------------------------
NET_DEV_FIELDS = (
    "receive_bytes",
    "receive_packets",
    "receive_errs",
    "receive_drop",
    "receive_fifo",
    "receive_frame",
    "receive_compressed",
    "receive_multicast",
    "transmit_bytes",
    "transmit_packets",
    "transmit_errs",
    "transmit_drop",
    "transmit_fifo",
    "transmit_colls",
    "transmit_carrier",
    "transmit_compressed",
)


def parse_net_dev(text: str) -> dict[str, dict[str, float]]:
    """/proc/net/dev -> {device: {receive_bytes: ..., transmit_colls: ...}} (node_exporter's field names)."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if "|" in line or not line.strip():  # the two header lines
            continue
        name, sep, rest = line.partition(":")
        if not sep:
            raise ParseError(f"/proc/net/dev: unexpected line {line[:80]!r}")
        values = rest.split()
        if len(values) != len(NET_DEV_FIELDS):
            raise ParseError(f"/proc/net/dev: {name.strip()} has {len(values)} fields, expected 16")
        try:
            out[name.strip()] = {f: float(v) for f, v in zip(NET_DEV_FIELDS, values, strict=True)}
        except ValueError:
            raise ParseError(f"/proc/net/dev: non-numeric field for {name.strip()}") from None
    return out


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
