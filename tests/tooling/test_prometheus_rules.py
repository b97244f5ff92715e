"""deploy/prometheus/rules.yaml: promtool checks the rules and runs their unit tests (rules.test.yaml).

Needs promtool (Debian: `apt-get install prometheus`); skipped where it is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "rules.yaml"
ALERTS = {  # the list: queue latency, 5xx rate, worker restarts, error rate per code, no READY worker;
    # and GPU memory (issue #20)
    "TorchServeQueueLatencyHigh", "TorchServe5xxRate", "TorchServeWorkerRestarts",
    "TorchServeItemErrorRate", "TorchServeModelNoReadyWorker", "TorchServeGPUMemoryHigh",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return found


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_the_rules_are_the_alerts_asked_for():
    assert {rule["alert"] for rule in rules()} == ALERTS
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_every_alert_has_a_unit_test():
    tests = yaml.safe_load((RULES_DIR / "rules.test.yaml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert tested == ALERTS


def test_promtool_check_rules(promtool):
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_test_rules(promtool):
    result = subprocess.run([promtool, "test", "rules", "rules.test.yaml"], cwd=RULES_DIR,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
