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


def _duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for n, unit in re.findall(r"(\d+)(ms|s|m|h)", text):
        total += int(n) * units[unit]
    return total


def test_shipped_timings_are_the_ones_the_outage_budget_is_worked_out_for() -> None:
    """docs/alerts.md works cut -> page and restore -> resolved out from these numbers; a change here
    must change that page (and be measured again with `make drill`)."""
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    assert prom["global"]["scrape_interval"] == prom["global"]["evaluation_interval"] == "10s"
    agent_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "giamsat")
    assert agent_job.get("scrape_interval", "10s") == "10s"
    datasource = yaml.safe_load(
        (DEPLOY.parent / "grafana" / "provisioning" / "datasources" / "giamsat.yml").read_text(
            encoding="utf-8"
        )
    )
    assert datasource["datasources"][0]["jsonData"]["timeInterval"] == prom["global"]["scrape_interval"]
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert _duration(alerts["SiteDown"]["for"]) <= 10
    # failed scrapes (an agent restarting) do not resolve a site alert: two of them are bridged; not
    # more, since every evaluation kept adds to restore -> resolved
    for name in ("SiteDown", "SiteUnreachable"):
        assert 10 < _duration(alerts[name]["keep_firing_for"]) <= 20, name
    # ... and the site alerts evaluate with the records they join on, in one group, after them
    group = next(g for g in rules["groups"] if any(r.get("alert") == "SiteDown" for r in g["rules"]))
    names = [r.get("record") or r.get("alert") for r in group["rules"]]
    assert names.index("site:giamsat_site:info") < names.index("SiteDown") < names.index("SiteUnreachable")
    assert "interval" not in group


def test_pages_warnings_and_inventory_go_to_separate_receivers_on_this_machine() -> None:
    am = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text(encoding="utf-8"))
    routes = {tuple(r["matchers"]): r for r in am["route"]["routes"]}
    page = routes[('severity="critical"',)]
    info = routes[('severity="info"',)]
    default = am["route"]["receiver"]
    assert len({page["receiver"], info["receiver"], default}) == 3
    assert _duration(page["group_wait"]) <= 10 and _duration(page["group_interval"]) <= 20
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    severity = {
        r["alert"]: r["labels"]["severity"] for g in rules["groups"] for r in g["rules"] if "alert" in r
    }
    assert severity["SiteCoverageGap"] == "info"  # coverage gaps never page
    assert severity["SiteUnreachable"] == severity["LinkDegraded"] == "warning"
    assert severity["SiteDown"] == "critical"
    for receiver in am["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}, receiver  # no SMTP server that is not there
        for hook in receiver["webhook_configs"]:
            assert hook["url"].startswith("http://127.0.0.1:") and hook["send_resolved"]
