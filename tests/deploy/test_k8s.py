"""``perfml.deploy.render``: every object valid, deterministic, least-privileged, non-root,
with no credential in it; the rules, Alertmanager configuration and Kubeflow spec accepted by
the real tools."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kfp.components
import kubernetes_validate
import pytest
import yaml
from tests.integration.services import require_binary

from perfml.config import Settings
from perfml.deploy import (
    DeployValues,
    InlineSecretError,
    ValuesError,
    cluster_settings,
    load_values,
    render,
)
from perfml.deploy.k8s import object_yaml
from perfml.deploy.security import SECRET
from perfml.deploy.values import SERVING_ENGINES, Thresholds

K8S_VERSION = kubernetes_validate.latest_version()
CUSTOM_GROUPS = ("monitoring.coreos.com/", "machinelearning.seldon.io/", "serving.kserve.io/")

USER_SETTINGS = {
    "registry": {"url": "postgresql+psycopg://perfml@db.example/perfml"},
    "serving": {"models": ["cpu@production"]},
    "monitoring": {
        "rules": [
            {"name": "CpuJobsStuck", "kind": "JobPendingTooLong", "params": {"threshold": "4h"}},
            {"name": "InferenceLatencyHigh", "params": {"window": "2m"}},
        ],
        "notifications": {
            "webhooks": [{"url": "https://hooks.example/perfml"}],
            "smtp": {
                "smarthost": "smtp.example:587",
                "from": "perfml@example.org",
                "to": "oncall@example.org",
                "username": "perfml",
                "password_env": "PERFML_SMTP_PASSWORD",
            },
        },
    },
}


def settings() -> Settings:
    return Settings.model_validate(USER_SETTINGS)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pod spec in ``objects``, whoever runs the pods."""
    found = []
    for o in objects:
        spec = o.get("spec", {})
        if o["kind"] == "Deployment":
            found.append(spec["template"]["spec"])
        elif o["kind"] == "CronJob":
            found.append(spec["jobTemplate"]["spec"]["template"]["spec"])
        elif o["kind"] == "SeldonDeployment":
            found += [c["spec"] for p in spec["predictors"] for c in p["componentSpecs"]]
        elif o["kind"] == "InferenceService":
            found.append(spec["predictor"])
    return found


@pytest.mark.parametrize("engine", SERVING_ENGINES)
def test_every_core_object_validates_against_the_kubernetes_schema(engine: str) -> None:
    objects = render(settings(), DeployValues(serving_engine=engine))  # type: ignore[arg-type]
    core = [o for o in objects if not o["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert len(core) >= 20
    for obj in core:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    kinds = {o["kind"] for o in objects}
    assert {
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "PersistentVolumeClaim",
        "Deployment", "Service", "CronJob", "NetworkPolicy", "PrometheusRule", "PodMonitor",
        "Secret",
    } <= kinds  # fmt: skip
    engine_kind = {"seldon": "SeldonDeployment", "kserve": "InferenceService"}.get(engine)
    assert (
        (engine_kind in kinds)
        if engine_kind
        else ("perfml-serving" in by_kind(objects, "Deployment"))
    )
    for embedded in pod_specs(objects):  # the engines' pod specs are core PodSpecs too
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": embedded}
        pod["spec"] = {k: v for k, v in embedded.items() if k not in {"minReplicas"}}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_a_broken_object_fails_validation() -> None:
    objects = render(Settings(), DeployValues(serving_engine="deployment"))
    deployment = by_kind(objects, "Deployment")["perfml-dashboard"]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_two_renders_are_byte_identical() -> None:
    values = DeployValues(replicas=3, storage_class="fast", thresholds=Thresholds(drift=0.2))
    first = "".join(object_yaml(o) for o in render(settings(), values))
    second = "".join(object_yaml(o) for o in render(settings(), values))
    assert first == second


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"registry": {"url": "postgresql+psycopg://perfml:hunter2@db/perfml"}}, "registry.url"),
        (
            {
                "monitoring": {
                    "notifications": {"webhooks": [{"url": "https://h.example/x?token=abc"}]}
                }
            },
            "monitoring.notifications.webhooks[0].url",
        ),
        (
            {"registry": {"artifacts": "oci://robot:s3cret@harbor.example/perfml"}},
            "registry.artifacts",
        ),
        (
            {"sources": {"prometheus": {"url": "https://u:pw@prom.example"}}},
            "sources.prometheus.url",
        ),
    ],
)
def test_an_inline_credential_is_refused_naming_the_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(InlineSecretError, match=key.replace("[", r"\[")) as refused:
        render(Settings.model_validate(changes))
    message = str(refused.value)
    assert "hunter2" not in message
    assert "s3cret" not in message
    assert "abc" not in message
    assert "***" in message


def test_no_credential_is_in_any_object_and_secrets_are_only_referenced() -> None:
    objects = render(settings(), DeployValues())
    secrets = by_kind(objects, "Secret")
    assert list(secrets) == ["perfml-alertmanager-config"]  # configuration, not credentials
    text = "".join(object_yaml(o) for o in objects)
    assert "password:" not in text.lower().replace("auth_password_file", "")
    for spec in pod_specs(objects):
        for container in spec["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
                "name": SECRET, "key": "PGPASSWORD", "optional": True,
            }  # fmt: skip
            assert all("value" not in e for e in env.values() if "valueFrom" in e)
    config = yaml.safe_load(by_kind(objects, "ConfigMap")["perfml-config"]["data"]["perfml.yaml"])
    assert config["registry"]["url"] == "postgresql+psycopg://perfml@db.example/perfml"


def test_rbac_is_least_privilege() -> None:
    objects = render(settings(), DeployValues())
    assert not {"ClusterRole", "ClusterRoleBinding"} & {o["kind"] for o in objects}
    roles = by_kind(objects, "Role")
    assert list(roles) == ["perfml-controller"]
    for rule in roles["perfml-controller"]["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, [])
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        )
    rules = {(tuple(r["resources"])): r for r in roles["perfml-controller"]["rules"]}
    assert set(rules[("jobs",)]["verbs"]) == {"create", "get", "list", "watch"}
    assert rules[("configmaps",)]["resourceNames"] == ["perfml-config", "perfml-training-pipeline"]
    binding = by_kind(objects, "RoleBinding")["perfml-controller"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "perfml-controller", "namespace": "perfml"}
    ]
    accounts = by_kind(objects, "ServiceAccount")
    assert accounts["perfml"]["automountServiceAccountToken"] is False
    for spec in pod_specs(objects):
        assert spec["automountServiceAccountToken"] is (
            spec["serviceAccountName"] == "perfml-controller"
        )


@pytest.mark.parametrize("engine", SERVING_ENGINES)
def test_every_container_is_non_root_read_only_without_capabilities_and_bounded(
    engine: str,
) -> None:
    values = DeployValues(serving_engine=engine)  # type: ignore[arg-type]
    specs = pod_specs(render(settings(), values))
    assert len(specs) == 5  # controller loop, CronJob, dashboard, the live scorer, serving
    for spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] != 0
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert set(container["resources"]) == {"requests", "limits"}
            assert container["image"] == values.image
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert {"/workspace", "/etc/perfml", "/tmp"} <= mounts


def test_values_reach_the_objects() -> None:
    values = DeployValues(
        image="registry.example/perfml:9",
        namespace="ml",
        monitoring_namespace="observability",
        replicas=5,
        storage_class="nfs",
        storage_size="100Gi",
        serving_engine="kserve",
        schedule="*/30 * * * *",
        thresholds=Thresholds(drift=0.25, latency_p99="250ms", error_rate=0.02),
    )
    objects = render(settings(), values)
    assert all(o["metadata"].get("namespace", "ml") in {"ml", "observability"} for o in objects)
    assert by_kind(objects, "Secret")["perfml-alertmanager-config"]["metadata"]["namespace"] == (
        "observability"
    )
    isvc = by_kind(objects, "InferenceService")["perfml-serving"]
    assert isvc["spec"]["predictor"]["minReplicas"] == 5
    claim = by_kind(objects, "PersistentVolumeClaim")["perfml-workspace"]["spec"]
    assert claim["storageClassName"] == "nfs"
    assert claim["resources"]["requests"]["storage"] == "100Gi"
    cron = by_kind(objects, "CronJob")["perfml-controller"]["spec"]
    assert cron["schedule"] == "*/30 * * * *"
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["suspend"] is False
    assert cron["jobTemplate"]["spec"]["ttlSecondsAfterFinished"] > 0
    assert cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "controller", "run-once",
    ]  # fmt: skip
    assert by_kind(objects, "Deployment")["perfml-controller"]["spec"]["replicas"] == 0
    config = yaml.safe_load(by_kind(objects, "ConfigMap")["perfml-config"]["data"]["perfml.yaml"])
    assert config["controller"]["threshold"] == 0.25
    rules = {
        r["alert"]: r
        for r in by_kind(objects, "PrometheusRule")["perfml-rules"]["spec"]["groups"][0]["rules"]
    }
    assert "0.25" in rules["FeatureDriftHigh"]["expr"]
    assert "0.25" in rules["InferenceLatencyHigh"]["expr"]  # 250ms, in seconds
    assert "0.99" in rules["InferenceLatencyHigh"]["expr"]
    assert "0.02" in rules["InferenceErrorRateHigh"]["expr"]
    assert "CpuJobsStuck" in rules  # the user's own rule is kept


def test_the_deployment_scheduler_runs_the_loop_and_suspends_the_cron_job() -> None:
    objects = render(settings(), DeployValues(scheduler="deployment"))
    controller = by_kind(objects, "Deployment")["perfml-controller"]
    assert controller["spec"]["replicas"] == 1
    assert controller["spec"]["strategy"] == {"type": "Recreate"}  # never two loops at once
    assert controller["spec"]["template"]["spec"]["containers"][0]["args"] == ["controller", "run"]
    assert by_kind(objects, "CronJob")["perfml-controller"]["spec"]["suspend"] is True


def test_the_effective_perfml_yaml_loads_and_points_at_the_claim() -> None:
    objects = render(settings(), DeployValues())
    text = by_kind(objects, "ConfigMap")["perfml-config"]["data"]["perfml.yaml"]
    loaded = Settings.model_validate(yaml.safe_load(text))
    assert loaded == cluster_settings(settings(), DeployValues())
    assert str(loaded.workspace) == "/workspace"
    assert loaded.serving.host == "0.0.0.0"
    assert loaded.monitoring.secrets_dir == "/etc/alertmanager/secrets/perfml-alertmanager-secrets"


def test_network_policies_deny_ingress_then_allow_each_port() -> None:
    objects = render(settings(), DeployValues(serving_engine="deployment"))
    policies = by_kind(objects, "NetworkPolicy")
    deny = policies["perfml-default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}
    serving = policies["perfml-serving"]["spec"]["ingress"]
    assert serving == [
        {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 8080}]}
    ]
    dashboard = policies["perfml-dashboard"]["spec"]["ingress"]
    assert dashboard[0]["ports"] == [{"protocol": "TCP", "port": 8088}]
    assert dashboard[1] == {
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "ports": [{"protocol": "TCP", "port": 9102}],
    }


def test_monitors_grafana_and_the_pipeline_are_wired() -> None:
    objects = render(settings(), DeployValues())
    monitors = by_kind(objects, "PodMonitor")
    jobs = {
        m["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["replacement"]
        for m in monitors.values()
    }
    # the job labels the rules name; the live scorer's metrics hold the fleet's scores
    assert jobs == {"perfml-serving", "perfml-jobs", "perfml-live"}
    dashboards = [
        o
        for o in by_kind(objects, "ConfigMap").values()
        if "grafana_dashboard" in o["metadata"]["labels"]
    ]
    assert len(dashboards) == 6  # one per page of the dashboard, Anomalies among them
    for config_map in dashboards:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        (text,) = config_map["data"].values()
        assert "${DS_PROMETHEUS}" not in text
        assert '"uid": "prometheus"' in text
    pipeline = by_kind(objects, "ConfigMap")["perfml-training-pipeline"]["data"]["training.yaml"]
    component = kfp.components.load_component_from_text(pipeline)
    assert component.name == "training"
    executors = yaml.safe_load(pipeline)["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {DeployValues().image}


def test_a_values_file_names_a_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("replicas: 3\nserving_engine: kserve\n")
    assert load_values(path) == DeployValues(replicas=3, serving_engine="kserve")
    path.write_text("replicas: 3\nreplica: 4\nschedule: hourly\n")
    with pytest.raises(
        ValuesError, match=r"schedule = 'hourly': not a cron.*unknown key replica \(value 4\)"
    ):
        load_values(path)


# -- the real tools --------------------------------------------------------------------------


def tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary(name), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


@pytest.mark.integration
def test_the_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    rule = by_kind(render(settings(), DeployValues()), "PrometheusRule")["perfml-rules"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rule["spec"]))
    result = tool("promtool", "check", "rules", "rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.integration
def test_the_alertmanager_secret_passes_amtool(tmp_path: Path) -> None:
    secret = by_kind(render(settings(), DeployValues()), "Secret")["perfml-alertmanager-config"]
    text = secret["stringData"]["alertmanager.yaml"]
    assert "/etc/alertmanager/secrets/perfml-alertmanager-secrets/PERFML_SMTP_PASSWORD" in text
    (tmp_path / "alertmanager.yaml").write_text(text)
    result = tool("amtool", "check-config", "alertmanager.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
