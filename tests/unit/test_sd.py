"""export_sd: the inventory as file_sd target groups."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.config import LoadedConfig, load_config
from agent.inventory import Inventory, Level, Site
from agent.sd import export_sd
from collectors import COLLECTORS
from collectors.base import Collector, TargetConfig

CONFIG = """
sites:
  - {id: hg, name: "Tỉnh Hà Giang", level: province}
  - {id: vx, name: "Huyện Vị Xuyên", level: district, parent: hg}
"""


def test_no_targets_no_groups(tmp_path: Path) -> None:
    cfg = tmp_path / "giamsat.yml"
    cfg.write_text(CONFIG, encoding="utf-8")
    assert export_sd(load_config(cfg)) == []


def test_groups_per_collector_and_site(monkeypatch: pytest.MonkeyPatch) -> None:
    # The core has no target-based collector yet, so register one for this test only and hand
    # export_sd a config object answering targets_of() like agent.config.Config does.
    class Tcp(Collector):
        kind = "tcp"
        target_model = TargetConfig

        async def collect(self, target: TargetConfig | None) -> list[Any]:
            return []

    monkeypatch.setitem(COLLECTORS, "tcp", Tcp)
    targets = {
        "tcp": [
            TargetConfig(name="dd-wan", site="dd"),
            TargetConfig(name="vx-wan", site="vx"),
            TargetConfig(name="vx-backup", site="vx"),
        ]
    }
    config = SimpleNamespace(targets_of=lambda kind: targets.get(kind, []))
    inv = Inventory(
        [
            Site("hg", "Tỉnh Hà Giang", Level.province, None),
            Site("vx", "Huyện Vị Xuyên", Level.district, "hg", ("vx-wan", "vx-backup")),
            Site("dd", "Xã Đạo Đức", Level.commune, "vx", ("dd-wan",)),
        ]
    )
    groups = export_sd(LoadedConfig(Path("x.yml"), config, inv))  # type: ignore[arg-type]
    assert groups == [
        {
            "targets": ["dd-wan"],
            "labels": {
                "__param_module": "tcp",
                "collector": "tcp",
                "site": "dd",
                "site_name": "Xã Đạo Đức",
                "level": "commune",
                "parent": "vx",
            },
        },
        {
            "targets": ["vx-backup", "vx-wan"],
            "labels": {
                "__param_module": "tcp",
                "collector": "tcp",
                "site": "vx",
                "site_name": "Huyện Vị Xuyên",
                "level": "district",
                "parent": "hg",
            },
        },
    ]
    assert "Xã Đạo Đức" in json.dumps(groups, ensure_ascii=False)
