"""The agent's garbage-collector thresholds keep a probe round's churn out of the cyclic collector.

Every round allocates tens of objects per target and frees the previous round's: reference counting
frees them, and a young collection would only walk them (60-110 ms each at 5 000 targets, measured).
With the thresholds the agent sets for a configuration (``agent.lifecycle.gc_thresholds``) no young
collection runs in a round of 2 000 real ICMP targets on loopback, rendered for a scrape; with a
threshold below one round's churn (the fixed 50 000 the agent had before was that from ~3 000
targets on), they do.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.config import load_config
from agent.kernel.pipeline import Pipeline
from agent.kernel.store import Store
from agent.lifecycle import gc_thresholds
from agent.scheduler import Runner
from exporters.exposition import ResultRenderCache, render_openmetrics

pytestmark = pytest.mark.root

TARGETS = 2000


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """Young collections seen while the fixture is active; the thresholds restored after."""
    seen: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    before = gc.get_threshold()
    gc.callbacks.append(count)
    try:
        yield seen
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*before)
        gc.unfreeze()


def _rounds_under(tmp_path: Path, thresholds: tuple[int, int, int] | None, seen: list[int]) -> int:
    """Young collections during three measured rounds (each rendered for a scrape), after a first one
    that builds each target's lasting state."""
    cfg = {
        "agent": {"state_dir": str(tmp_path / "state"), "interval": "60s", "timeout": "30s"},
        "sites": [{"id": "tinh", "name": "Tinh", "level": "province"}],
        "collectors": {"host": {"enabled": False}, "textfile": {"enabled": False}},
        "targets": {
            "icmp": [
                {
                    "name": f"t{i}",
                    "site": "tinh",
                    "address": f"127.20.{i // 250}.{i % 250 + 1}",
                    "count": 3,
                    "packet_interval": "20ms",
                    "packet_timeout": "500ms",
                }
                for i in range(TARGETS)
            ]
        },
    }
    (tmp_path / "c.yml").write_text(yaml.safe_dump(cfg))
    loaded = load_config(tmp_path / "c.yml")

    async def go() -> int:
        store = Store()
        runner = Runner(loaded, Pipeline(store))
        cache = ResultRenderCache()
        await runner.open()
        try:
            # as the agent does once a configuration is applied (agent/lifecycle.py)
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            gc.set_threshold(*(thresholds or gc_thresholds(len(runner.jobs))))
            await runner.run_once()
            render_openmetrics(store.snapshot(), [], 200, result_cache=cache)
            gc.collect()
            seen.clear()
            for _ in range(3):
                results = await runner.run_once()
                body, _ = render_openmetrics(store.snapshot(), [], 200, result_cache=cache)
            assert sum(r.success for r in results if r.target) == TARGETS
            assert body.count(b"probe_success{") == TARGETS
            return sum(1 for g in seen if g == 0)
        finally:
            await runner.close()

    return asyncio.run(go())


def test_a_round_of_2000_targets_runs_no_young_collection(tmp_path: Path, collections: list[int]) -> None:
    assert _rounds_under(tmp_path, None, collections) == 0


def test_a_threshold_below_the_churn_does_collect(tmp_path: Path, collections: list[int]) -> None:
    assert _rounds_under(tmp_path, (10_000, 20, 20), collections) >= 1
