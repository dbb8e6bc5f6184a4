"""Every benchmark still imports against the tree: benches run by hand, so a renamed or removed name
they use would otherwise only show when someone next measures (bench/ssh.py once imported a constant
the SSH collector no longer had)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODULES = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__")


def test_there_are_benchmarks() -> None:
    assert {"icmp", "scrape", "ssh", "config_load"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    if name != "common":
        assert callable(getattr(module, "main", None)), f"bench/{name}.py has no main()"
