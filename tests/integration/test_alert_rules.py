"""The alerting rules: valid for Prometheus, each one tested by `promtool test rules`, each one
explained in deploy/README.md, and reading only metrics the services define."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_deploy_files import DEPLOY, _exposed_metrics, _metric_names

PROMETHEUS = DEPLOY / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TESTS = sorted((PROMETHEUS / "tests").glob("*_test.yml"))


def promtool() -> str:
    """Debian's promtool (scripts/bootstrap installs it as root); skips only where it cannot."""
    found = shutil.which("promtool")
    if found is None:
        if os.geteuid() == 0:
            pytest.fail(
                "promtool is missing: run scripts/bootstrap (it installs Debian's prometheus)"
            )
        pytest.skip("promtool is missing and this is not root: sudo apt-get install -y prometheus")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_rule_files_are_valid() -> None:
    assert RULES
    result = _run("check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_loads_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    loaded = {p for pattern in config["rule_files"] for p in PROMETHEUS.glob(pattern)}
    assert loaded == set(RULES)
    result = _run("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    assert TESTS
    result = _run("test", "rules", *map(str, TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_tests_fail_on_a_wrong_expectation(tmp_path: Path) -> None:
    (test,) = TESTS
    (tmp_path / "rules").mkdir()
    for rules in RULES:
        shutil.copy(rules, tmp_path / "rules" / rules.name)
    (tmp_path / "tests").mkdir()
    broken = test.read_text().replace("description: 60 jobs failed", "description: 61 jobs failed")
    assert broken != test.read_text()
    (tmp_path / "tests" / test.name).write_text(broken)
    assert _run("test", "rules", str(tmp_path / "tests" / test.name)).returncode != 0


def test_every_alert_is_tested_both_ways_and_explained() -> None:
    alerts = [rule["alert"] for rule in _rules() if "alert" in rule]
    cases = [
        case
        for path in TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    readme = (DEPLOY / "README.md").read_text()
    for alert in alerts:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no test where it stays quiet"
        assert f"| `{alert}` |" in readme, f"deploy/README.md does not explain {alert}"


def test_rules_read_only_metrics_the_services_define() -> None:
    exposed = set().union(*_exposed_metrics().values())
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    for rule in _rules():
        names = _metric_names(rule["expr"])
        assert names, rule
        unknown = names - exposed - recorded
        assert not unknown, f"{rule.get('alert') or rule['record']} reads {sorted(unknown)}"


def test_unit_tests_evaluate_recording_rules_before_the_alerts_that_read_them() -> None:
    groups = [group for path in RULES for group in yaml.safe_load(path.read_text())["groups"]]
    recording = [g["name"] for g in groups if any("record" in rule for rule in g["rules"])]
    alerting = [g["name"] for g in groups if any("alert" in rule for rule in g["rules"])]
    for path in TESTS:
        order = yaml.safe_load(path.read_text()).get("group_eval_order", [])
        assert set(order) == {g["name"] for g in groups}, f"{path.name}: group_eval_order"
        assert max(map(order.index, recording)) < min(map(order.index, alerting)), order
