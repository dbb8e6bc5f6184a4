"""Small readers shared by the parts: a number from a sysfs file, key/value tables of /proc files."""

from __future__ import annotations

from collectors.host.files import Files


def number(text: str | None) -> float | None:
    """The number a sysfs attribute holds, or None (missing, empty, not a number)."""
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def read_number(fs: Files, path: str) -> float | None:
    return number(fs.read(path))


def read_str(fs: Files, path: str) -> str | None:
    text = fs.read(path)
    return None if text is None else text.strip()


def header_value_pairs(text: str) -> dict[str, dict[str, str]]:
    """/proc/net/snmp and /proc/net/netstat: a ``Proto: names`` line, then ``Proto: values``."""
    out: dict[str, dict[str, str]] = {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for names_line, values_line in zip(lines[::2], lines[1::2], strict=False):
        proto, _, names = names_line.partition(":")
        proto2, _, values = values_line.partition(":")
        if proto != proto2:
            continue
        out.setdefault(proto.strip(), {}).update(zip(names.split(), values.split(), strict=False))
    return out
