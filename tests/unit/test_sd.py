"""export_sd: the inventory as file_sd target groups, from a real configuration file."""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import load_config
from agent.sd import export_sd

CONFIG = """
sites:
  - {id: hg, name: "Tỉnh Hà Giang", level: province}
  - {id: vx, name: "Huyện Vị Xuyên", level: district, parent: hg, uplinks: [vx-router, vx-backup]}
  - {id: dd, name: "Xã Đạo Đức", level: commune, parent: vx, uplinks: [dd-server]}
collectors:
  ssh:
    auths:
      ops: {username: giamsat, password: "not-used"}
targets:
  ssh:
    - {name: vx-router, site: vx, address: 198.18.0.1, auth: ops}
    - {name: vx-backup, site: vx, address: 198.18.0.2, auth: ops}
    - {name: dd-server, site: dd, address: 198.18.0.3, auth: ops}
"""


def test_no_targets_no_groups(tmp_path: Path) -> None:
    cfg = tmp_path / "giamsat.yml"
    cfg.write_text("sites:\n  - {id: hg, name: Hà Giang, level: province}\n", encoding="utf-8")
    assert export_sd(load_config(cfg)) == []


def test_groups_per_collector_and_site(tmp_path: Path) -> None:
    cfg = tmp_path / "giamsat.yml"
    cfg.write_text(CONFIG, encoding="utf-8")
    groups = export_sd(load_config(cfg))
    assert groups == [
        {
            "targets": ["dd-server"],
            "labels": {
                "__param_module": "ssh",
                "collector": "ssh",
                "site": "dd",
                "site_name": "Xã Đạo Đức",
                "level": "commune",
                "parent": "vx",
            },
        },
        {
            "targets": ["vx-backup", "vx-router"],
            "labels": {
                "__param_module": "ssh",
                "collector": "ssh",
                "site": "vx",
                "site_name": "Huyện Vị Xuyên",
                "level": "district",
                "parent": "hg",
            },
        },
    ]
    # what Prometheus reads: valid JSON, names as written
    text = json.dumps(groups, ensure_ascii=False)
    assert "Xã Đạo Đức" in text and json.loads(text) == groups


def test_shipped_file_sd_job_scrapes_the_agent_per_target(tmp_path: Path) -> None:
    """Prometheus's own view of the exported groups through deploy/prometheus/scrape-file-sd.yml."""
    import subprocess

    import yaml

    cfg = tmp_path / "giamsat.yml"
    cfg.write_text(CONFIG, encoding="utf-8")
    (tmp_path / "targets.json").write_text(json.dumps(export_sd(load_config(cfg)), ensure_ascii=False))
    shipped = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "scrape-file-sd.yml"
    prom = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    prom["scrape_configs"][0]["file_sd_configs"][0]["files"] = [str(tmp_path / "targets.json")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom))
    r = subprocess.run(
        [
            "promtool",
            "check",
            "service-discovery",
            "--timeout=3s",
            str(tmp_path / "prometheus.yml"),
            "giamsat-probe",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    targets = {t["labels"]["target"]: t["labels"] for t in json.loads(r.stdout)}
    assert set(targets) == {"vx-router", "vx-backup", "dd-server"}
    dd = targets["dd-server"]
    assert dd["__address__"] == "127.0.0.1:9469" and dd["__metrics_path__"] == "/probe"
    assert dd["__param_target"] == "dd-server" and dd["__param_module"] == "ssh"
    assert dd["instance"] == "dd-server" and dd["site"] == "dd" and dd["site_name"] == "Xã Đạo Đức"
