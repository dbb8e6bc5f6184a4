"""The shipped Grafana dashboards: generated JSON is current, well-formed, and every query parses."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("giamsat_grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_json_is_what_the_generator_writes() -> None:
    gen = load_generator()
    for name, build in gen.BOARDS.items():
        committed = (GRAFANA / "dashboards" / f"{name}.json").read_text(encoding="utf-8")
        assert committed == gen.render(build()), (
            f"{name}.json is stale: run python3 deploy/grafana/generate.py"
        )
    assert {p.stem for p in (GRAFANA / "dashboards").glob("*.json")} == set(gen.BOARDS)


def test_dashboards_are_well_formed_and_keep_vietnamese_text() -> None:
    uids = set()
    for path in (GRAFANA / "dashboards").glob("*.json"):
        raw = path.read_text(encoding="utf-8")
        assert "\\u" not in raw  # names as given, not escaped
        d = json.loads(raw)
        uids.add(d["uid"])
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for p in d["panels"]:
            if p["type"] != "row":
                assert p["targets"], (path.name, p["title"])
                assert p["datasource"]["uid"] == "${datasource}"
    assert len(uids) == 3
    assert "Tổng quan tỉnh" in (GRAFANA / "dashboards" / "province-overview.json").read_text(encoding="utf-8")


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule: a typo fails here, not in front of a user."""
    gen = load_generator()
    rules = []
    for name, build in gen.BOARDS.items():
        for i, (_title, expr) in enumerate(
            gen.panel_queries(build().to_json(), {"site": "x", "province": "x", "instance": "x"})
        ):
            rules.append({"record": f"check:{name.replace('-', '_')}:{i}", "expr": expr})
    f = tmp_path / "panels.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}, allow_unicode=True))
    r = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(rules) >= 30


def test_provisioning_files_point_at_the_dashboards() -> None:
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "giamsat.yml").read_text())
    assert prov["apiVersion"] == 1 and prov["providers"][0]["type"] == "file"
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "giamsat.yml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"


def _panel(board: dict, title_start: str) -> dict:  # type: ignore[type-arg]
    return next(p for p in board["panels"] if p["title"].startswith(title_start))


def test_current_outages_table_shows_the_state_of_each_site() -> None:
    """A sysadmin must tell the failed district (down) from the communes cut off behind it
    (unreachable): the state column is shown, with a text and colour per state."""
    board = json.loads((GRAFANA / "dashboards" / "province-overview.json").read_text(encoding="utf-8"))
    panel = _panel(board, "Đang mất kết nối")
    organize = next(t for t in panel["transformations"] if t["id"] == "organize")["options"]
    assert not organize["excludeByName"].get("state")
    assert organize["renameByName"]["state"] == "Trạng thái / state"
    (override,) = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "state"]
    mapped = override["properties"][0]["value"][0]["options"]
    assert set(mapped) == {"down", "unreachable"}
    # the other tables still hide the labels they do not name
    gaps = next(t for t in _panel(board, "Chưa từng kết nối")["transformations"] if t["id"] == "organize")
    assert gaps["options"]["excludeByName"]["level"] is True


def test_availability_table_leaves_never_connected_sites_out() -> None:
    """Its series comes from site:giamsat_site_up:max, which the rules leave empty for coverage gaps
    (deploy/prometheus/tests checks the value); the table reads that series and nothing else."""
    board = json.loads((GRAFANA / "dashboards" / "province-overview.json").read_text(encoding="utf-8"))
    expr = _panel(board, "Sẵn sàng 30 ngày")["targets"][0]["expr"]
    assert "site:giamsat_site_availability:ratio_30d" in expr
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules" / "giamsat.rules.yml").read_text())
    up = next(r for g in rules["groups"] for r in g["rules"] if r.get("record") == "site:giamsat_site_up:max")
    assert "giamsat_site_coverage_gap" in up["expr"] and "unless" in up["expr"]
