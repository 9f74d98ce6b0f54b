"""perfml on Kubernetes: every object, from ``perfml.yaml`` and the operator's values.

:func:`render` returns the objects in the order they are applied; the same settings and values
give the same objects, key for key (``perfml export k8s`` writes them byte-identically):

1. the Namespace; the ServiceAccounts ``perfml`` (no API token) and ``perfml-controller``,
   whose Role lets it run Jobs, read their pods' logs and patch its own ConfigMaps, in its
   namespace only (:mod:`.security`);
2. ConfigMaps: ``perfml-config`` with the effective ``perfml.yaml`` (:func:`cluster_settings`)
   and ``perfml-training-pipeline`` with the training pipeline compiled for Kubeflow Pipelines
   v2 on the same image (:mod:`perfml.pipelines.kubeflow`, the ``kubeflow`` extra);
3. the workspace claim, the controller (Deployment and CronJob), the dashboard with the job
   metrics, and serving per engine (:mod:`.workloads`);
4. NetworkPolicies: ingress denied, then allowed port by port;
5. the PrometheusRule, the PodMonitors, the Alertmanager configuration Secret and the Grafana
   dashboard ConfigMaps (:mod:`.monitoring`).

No credential is in any of them: :func:`render` refuses a ``perfml.yaml`` that holds one inline
(:class:`~perfml.deploy.security.InlineSecretError`), and the pods read theirs from the Secret
``perfml-secrets``, which the operator creates (``kubectl create secret generic perfml-secrets
--from-literal=PGPASSWORD=...``).

>>> from perfml.config import Settings
>>> objects = render(Settings(), DeployValues(serving_engine="deployment"))
>>> [o["kind"] for o in objects][:5]
['Namespace', 'ServiceAccount', 'ServiceAccount', 'Role', 'RoleBinding']
"""

from __future__ import annotations

import functools
import hashlib
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from perfml.alerting.prometheus_config import dump_yaml
from perfml.alerting.rules import KindRegistry, rules_from_settings
from perfml.atomic import atomic_output
from perfml.config import Settings
from perfml.deploy import monitoring, security, workloads
from perfml.deploy.values import DeployValues, effective_settings

Json = dict[str, Any]

PIPELINE_CONFIG_MAP = "perfml-training-pipeline"
PIPELINE_FILE = "training.yaml"
KUSTOMIZATION = "kustomization.yaml"
DEFAULT_SECRETS_DIR = "/etc/alertmanager/secrets"
_HEADER = (
    "# Written by `perfml export k8s` from perfml.yaml and the values: change those instead.\n"
)
_WRITTEN = re.compile(r"^\d{2,}-[a-z]+-[a-z0-9.-]+\.yaml$")


def cluster_settings(settings: Settings, values: DeployValues) -> Settings:
    """``settings`` as the pods use them: the values' thresholds applied, the workspace on the
    claim (paths of this machine mean nothing there), serving listening on every address, and
    the Alertmanager's secret files where the operator mounts the Secret
    :data:`~perfml.deploy.security.ALERTMANAGER_SECRETS`."""
    chosen = effective_settings(settings, values)
    artifacts = chosen.registry.artifacts
    registry = chosen.registry.model_copy(
        update={"artifacts": artifacts if artifacts and artifacts.startswith("oci://") else None}
    )
    monitoring_settings = chosen.monitoring
    notifications = monitoring_settings.notifications.model_copy(update={"log": None})
    secrets_dir = monitoring_settings.secrets_dir
    if secrets_dir.rstrip("/") == DEFAULT_SECRETS_DIR:
        secrets_dir = f"{DEFAULT_SECRETS_DIR}/{security.ALERTMANAGER_SECRETS}"
    return chosen.model_copy(
        update={
            "workspace": Path(workloads.WORKSPACE),
            "featurestore": chosen.featurestore.model_copy(update={"path": None}),
            "registry": registry,
            "serving": chosen.serving.model_copy(update={"host": "0.0.0.0"}),
            "monitoring": monitoring_settings.model_copy(
                update={"notifications": notifications, "secrets_dir": secrets_dir}
            ),
        }
    )


def settings_yaml(settings: Settings) -> str:
    """``settings`` as a complete ``perfml.yaml`` (every key, so nothing depends on the
    defaults of the version that reads it)."""
    data = settings.model_dump(mode="json", by_alias=True)
    return dump_yaml(data, _HEADER)


@functools.lru_cache(maxsize=8)
def kubeflow_spec(image: str) -> str:
    """The training pipeline's Kubeflow Pipelines v2 spec (IR YAML) on ``image``; its steps
    open the store and the registry of the ``perfml.yaml`` at the path the workloads mount it
    (``perfml_parts`` changes that per run, e.g. to settings given inline)."""
    from perfml.deploy.workloads import CONFIG_DIR, CONFIG_FILE
    from perfml.pipelines.kubeflow import compile_kubeflow
    from perfml.pipelines.training import build_training_pipeline
    from perfml.workspace import cluster_parts

    parts = cluster_parts(f"{CONFIG_DIR}/{CONFIG_FILE}")
    with tempfile.TemporaryDirectory(prefix="perfml-kfp-") as scratch:
        where = Path(scratch) / PIPELINE_FILE
        path = compile_kubeflow(build_training_pipeline(), where, image, parts)
        return path.read_text(encoding="utf-8")


def _config_map(
    name: str, namespace: str, component: str, data: dict[str, str], versioned: bool = False
) -> Json:
    metadata = workloads.metadata(name, namespace, component)
    if versioned:
        metadata["annotations"] = {"kapp.k14s.io/versioned": ""}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _namespace(values: DeployValues) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": values.namespace,
            "labels": {
                **workloads.labels(),
                # the serving engines' own sidecars may not meet "restricted": warn only
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        },
    }


def _access(values: DeployValues) -> list[Json]:
    ns = values.namespace
    role = security.controller_role(
        workloads.CONTROLLER_ACCOUNT,
        ns,
        workloads.labels("controller"),
        [workloads.CONFIG_MAP, PIPELINE_CONFIG_MAP],
    )
    return [
        security.service_account(workloads.SERVICE_ACCOUNT, ns, workloads.labels(), False),
        security.service_account(
            workloads.CONTROLLER_ACCOUNT, ns, workloads.labels("controller"), True
        ),
        role,
        security.role_binding(
            workloads.CONTROLLER_ACCOUNT,
            ns,
            workloads.labels("controller"),
            workloads.CONTROLLER_ACCOUNT,
        ),
    ]


def render(
    settings: Settings,
    values: DeployValues | None = None,
    kinds: KindRegistry | None = None,
    *,
    versioned_config: bool = False,
) -> list[Json]:
    """Every Kubernetes object of perfml for ``settings`` and ``values`` (see the module).

    The pods roll when ``perfml.yaml`` changes: by default through a digest of it in their
    annotations; with ``versioned_config`` (the Carvel package, deployed by kapp) through kapp's
    versioned ConfigMap instead, whose new version kapp points the pods at — so the objects hold
    no figure computed from the config, and a template can fill every value in.

    Raises :class:`~perfml.deploy.security.InlineSecretError` for a credential written in
    ``settings``, and the rules' errors for a bad rule, before anything is built.
    """
    values = values or DeployValues.for_settings(settings)
    security.refuse_inline_secrets(settings)
    chosen = cluster_settings(settings, values)
    rules = rules_from_settings(chosen, kinds)
    config_text = settings_yaml(chosen)
    digest = None if versioned_config else hashlib.sha256(config_text.encode()).hexdigest()
    ns = values.namespace
    serving_selector = workloads.selector("serving")
    dashboard_selector = workloads.selector("dashboard")
    return [
        _namespace(values),
        *_access(values),
        _config_map(
            workloads.CONFIG_MAP,
            ns,
            "config",
            {workloads.CONFIG_FILE: config_text},
            versioned=versioned_config,
        ),
        _config_map(
            PIPELINE_CONFIG_MAP, ns, "pipeline", {PIPELINE_FILE: kubeflow_spec(values.image)}
        ),
        workloads.workspace_claim(values),
        *workloads.controller_objects(chosen, values, digest),
        *workloads.dashboard_objects(chosen, values, digest),
        *workloads.live_objects(chosen, values, digest),
        *workloads.serving_objects(chosen, values, digest),
        *security.network_policies(
            ns,
            values.monitoring_namespace,
            workloads.labels("network"),
            (
                {"matchLabels": serving_selector},
                workloads.SERVING_PORTS[values.serving_engine],
            ),
            (
                {"matchLabels": dashboard_selector},
                [workloads.DASHBOARD_PORT],
                [workloads.JOBS_METRICS_PORT],
            ),
            (
                {"matchLabels": workloads.selector("live")},
                [chosen.sources.remote_write.port],
            ),
        ),
        monitoring.prometheus_rule(chosen, values, rules),
        *monitoring.pod_monitors(chosen, values),
        monitoring.alertmanager_secret(chosen, values),
        *monitoring.grafana_config_maps(values),
    ]


def file_names(objects: Sequence[Json]) -> list[str]:
    """``NN-kind-name.yaml`` for each object, numbered in apply order.

    >>> file_names([{"kind": "Namespace", "metadata": {"name": "perfml"}}])
    ['00-namespace-perfml.yaml']
    """
    width = max(2, len(str(len(objects) - 1)))
    return [
        f"{index:0{width}d}-{o['kind'].lower()}-{o['metadata']['name']}.yaml"
        for index, o in enumerate(objects)
    ]


def object_yaml(obj: Json) -> str:
    """One object as the bytes written: keys in the order built, long lines kept whole."""
    body = yaml.safe_dump(
        obj, sort_keys=False, allow_unicode=True, default_flow_style=False, width=10_000
    )
    return _HEADER + body


def kustomization(names: Sequence[str]) -> Json:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(names),
    }


def export_k8s(settings: Settings, out_dir: Path, values: DeployValues | None = None) -> list[Path]:
    """Write one file per object of :func:`render` and a ``kustomization.yaml`` listing them
    into ``out_dir`` (``kubectl apply -k DIR``), each atomically; files of an earlier export
    that are no longer rendered are removed. Returns the paths written, kustomization last."""
    objects = render(settings, values)
    names = file_names(objects)
    written = []
    for name, obj in zip(names, objects, strict=True):
        path = out_dir / name
        with atomic_output(path) as temporary:
            temporary.write_text(object_yaml(obj), encoding="utf-8")
        written.append(path)
    path = out_dir / KUSTOMIZATION
    with atomic_output(path) as temporary:
        temporary.write_text(object_yaml(kustomization(names)), encoding="utf-8")
    written.append(path)
    for stale in sorted(out_dir.iterdir()):
        if _WRITTEN.match(stale.name) and stale.name not in names:
            stale.unlink()
    return written
