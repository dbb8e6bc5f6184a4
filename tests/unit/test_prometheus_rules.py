"""The shipped Prometheus rules, configs and Alertmanager example, checked by the real tools."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "rules" / "giamsat.rules.yml"
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=DEPLOY)


def test_promtool_check_rules() -> None:
    r = _run("promtool", "check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_unit_tests_pass() -> None:
    r = _run("promtool", "test", "rules", "tests/giamsat.rules.test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_section() -> None:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((DEPLOY / "tests" / "giamsat.rules.test.yml").read_text(encoding="utf-8"))
    fired = {
        t["alertname"]
        for group in tests["tests"]
        for t in group.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert set(alerts) <= fired, f"alerts without a firing test: {set(alerts) - fired}"
    runbook = RUNBOOK.read_text(encoding="utf-8")
    anchors = {m.lower() for m in re.findall(r"^## (\w+)", runbook, flags=re.M)}
    for name, rule in alerts.items():
        ann = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(ann), name
        assert ann["runbook"].startswith(f"docs/runbook.md#{name.lower()}:"), name
        assert name.lower() in anchors, f"docs/runbook.md has no section for {name}"


def test_prometheus_configs_are_valid() -> None:
    for cfg in ("prometheus.yml", "scrape-file-sd.yml"):
        r = _run("promtool", "check", "config", cfg)
        assert r.returncode == 0, cfg + r.stdout + r.stderr


def test_alertmanager_config_is_valid() -> None:
    r = _run("amtool", "check-config", "alertmanager.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 inhibit rules" in r.stdout
