"""Alert rules as data: the shipped kinds and rules, validation, and rules from perfml.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfml.alerting.rules import (
    SERVING_JOB,
    BadRuleError,
    BadRuleParamError,
    DuplicateRuleError,
    Rule,
    RuleKind,
    RuleKindTakenError,
    RuleParams,
    UnknownRuleError,
    UnknownRuleKindError,
    builtin_kinds,
    default_rules,
    kind_registry,
    rule_kind,
    rules_from_settings,
)
from perfml.config import ConfigError, MonitoringSettings, load_settings

SHIPPED = {
    "JobPendingTooLong": 'kube_pod_status_phase{phase="Pending"} == 1',
    "JobRunningTooLong": "(time() - kube_pod_start_time) > 172800 and on (namespace, pod) "
    'kube_pod_status_phase{phase="Running"} == 1',
    "JobFailed": 'kube_job_failed{condition="true"} > 0',
    "JobRetriesExhausted": 'kube_job_status_failed{reason="BackoffLimitExceeded"} > 0',
    "ClusterOverloaded": 'sum by (resource) (kube_pod_container_resource_requests{resource=~"cpu|'
    'memory"} and on (namespace, pod) kube_pod_status_phase{phase=~"Pending|Running"} == 1) / '
    'sum by (resource) (kube_node_status_allocatable{resource=~"cpu|memory"}) > 1 or '
    "sum(rate(container_cpu_usage_seconds_total[5m])) / "
    'sum(kube_node_status_allocatable{resource="cpu"}) > 0.9',
    "InferenceServiceDown": 'up{job="perfml-serving"} == 0 or absent(up{job="perfml-serving"})',
    "InferenceLatencyHigh": "histogram_quantile(0.99, sum by (le, deployment_name, "
    "predictor_name) (rate(seldon_api_executor_server_requests_seconds_bucket[5m]))) > 0.5",
    "InferenceErrorRateHigh": "sum by (deployment_name, predictor_name) "
    '(rate(seldon_api_executor_server_requests_seconds_count{code=~"5.."}[5m])) / '
    "sum by (deployment_name, predictor_name) "
    "(rate(seldon_api_executor_server_requests_seconds_count[5m])) > 0.05",
    "ModelLoadFailed": "increase(perfml_model_load_failures_total[10m]) > 0",
    "FeatureDriftHigh": 'max by (feature) (perfml_feature_drift{method="kl"}) > 0.1',
    "ModelQualityDegraded": 'perfml_model_quality{metric="f1"} < 0.5',
    "AnomalyDetected": "max by (entity, metric, model) (perfml_anomaly_score >= on (model) "
    "group_left max by (model) (perfml_anomaly_threshold)) * on (model) group_left (threshold) "
    'count_values by (model) ("threshold", max by (model) (perfml_anomaly_threshold))',
    "FleetAnomalyStorm": "(count by (model) (count by (model, entity) (perfml_anomaly_score >= "
    "on (model) group_left max by (model) (perfml_anomaly_threshold))) / on (model) sum by "
    "(model) (perfml_fleet_entities) >= 0.2 and on (model) count by (model) (count by (model, "
    "entity) (perfml_anomaly_score >= on (model) group_left max by (model) "
    "(perfml_anomaly_threshold))) >= 3) * on (model) group_left (anomalous) count_values by "
    '(model) ("anomalous", count by (model) (count by (model, entity) (perfml_anomaly_score >= '
    "on (model) group_left max by (model) (perfml_anomaly_threshold))))",
}
FOR = {
    "JobPendingTooLong": "1h",
    "ClusterOverloaded": "15m",
    "InferenceServiceDown": "1m",
    "InferenceLatencyHigh": "15m",
    "InferenceErrorRateHigh": "5m",
}


def settings_from(tmp_path: Path, text: str) -> MonitoringSettings:
    path = tmp_path / "perfml.yaml"
    path.write_text(text)
    return load_settings(path).monitoring


def by_name(rules: list[Rule]) -> dict[str, Rule]:
    return {rule.name: rule for rule in rules}


def test_one_shipped_rule_per_kind_with_its_promql_and_for():
    rules = default_rules()
    assert [rule.name for rule in rules] == list(SHIPPED)
    for rule in rules:
        assert rule.kind.name == rule.name
        assert rule.expr == SHIPPED[rule.name], rule.name
        assert rule.to_prometheus()["for"] == FOR.get(rule.name, "0s"), rule.name
        assert rule.severity in {"info", "warning", "critical"}
        assert rule.labels["team"] == "perfml"
        assert set(rule.annotations) == {
            "summary", "description", "runbook_url", *rule.kind.more_annotations
        }  # fmt: skip


def test_to_prometheus_is_one_alerting_rule_with_prometheus_durations():
    rule = by_name(default_rules())["JobRetriesExhausted"]
    assert rule.to_prometheus() == {
        "alert": "JobRetriesExhausted",
        "expr": 'kube_job_status_failed{reason="BackoffLimitExceeded"} > 0',
        "for": "0s",
        "keep_firing_for": "0s",
        "labels": {"severity": "critical", "team": "perfml"},
        "annotations": {
            "description": rule.kind.description,
            "runbook_url": "https://perfml.readthedocs.io/en/latest/runbooks.html"
            "#jobretriesexhausted",
            "summary": "Job {{ $labels.namespace }}/{{ $labels.job_name }} exhausted its retries",
        },
    }


def test_every_shipped_kind_has_examples_that_fire_and_that_stay_quiet():
    for rule in default_rules():
        examples = rule.examples()
        assert any(e.fires for e in examples), rule.name
        assert any(not e.fires for e in examples), rule.name
        for example in examples:
            assert example.series, (rule.name, example.description)
            assert example.at >= rule.for_, (rule.name, example.description)


def test_params_are_typed_and_durations_written_as_prometheus_does():
    rule = Rule.define("JobPendingTooLong", params={"threshold": "30m"})
    assert rule.params.threshold == 1800.0  # type: ignore[attr-defined]
    assert rule.for_ == 1800.0  # the threshold is the rule's for
    latency = Rule.define("InferenceLatencyHigh", params={"threshold": "2s", "quantile": 0.9})
    assert latency.expr.startswith("histogram_quantile(0.9, ")
    assert latency.expr.endswith(") > 2")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"threshold": "soon"}, "rule Stuck: parameter threshold = 'soon': not a duration"),
        ({"threshold": -5}, "rule Stuck: parameter threshold = -5: Input should be greater than 0"),
        ({"treshold": "1h"}, "parameter treshold = '1h': unknown parameter of JobPendingTooLong "
                             "(its parameters: threshold)"),
    ],
)  # fmt: skip
def test_a_bad_param_names_the_rule_the_param_and_the_value(params, message):
    with pytest.raises(BadRuleParamError) as raised:
        Rule.define("Stuck", kind_name="JobPendingTooLong", params=params)
    assert message in str(raised.value)


def test_label_values_in_params_cannot_break_the_promql():
    with pytest.raises(BadRuleParamError, match=r"parameter method = 'kl\"} or vector\(1\)"):
        Rule.define("FeatureDriftHigh", params={"method": 'kl"} or vector(1)'})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": {"severity": "page"}}, "labels.severity = 'page': must be one of info, "),
        ({"labels": {"team": ""}}, "labels.team = '': must be given"),
        ({"labels": {"bad-name": "x"}}, "label name = 'bad-name': not a valid label name"),
        ({"labels": {"owner": "{{ $labels.pod }}"}}, "labels.owner = '{{ $labels.pod }}': "
                                                     "labels are literal"),
        ({"annotations": {"summary": "{{ $value | printf }}"}}, "annotations.summary = "
         "'{{ $value | printf }}': unknown function 'printf'"),
        ({"annotations": {"summary": "{{ .Alerts }}"}}, "unsupported operand"),
        ({"annotations": {"description": ""}}, "annotations.description = None: must be given"),
        ({"for_": -1.0}, "for = -1.0: must not be negative"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_refused_when_defined_naming_what_and_the_value(changes, message):
    with pytest.raises(BadRuleError) as raised:
        Rule.define("JobFailed", **changes)
    assert str(raised.value).startswith("rule JobFailed: ")
    assert message in str(raised.value)


def test_a_bad_alert_name_is_refused():
    with pytest.raises(BadRuleError, match="name = 'Job Failed': not a valid alert name"):
        Rule.define("Job Failed", kind_name="JobFailed")


def test_kinds_are_plugins_in_an_injectable_registry():
    kinds = kind_registry()

    class DiskParams(RuleParams):
        threshold: float = 0.9

    @rule_kind("DiskFull", kinds)
    class DiskFull(RuleKind[DiskParams]):
        Params = DiskParams
        severity = "critical"
        summary = "Disk of {{ $labels.instance }} is full"
        description = "{{ $value | humanizePercentage }} used"

        def expr(self, params: DiskParams) -> str:
            return f"disk_used_ratio > {params.threshold}"

    class OtherDiskFull(DiskFull):
        pass

    rule_kind("DiskFull", kinds)(DiskFull)  # the same kind again changes nothing
    with pytest.raises(RuleKindTakenError, match="'DiskFull' is taken by .*DiskFull"):
        rule_kind("DiskFull", kinds)(OtherDiskFull)
    rules = rules_from_settings(MonitoringSettings(), kinds)
    assert [(r.name, r.expr, r.severity) for r in rules] == [
        ("DiskFull", "disk_used_ratio > 0.9", "critical")
    ]
    assert "DiskFull" not in builtin_kinds()
    with pytest.raises(UnknownRuleKindError, match="unknown rule kind 'JobFailed' .known: DiskF"):
        Rule.define("JobFailed", kinds=kinds)


RULES_YAML = """\
monitoring:
  disabled: [ModelQualityDegraded]
  rules:
    - name: JobPendingTooLong
      params: {threshold: 30m}
      labels: {team: perf}
    - name: CpuJobsStuck
      kind: JobPendingTooLong
      params: {threshold: 4h}
      labels: {severity: critical}
    - name: InferenceServiceDown
      for: 2m
      keep_firing_for: 5m
      annotations: {summary: "{{ $labels.instance }} is gone"}
    - name: FeatureDriftHigh
      enabled: false
"""


def test_settings_change_add_and_disable_rules(tmp_path):
    monitoring = settings_from(tmp_path, RULES_YAML)
    rules = by_name(rules_from_settings(monitoring))
    assert "ModelQualityDegraded" not in rules
    assert "FeatureDriftHigh" not in rules
    assert list(rules)[-1] == "CpuJobsStuck"  # added rules come after the shipped ones
    pending = rules["JobPendingTooLong"].to_prometheus()
    assert (pending["for"], pending["labels"]) == ("30m", {"severity": "warning", "team": "perf"})
    stuck = rules["CpuJobsStuck"].to_prometheus()
    assert stuck["expr"] == 'kube_pod_status_phase{phase="Pending"} == 1'
    assert (stuck["for"], stuck["labels"]) == ("4h", {"severity": "critical", "team": "perfml"})
    assert stuck["annotations"]["runbook_url"].endswith("#jobpendingtoolong")
    down = rules["InferenceServiceDown"].to_prometheus()
    assert (down["for"], down["keep_firing_for"]) == ("2m", "5m")
    assert down["annotations"]["summary"] == "{{ $labels.instance }} is gone"
    assert down["annotations"]["description"] == rules["InferenceServiceDown"].kind.description
    everything = by_name(rules_from_settings(monitoring, include_disabled=True))
    assert not everything["ModelQualityDegraded"].enabled
    assert not everything["FeatureDriftHigh"].enabled


def test_team_and_runbooks_apply_to_every_rule(tmp_path):
    monitoring = settings_from(
        tmp_path, "monitoring:\n  team: sre\n  runbooks: https://wiki.example/perfml\n"
    )
    rule = by_name(rules_from_settings(monitoring))["ModelLoadFailed"]
    assert rule.labels["team"] == "sre"
    assert rule.annotations["runbook_url"] == "https://wiki.example/perfml#modelloadfailed"


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("  disabled: [JobPendingTooLon]\n", UnknownRuleError,
         "monitoring.disabled[0] = 'JobPendingTooLon': no such rule (rules: "),
        ("  rules:\n    - name: Typo\n      params: {threshold: 1h}\n", UnknownRuleError,
         "monitoring.rules[0].name = 'Typo': no such rule; to add one, give its kind too"),
        ("  rules:\n    - name: Mine\n      kind: JobStuck\n", UnknownRuleKindError,
         "monitoring.rules[0].kind: unknown rule kind 'JobStuck' (known: AnomalyDetected, "),
        ("  rules:\n    - {name: Mine, kind: JobFailed}\n    - {name: Mine, kind: JobFailed}\n",
         DuplicateRuleError,
         "monitoring.rules[1].name = 'Mine': rule Mine is already given at monitoring.rules[0]"),
        ("  rules:\n    - {name: JobFailed, kind: JobPendingTooLong}\n", BadRuleError,
         "monitoring.rules[0]: rule JobFailed: kind = 'JobPendingTooLong': a shipped rule is of "
         "kind JobFailed"),
        ("  rules:\n    - {name: Mine, kind: ModelQualityDegraded, params: {threshold: 0}}\n",
         BadRuleParamError,
         "monitoring.rules[0]: rule Mine: parameter threshold = 0: Input should be greater"),
        ("  rules:\n    - {name: Mine, kind: JobFailed, labels: {severity: urgent}}\n",
         BadRuleError,
         "monitoring.rules[0]: rule Mine: labels.severity = 'urgent': must be one of"),
    ],
)  # fmt: skip
def test_bad_rule_settings_name_the_key_and_the_value(tmp_path, text, error, message):
    monitoring = settings_from(tmp_path, "monitoring:\n" + text)
    with pytest.raises(error) as raised:
        rules_from_settings(monitoring)
    assert message in str(raised.value)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  rules:\n    - {name: Mine, kind: JobFailed, for: 5 minutes}\n",
         "monitoring.rules.0.for = '5 minutes': not a duration"),
        ("  rules:\n    - {name: Mine, kind: JobFailed, severity: critical}\n",
         "unknown key monitoring.rules.0.severity"),
        ("  notifications:\n    webhooks: [{url: hooks.example/x}]\n",
         "monitoring.notifications.webhooks.0.url = 'hooks.example/x'"),
        ("  notifications:\n    group_wait: soon\n",
         "monitoring.notifications.group_wait = 'soon': not a duration"),
        ("  alertmanager: http://am:9093\n", "monitoring.alertmanager = 'http://am:9093'"),
    ],
)  # fmt: skip
def test_bad_monitoring_settings_are_config_errors_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as raised:
        settings_from(tmp_path, "monitoring:\n" + text)
    assert message in str(raised.value)


def test_the_serving_job_is_the_default_of_inference_service_down():
    rule = Rule.define("InferenceServiceDown", params={"job": "seldon-executor"})
    assert rule.expr == 'up{job="seldon-executor"} == 0 or absent(up{job="seldon-executor"})'
    assert SERVING_JOB in by_name(default_rules())["InferenceServiceDown"].expr
