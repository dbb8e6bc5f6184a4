"""The house's one-way rule, checked on the import graph of the source tree (every import statement, also
inside functions and ``TYPE_CHECKING`` blocks, and ``importlib.import_module`` of a literal name):

- ``agent.kernel`` imports nothing of the project but the kernel;
- ``collectors`` imports the kernel and collectors only (never the application or the exporters);
- ``exporters`` imports the kernel and exporters only (never the application or the collectors);
- the application (the rest of ``agent``) may import anything, but the ``agent`` package itself imports
  nothing, since importing the kernel runs it;
- within the application, ``agent.ledger`` imports the kernel, ``agent.inventory`` and itself only (it is
  handed site states, it never reads the tracker, the scheduler or the endpoint), and ``agent.report``
  the kernel, ``agent.inventory``, ``agent.ledger`` and itself only (``giamsat report`` runs without the
  running agent); ``agent.inventory`` imports the kernel only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("agent", "collectors", "exporters")


def layer(module: str) -> str | None:
    """The layer a project module belongs to, or None for a module outside the project."""
    top = module.split(".", 1)[0]
    if top not in PACKAGES:
        return None
    for sub in ("kernel", "ledger", "report", "inventory"):
        if module == f"agent.{sub}" or module.startswith(f"agent.{sub}."):
            return sub
    if top == "agent":
        return "application"
    return top


ALLOWED = {
    "kernel": {"kernel"},
    "collectors": {"kernel", "collectors"},
    "exporters": {"kernel", "exporters"},
    "ledger": {"kernel", "inventory", "ledger"},
    "report": {"kernel", "inventory", "ledger", "report"},
    "inventory": {"kernel", "inventory"},
    "application": {"kernel", "collectors", "exporters", "application", "ledger", "report", "inventory"},
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, imported module) of every import in ``source``; relative imports resolved."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # ``from agent import config`` imports the module agent.config
                yield node.lineno, f"{target}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def violations(files: Iterable[tuple[str, str, bool]]) -> list[str]:
    """Every import that breaks the rule, as ``module:line imports target (layer -> layer)``."""
    out = []
    for module, source, is_package in files:
        own = layer(module)
        if own is None:
            continue
        for line, target in imports(source, module, is_package):
            other = layer(target)
            if other is None or target in PACKAGES:
                continue  # outside the project, or a bare top-level package name from ``from x import y``
            if module == "agent":
                out.append(f"{module}:{line} imports {target} (the agent package must import nothing)")
            elif other not in ALLOWED[own]:
                out.append(f"{module}:{line} imports {target} ({own} -> {other})")
    return out


def source_tree() -> list[tuple[str, str, bool]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out.append(
                (module_name(path, ROOT), path.read_text(encoding="utf-8"), path.name == "__init__.py")
            )
    return out


def test_the_source_tree_keeps_the_one_way_rule() -> None:
    files = source_tree()
    assert len(files) > 40  # the walk found the tree
    assert {layer(m) for m, _, _ in files} == {
        "kernel",
        "application",
        "collectors",
        "exporters",
        "ledger",
        "report",
        "inventory",
    }
    assert violations(files) == []


def test_the_check_catches_each_kind_of_violation() -> None:
    """The rule is only as good as its check: each forbidden arrow is reported, by line."""
    bad = [
        ("agent.kernel.pipeline", "from agent.config import LoadedConfig\n", False),
        ("agent.kernel.store", "def f():\n    from collectors.snmp import SnmpCollector\n", False),
        ("agent.kernel.collector", "from ..scheduler import Runner\n", False),
        ("collectors.snmp.collector", "import agent.lifecycle\n", False),
        ("collectors.probes.icmp", "from exporters.exposition import render_text\n", False),
        ("exporters.prometheus", "from agent import config\n", False),
        ("exporters.remote_write", "import importlib\nimportlib.import_module('collectors.host')\n", False),
        ("agent", "from agent.kernel.version import __version__\n", True),
        ("agent.ledger.recorder", "from agent.sites import SiteTracker\n", False),
        ("agent.report.live", "def f():\n    import agent.lifecycle\n", False),
        ("agent.report.main", "import exporters.prometheus\n", False),
        ("agent.inventory", "from agent.config import LoadedConfig\n", False),
    ]
    found = violations(bad)
    assert found == [
        "agent.kernel.pipeline:1 imports agent.config (kernel -> application)",
        "agent.kernel.pipeline:1 imports agent.config.LoadedConfig (kernel -> application)",
        "agent.kernel.store:2 imports collectors.snmp (kernel -> collectors)",
        "agent.kernel.store:2 imports collectors.snmp.SnmpCollector (kernel -> collectors)",
        "agent.kernel.collector:1 imports agent.scheduler (kernel -> application)",
        "agent.kernel.collector:1 imports agent.scheduler.Runner (kernel -> application)",
        "collectors.snmp.collector:1 imports agent.lifecycle (collectors -> application)",
        "collectors.probes.icmp:1 imports exporters.exposition (collectors -> exporters)",
        "collectors.probes.icmp:1 imports exporters.exposition.render_text (collectors -> exporters)",
        "exporters.prometheus:1 imports agent.config (exporters -> application)",
        "exporters.remote_write:2 imports collectors.host (exporters -> collectors)",
        "agent:1 imports agent.kernel.version (the agent package must import nothing)",
        "agent:1 imports agent.kernel.version.__version__ (the agent package must import nothing)",
        "agent.ledger.recorder:1 imports agent.sites (ledger -> application)",
        "agent.ledger.recorder:1 imports agent.sites.SiteTracker (ledger -> application)",
        "agent.report.live:2 imports agent.lifecycle (report -> application)",
        "agent.report.main:1 imports exporters.prometheus (report -> exporters)",
        "agent.inventory:1 imports agent.config (inventory -> application)",
        "agent.inventory:1 imports agent.config.LoadedConfig (inventory -> application)",
    ]
    # Allowed arrows stay quiet: the application imports everything, the kernel itself.
    assert (
        violations(
            [
                (
                    "agent.lifecycle",
                    "from collectors import COLLECTORS\nimport exporters.prometheus\n",
                    False,
                ),
                (
                    "agent.kernel.pipeline",
                    "from agent.kernel.store import Store\nfrom . import results\n",
                    False,
                ),
                ("collectors.ssh.collector", "from agent.kernel.resolver import Resolver\n", False),
                (
                    "agent.report.from_ledger",
                    "from agent.ledger.book import Book\nfrom agent.inventory import Inventory\n",
                    False,
                ),
                ("agent.lifecycle", "from agent.ledger.recorder import LedgerRecorder\n", False),
            ]
        )
        == []
    )
