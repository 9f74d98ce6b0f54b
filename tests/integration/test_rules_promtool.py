"""The exported rules and configuration, checked by the real tools: ``promtool check rules``,
``promtool check config``, ``promtool test rules`` (every rule firing and quiet on its kind's
examples) and ``amtool check-config``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from tests.integration.services import require_binary

from perfml.alerting.prometheus_config import dump_yaml, export_prometheus
from perfml.config import Settings, load_settings

pytestmark = pytest.mark.integration

USER_RULES = """\
monitoring:
  disabled: [JobFailed]
  rules:
    - name: JobPendingTooLong
      params: {threshold: 30m}
      labels: {team: perf}
    - name: CpuJobsStuck
      kind: JobPendingTooLong
      params: {threshold: 4h}
      labels: {severity: critical}
    - name: JobRunningTooLong
      params: {threshold: 6h}
      keep_firing_for: 10m
    - name: ClusterOverloaded
      params: {threshold: 0.5, requests_threshold: 0.8, window: 10m}
      for: 5m
    - name: SeldonDown
      kind: InferenceServiceDown
      params: {job: seldon-executor}
      for: 3m
    - name: InferenceLatencyHigh
      params: {threshold: 2s, quantile: 0.9, window: 2m}
      annotations: {summary: "p90 of {{ $labels.predictor_name }}: {{ $value }}"}
    - name: InferenceErrorRateHigh
      params: {threshold: 0.6}
    - name: ModelLoadFailed
      params: {window: 30m}
      keep_firing_for: 15m
    - name: PsiDrift
      kind: FeatureDriftHigh
      params: {method: psi, threshold: 0.25}
      labels: {severity: info}
    - name: ModelQualityDegraded
      params: {metric: precision, threshold: 0.8}
    - name: FleetAnomalyStorm
      params: {min_entities: 4, fraction: 0.3}
    - name: DiskAnomaly
      kind: AnomalyDetected
      labels: {team: storage}
  notifications:
    group_by: [alertname, namespace, deployment_name]
    webhooks:
      - {url: "https://hooks.example/perfml"}
    smtp:
      smarthost: smtp.example:587
      from: perfml@example.org
      to: oncall@example.org, perf@example.org
      username: perfml
      password_env: PERFML_SMTP_PASSWORD
"""


def tool(name: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary(name), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def passes(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == 0


def export(tmp_path: Path, text: str | None) -> tuple[Path, Settings]:
    if text is None:
        settings = Settings()
    else:
        (tmp_path / "perfml.yaml").write_text(text)
        settings = load_settings(tmp_path / "perfml.yaml")
    out = tmp_path / "prometheus"
    export_prometheus(settings, out, unit_tests=True)
    return out, settings


@pytest.mark.parametrize("text", [None, USER_RULES], ids=["defaults", "user-rules"])
def test_the_export_passes_promtool_and_amtool_and_every_rule_fires_and_stays_quiet(tmp_path, text):
    out, _ = export(tmp_path, text)
    result = tool("promtool", "check", "rules", "rules.yml", cwd=out)
    assert passes(result), result.stdout + result.stderr
    result = tool("promtool", "check", "config", "prometheus.yml", cwd=out)
    assert passes(result), result.stdout + result.stderr
    result = tool("amtool", "check-config", "alertmanager.yml", cwd=out)
    assert passes(result), result.stdout + result.stderr
    result = tool("promtool", "test", "rules", "rules.test.yml", cwd=out)
    assert passes(result), result.stdout + result.stderr
    tests = yaml.safe_load((out / "rules.test.yml").read_text())["tests"]
    checks = [test["alert_rule_test"][0] for test in tests]
    tested = {check["alertname"] for check in checks}
    firing = {check["alertname"] for check in checks if check["exp_alerts"]}
    rules = yaml.safe_load((out / "rules.yml").read_text())["groups"][0]["rules"]
    assert tested == firing == {rule["alert"] for rule in rules}
    assert {"AnomalyDetected", "FleetAnomalyStorm"} <= tested
    storm = yaml.safe_load((out / "alertmanager.yml").read_text())["inhibit_rules"][-1]
    assert storm["source_matchers"] == ['alertname="FleetAnomalyStorm"']
    if text is not None:
        assert {"CpuJobsStuck", "SeldonDown", "PsiDrift", "DiskAnomaly"} <= tested
        assert "JobFailed" not in tested
        assert storm["target_matchers"] == ['alertname=~"AnomalyDetected|DiskAnomaly"']


def _break(out: Path, name: str, change) -> subprocess.CompletedProcess[str]:
    """Run only the test ``name``, after ``change`` to it."""
    path = out / "rules.test.yml"
    data = yaml.safe_load(path.read_text())
    data["tests"] = [test for test in data["tests"] if test["name"] == name]
    change(data["tests"][0]["alert_rule_test"][0])
    path.write_text(dump_yaml(data))
    return tool("promtool", "test", "rules", "rules.test.yml", cwd=out)


def test_a_wrong_expected_alert_fails_promtool(tmp_path):
    out, _ = export(tmp_path, None)

    def wrong_label(check):
        check["exp_alerts"][0]["exp_labels"]["condition"] = "Evicted"

    result = _break(out, "JobFailed: a failed job", wrong_label)
    assert not passes(result)
    assert "alertname: JobFailed" in result.stdout + result.stderr


def test_expecting_silence_where_a_rule_fires_fails_promtool(tmp_path):
    out, _ = export(tmp_path, None)

    def expect_quiet(check):
        check["exp_alerts"] = []

    result = _break(out, "InferenceLatencyHigh: answers slower than the threshold", expect_quiet)
    assert not passes(result)
    assert "alertname: InferenceLatencyHigh" in result.stdout + result.stderr


def test_promtool_check_refuses_a_broken_rules_file(tmp_path):
    out, _ = export(tmp_path, None)
    rules = out / "rules.yml"
    rules.write_text(
        rules.read_text().replace('kube_job_failed{condition="true"} > 0', "kube_job_failed >")
    )
    result = tool("promtool", "check", "rules", "rules.yml", cwd=out)
    assert not passes(result)
