"""YAML configuration files read with line numbers, and validation errors turned into problems.

Shared by every file the agent reads (its configuration, the web config, module files): each problem
names the file, the line and the key path, as ``check-config`` prints them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent.kernel.errors import ConfigError, ConfigProblem


def format_loc(loc: tuple[int | str, ...]) -> str:
    """('sites', 3, 'parent') -> 'sites[3].parent'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Line (1-based) of the deepest YAML node on ``loc`` that exists."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == part:
                    line = k.start_mark.line + 1
                    nxt = v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        node = nxt
    if node is not None:
        line = node.start_mark.line + 1
    return line


_FRIENDLY = {
    "extra_forbidden": "unknown key; check its spelling (unknown keys are refused so a typo cannot switch "
    "monitoring off)",
    "missing": "required key is missing",
}


#: (key path, error type, message) -> the message to print; for a caller's own wording of some errors.
MessageHook = Callable[[tuple[int | str, ...], str, str], str]


def problems_from_validation(
    exc: ValidationError, file: str, root: yaml.Node | None, reword: MessageHook | None = None
) -> list[ConfigProblem]:
    """Every error of a pydantic validation as a problem with its file, line and key path."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        msg = _FRIENDLY.get(err["type"], err["msg"])
        if reword is not None:
            msg = reword(loc, err["type"], msg)
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(ConfigProblem(file, format_loc(loc), msg, line_of(root, loc)))
    return problems


def read_yaml_mapping(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """A YAML file's top-level mapping and its node tree (for line numbers). Raises ``ConfigError``."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(file, "", f"not UTF-8 text (byte {exc.start})")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(file, "", f"cannot read: {exc.strerror}")]) from None
    except ValueError:  # a NUL in the path
        raise ConfigError([ConfigProblem(file, "", "cannot read: the file name contains a NUL")]) from None
    try:
        # One parse gives both the node tree (line numbers) and the data: what yaml.safe_load does,
        # keeping the tree (a large inventory took seconds parsed twice).
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise ConfigError([ConfigProblem(file, "", f"invalid YAML: {problem}", line)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(file, "", "the file must be a YAML mapping (key: value)", 1)])
    return data, root


def loc_of(key: str) -> tuple[int | str, ...]:
    """Inverse of ``format_loc`` for keys we generated ourselves."""
    out: list[int | str] = []
    for part in key.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("[") and part.endswith("]") and part[1:-1].isdigit():
            out.append(int(part[1:-1]))
        else:
            out.append(part)
    return tuple(out)


def problem_at(file: str, root: yaml.Node | None, loc: tuple[int | str, ...], msg: str) -> ConfigProblem:
    """A problem at a key path, with the line of the deepest node of that path that exists."""
    return ConfigProblem(file, format_loc(loc), msg, line_of(root, loc))


#: The directory of the configuration file being validated, so a model that names another file (a module
#: file) reads it relative to that directory, as ``sites_file`` is read. Unset: the working directory.
config_dir: contextvars.ContextVar[Path | None] = contextvars.ContextVar("config_dir", default=None)


def relative_to_config(path: Path) -> Path:
    """``path`` as written in the configuration: absolute as is, relative from the file's directory."""
    base = config_dir.get()
    return path if path.is_absolute() or base is None else base / path
