"""``perfml export prometheus``: rules.yml, prometheus.yml, alertmanager.yml, promtool tests."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from perfml.alerting.prometheus_config import (
    JOBS_METRICS_PORT,
    export_prometheus,
    prometheus_config,
    rule_unit_tests,
)
from perfml.alerting.rules import UnknownRuleError, default_rules, rules_from_settings
from perfml.cli.runs import serve_metrics_command
from perfml.config import Settings, load_settings

NOTIFYING = """\
serving:
  host: 0.0.0.0
  port: 9000
monitoring:
  evaluation_interval: 30s
  alertmanager: alerts.internal:9093
  jobs_metrics: runner.internal:9200
  disabled: [FeatureDriftHigh]
  rules:
    - {name: CpuJobsStuck, kind: JobPendingTooLong, params: {threshold: 4h}}
  notifications:
    group_by: [alertname, namespace, pod]
    repeat_interval: 2h
    webhooks:
      - {url: "https://hooks.example/perfml", send_resolved: true}
      - {url: "http://127.0.0.1:5001/", send_resolved: false}
    smtp:
      smarthost: smtp.example:587
      from: perfml@example.org
      to: oncall@example.org
      username: perfml
      password_env: PERFML_SMTP_PASSWORD
"""


def settings_from(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "perfml.yaml"
    path.write_text(text)
    return load_settings(path)


def read(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_export_writes_the_three_files_byte_identical_each_time(tmp_path):
    settings = settings_from(tmp_path, NOTIFYING)
    first = export_prometheus(settings, tmp_path / "a")
    assert [p.name for p in first] == ["rules.yml", "prometheus.yml", "alertmanager.yml"]
    second = export_prometheus(settings, tmp_path / "b")
    export_prometheus(settings, tmp_path / "a")  # again, over the first
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "alertmanager.yml",
        "prometheus.yml",
        "rules.yml",
    ]  # fmt: skip  (no temporary file left behind)


def test_rules_yml_holds_the_enabled_rules_in_one_group(tmp_path):
    settings = settings_from(tmp_path, NOTIFYING)
    export_prometheus(settings, tmp_path)
    (group,) = read(tmp_path / "rules.yml")["groups"]
    assert (group["name"], group["interval"]) == ("perfml", "30s")
    names = [rule["alert"] for rule in group["rules"]]
    assert "FeatureDriftHigh" not in names
    assert names[-1] == "CpuJobsStuck"
    assert group["rules"] == [r.to_prometheus() for r in rules_from_settings(settings)]


def test_prometheus_yml_scrapes_serving_and_jobs_and_alerts_the_alertmanager(tmp_path):
    export_prometheus(settings_from(tmp_path, NOTIFYING), tmp_path)
    config = read(tmp_path / "prometheus.yml")
    assert config["global"] == {
        "scrape_interval": "15s", "scrape_timeout": "10s", "evaluation_interval": "30s"
    }  # fmt: skip
    assert config["rule_files"] == ["rules.yml"]
    assert config["alerting"] == {
        "alertmanagers": [{"static_configs": [{"targets": ["alerts.internal:9093"]}]}]
    }
    assert config["scrape_configs"] == [
        {"job_name": "perfml-serving", "static_configs": [{"targets": ["127.0.0.1:9000"]}]},
        {"job_name": "perfml-jobs", "static_configs": [{"targets": ["runner.internal:9200"]}]},
    ]


def test_extra_targets_and_the_scrape_timeout_are_scraped_as_the_embedded_mode_does():
    settings = Settings.model_validate(
        {
            "monitoring": {
                "scrape_interval": "5s",
                "targets": [
                    {"job": "node", "url": "https://host-1:9100/node/metrics",
                     "labels": {"team": "perf"}},
                ],
            }
        }
    )  # fmt: skip
    config = prometheus_config(settings)
    assert config["global"]["scrape_timeout"] == "5s"  # at most the interval
    assert config["scrape_configs"][2] == {
        "job_name": "node",
        "scheme": "https",
        "metrics_path": "/node/metrics",
        "static_configs": [{"targets": ["host-1:9100"], "labels": {"team": "perf"}}],
    }


def test_by_default_the_jobs_are_scraped_where_serve_metrics_listens():
    default_port = inspect.signature(serve_metrics_command).parameters["port"].default.default
    assert default_port == JOBS_METRICS_PORT
    jobs = prometheus_config(Settings())["scrape_configs"][1]
    assert jobs["static_configs"] == [{"targets": [f"127.0.0.1:{JOBS_METRICS_PORT}"]}]


def test_alertmanager_yml_routes_groups_receives_and_inhibits(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFML_SMTP_PASSWORD", "s3cret-value")
    export_prometheus(settings_from(tmp_path, NOTIFYING), tmp_path)
    config = read(tmp_path / "alertmanager.yml")
    assert config["global"] == {"resolve_timeout": "5m"}
    route = config["route"]
    assert route["group_by"] == ["alertname", "namespace", "pod"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "30s", "5m", "2h",
    )  # fmt: skip
    assert route["routes"] == [
        {
            "receiver": "perfml",
            "group_by": ["alertname", "entity"],  # a host's anomalous metrics in one message
            "matchers": ['alertname="AnomalyDetected"'],
        },
        {
            "receiver": "perfml",
            "group_wait": "10s",
            "repeat_interval": "1h",
            "matchers": ['severity="critical"'],
        },
    ]
    (receiver,) = config["receivers"]
    assert receiver["webhook_configs"] == [
        {"url": "https://hooks.example/perfml", "send_resolved": True},
        {"url": "http://127.0.0.1:5001/", "send_resolved": False},
    ]
    assert receiver["email_configs"] == [
        {
            "to": "oncall@example.org",
            "from": "perfml@example.org",
            "smarthost": "smtp.example:587",
            "auth_username": "perfml",
            "auth_password_file": "/etc/alertmanager/secrets/PERFML_SMTP_PASSWORD",
            "require_tls": True,
            "send_resolved": False,
        }
    ]
    inhibit, storm = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity="critical"']
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert {"namespace", "pod", "job_name", "deployment_name"} <= set(inhibit["equal"])
    assert "alertname" not in inhibit["equal"]  # JobRetriesExhausted silences JobFailed
    assert storm == {  # a fleet-wide storm pages once, not once per host of the model
        "source_matchers": ['alertname="FleetAnomalyStorm"'],
        "target_matchers": ['alertname="AnomalyDetected"'],
        "equal": ["model"],
    }
    for path in tmp_path.iterdir():
        assert "s3cret-value" not in path.read_text()


def test_an_smtp_password_file_is_referenced_as_is(tmp_path):
    text = NOTIFYING.replace("password_env: PERFML_SMTP_PASSWORD", "password_file: /run/smtp")
    export_prometheus(settings_from(tmp_path, text), tmp_path)
    (receiver,) = read(tmp_path / "alertmanager.yml")["receivers"]
    assert receiver["email_configs"][0]["auth_password_file"] == "/run/smtp"


def test_a_bad_rule_fails_before_anything_is_written(tmp_path):
    settings = settings_from(tmp_path, "monitoring:\n  disabled: [Nope]\n")
    with pytest.raises(UnknownRuleError, match="monitoring.disabled"):
        export_prometheus(settings, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unit_tests_expect_each_example_with_labels_and_expanded_annotations():
    rules = default_rules()
    tests = rule_unit_tests(rules)
    assert tests["rule_files"] == ["rules.yml"]
    assert len(tests["tests"]) == sum(len(rule.examples()) for rule in rules)
    by_name = {test["name"]: test for test in tests["tests"]}
    running = by_name["JobRunningTooLong: running past the threshold"]
    (check,) = running["alert_rule_test"]
    assert (check["alertname"], check["eval_time"]) == ("JobRunningTooLong", "10m")
    (alert,) = check["exp_alerts"]
    assert alert["exp_labels"] == {
        "namespace": "perfml", "pod": "train-1", "severity": "warning", "team": "perfml",
    }  # fmt: skip
    assert alert["exp_annotations"]["description"] == (
        "Pod perfml/train-1 has been running for 2d 0h 10m 0s."
    )
    quiet = by_name["JobFailed: a job that succeeded"]["alert_rule_test"][0]
    assert quiet["exp_alerts"] == []


def test_with_unit_tests_the_export_writes_rules_test_yml(tmp_path):
    written = export_prometheus(Settings(), tmp_path, unit_tests=True)
    assert written[-1] == tmp_path / "rules.test.yml"
    assert read(written[-1]) == rule_unit_tests(rules_from_settings(Settings()))
