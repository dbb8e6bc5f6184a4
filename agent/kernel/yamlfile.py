"""YAML configuration files read with line numbers, and validation errors turned into problems.

Shared by every file the agent reads (its configuration, the web config, module files): each problem
names the file, the line and the key path, as ``check-config`` prints them.
"""

from __future__ import annotations

import contextvars
import functools
import pickle
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


class LazyTree:
    """The node tree of a text that parsed cleanly, composed again only when a problem needs a line.

    A large configuration's tree (every scalar's marks) costs tens of MiB while it lives, and the data
    built alongside it pins that memory after it is freed; ``read_yaml_data`` drops the tree and keeps
    this instead, so line numbers cost nothing unless the file has problems.
    """

    def __init__(self, text: str) -> None:
        self.text = text

    @functools.cached_property
    def root(self) -> yaml.Node | None:
        loader = (libyaml_loader() or yaml.SafeLoader)(self.text)  # a text that parsed cleanly before
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()


#: Where line numbers come from: a node tree, a text to compose one from, or nothing.
Tree = yaml.Node | LazyTree | None


def line_of(node: Tree, loc: tuple[int | str, ...]) -> int | None:
    """Line (1-based) of the deepest YAML node on ``loc`` that exists."""
    if isinstance(node, LazyTree):
        node = node.root
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
    exc: ValidationError, file: str, root: Tree, reword: MessageHook | None = None
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


#: Deeper nesting is refused before anything walks the document: no configuration needs a tenth of
#: it, and PyYAML and the validators recurse (about 800 levels overflowed the interpreter's stack).
MAX_DEPTH = 64


def read_yaml_mapping(path: Path, empty_ok: bool = False) -> tuple[dict[str, Any], yaml.Node | None]:
    """A YAML file's top-level mapping and its node tree (for line numbers). Raises ``ConfigError``.

    Refused: a key given twice in one mapping (YAML would keep the last one silently: a second
    ``targets:`` dropped the first one's targets), nesting deeper than ``MAX_DEPTH``, and a document
    that is not a mapping. An empty document too unless ``empty_ok``: a truncated file must not
    become a configuration with nothing in it.
    """
    data, root, _text = _read(path, empty_ok)
    return data, root


def read_yaml_data(path: Path, empty_ok: bool = False) -> tuple[dict[str, Any], LazyTree]:
    """``read_yaml_mapping`` for a file whose data is kept as long as the agent runs (its configuration).

    The data is rebuilt after the parser's objects are freed: the strings the parser made sit among
    its freed nodes and marks and keep that memory from being reused or returned (an agent with 5 000
    ICMP targets: 50 MiB more resident after loading, 16 MiB with fresh copies). Line numbers come
    from the text, composed again only if a problem is reported (``LazyTree``).
    """
    data, root, text = _read(path, empty_ok)
    del root
    # An exact copy (aliases stay shared) made of new objects; our own bytes, never a file's.
    fresh: dict[str, Any] = pickle.loads(pickle.dumps(data, pickle.HIGHEST_PROTOCOL))  # noqa: S301
    return fresh, LazyTree(text)


def _read(path: Path, empty_ok: bool) -> tuple[dict[str, Any], yaml.Node | None, str]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(file, "", f"not UTF-8 text (byte {exc.start})")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(file, "", f"cannot read: {exc.strerror}")]) from None
    except ValueError:  # a NUL in the path
        raise ConfigError([ConfigProblem(file, "", "cannot read: the file name contains a NUL")]) from None
    too_deep = ConfigProblem(file, "", f"nested more than {MAX_DEPTH} levels deep")
    fast = libyaml_loader()
    try:
        try:
            root, data = _compose_and_construct(fast or yaml.SafeLoader, file, text)
        except yaml.YAMLError:
            if fast is None:
                raise
            # libyaml words its errors its own way: the pure-Python parser's messages are the ones
            # documented and tested, and a file with an error is read once more only then.
            root, data = _compose_and_construct(yaml.SafeLoader, file, text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise ConfigError([ConfigProblem(file, "", f"invalid YAML: {problem}", line)]) from None
    except RecursionError:  # PyYAML's composer recursed before the depth could be checked
        raise ConfigError([too_deep]) from None
    if data is None:
        if not empty_ok:
            raise ConfigError(
                [
                    ConfigProblem(
                        file, "", "the file is empty (or only comments): a configuration is a mapping"
                    )
                ]
            )
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(file, "", "the file must be a YAML mapping (key: value)", 1)])
    return data, root, text


def _compose_and_construct(loader_cls: Any, file: str, text: str) -> tuple[yaml.Node | None, Any]:
    """One parse gives both the node tree (line numbers) and the data: what ``yaml.safe_load`` does,
    keeping the tree (a large inventory took seconds parsed twice)."""
    loader = loader_cls(text)
    try:
        root = loader.get_single_node()
        problems = check_tree(file, root)
        if problems:
            raise ConfigError(problems)
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


#: Nesting a libyaml build must refuse by itself before its loader is used (see ``libyaml_loader``).
_LIBYAML_PROBE_DEPTH = 1001


@functools.cache
def libyaml_loader() -> Any:
    """PyYAML's libyaml loader (``CSafeLoader``), or None to use the pure-Python one.

    libyaml parses about five times faster (a configuration of 5 000 targets: seconds of reload
    holding the interpreter otherwise) and gives the same nodes, marks and data. But its composer
    recurses in C: a libyaml without a nesting limit (Debian 12's 0.2.5, which a PyYAML built against
    the system library uses) crashes the process on a file nested some hundred thousand levels deep,
    where the Python composer raises ``RecursionError``. PyYAML's wheels bundle a libyaml that
    refuses more than 1 000 levels; it is used only where that refusal is seen.
    """
    loader_cls = getattr(yaml, "CSafeLoader", None)
    if loader_cls is None:
        return None
    depth = _LIBYAML_PROBE_DEPTH
    loader = loader_cls("[" * depth + "]" * depth)  # deep enough to tell, shallow enough to compose
    try:
        loader.get_single_node()
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(exc):
            return loader_cls
    finally:
        loader.dispose()
    return None


def check_tree(file: str, root: yaml.Node | None) -> list[ConfigProblem]:
    """Keys given twice in one mapping (each at its second line, naming the first) and nesting deeper
    than ``MAX_DEPTH``. Iterative: the tree may be as deep as the parser allowed."""
    problems: list[ConfigProblem] = []
    if root is None:
        return problems
    stack: list[tuple[yaml.Node, tuple[int | str, ...]]] = [(root, ())]
    seen_nodes: set[int] = set()  # aliases share nodes
    while stack:
        node, loc = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if len(loc) > MAX_DEPTH:
            return [
                ConfigProblem(file, format_loc(loc[:3]) + "...", f"nested more than {MAX_DEPTH} levels deep")
            ]
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            children = []
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    line = k.start_mark.line + 1
                    if k.value in first:
                        problems.append(
                            ConfigProblem(
                                file,
                                format_loc((*loc, k.value)),
                                f"duplicate key: also given at line {first[k.value]}; YAML would keep "
                                "only the last one, so give it once",
                                line,
                            )
                        )
                    else:
                        first[k.value] = line
                    children.append((v, (*loc, k.value)))
                else:
                    children.append((v, (*loc, "<<")))
            stack.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed([(v, (*loc, i)) for i, v in enumerate(node.value)]))
    problems.sort(key=lambda p: p.line or 0)
    return problems


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


def problem_at(file: str, root: Tree, loc: tuple[int | str, ...], msg: str) -> ConfigProblem:
    """A problem at a key path, with the line of the deepest node of that path that exists."""
    return ConfigProblem(file, format_loc(loc), msg, line_of(root, loc))


#: The directory of the configuration file being validated, so a model that names another file (a module
#: file) reads it relative to that directory, as ``sites_file`` is read. Unset: the working directory.
config_dir: contextvars.ContextVar[Path | None] = contextvars.ContextVar("config_dir", default=None)


def relative_to_config(path: Path) -> Path:
    """``path`` as written in the configuration: absolute as is, relative from the file's directory."""
    base = config_dir.get()
    return path if path.is_absolute() or base is None else base / path
