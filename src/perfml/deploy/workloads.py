"""The pods perfml runs on a cluster: the controller, the dashboard, serving and the CronJob.

Every container runs the perfml image with ``perfml.yaml`` mounted from the ConfigMap
:data:`CONFIG_MAP` (``PERFML_CONFIG`` points at it), the workspace claim at ``/workspace``
and an ``emptyDir`` at ``/tmp`` (the root filesystem is read-only); credentials come from the
Secret :data:`~perfml.deploy.security.SECRET` by reference. Which part runs what:

- ``perfml-controller`` (Deployment, ``perfml controller run``) and ``perfml-controller``
  (CronJob, ``perfml controller run-once`` on the values' ``schedule``): one of the two runs the
  checks, as the values' ``scheduler`` says; the other stays idle (scaled to 0, or suspended
  and there to be triggered by hand with ``kubectl create job --from=cronjob/...``), so two
  checks never race to retrain the same model;
- ``perfml-dashboard`` (Deployment): ``perfml dashboard`` on :data:`DASHBOARD_PORT`, and beside
  it ``perfml runs serve-metrics`` on :data:`JOBS_METRICS_PORT` (the job metrics Prometheus
  scrapes);
- ``perfml-live`` (Deployment, one replica, recreated rather than rolled: one process owns the
  live states' checkpoints and the remote-write log): ``perfml live``, the remote-write
  receiver Prometheus writes to (``remote_write: [{url: http://perfml-live.NAMESPACE:9201/api/v1/write}]``),
  the scheduled pulls and the live loop, its scores in the same port's ``/metrics``;
- serving, per the values' ``serving_engine``: a ``SeldonDeployment`` or a KServe
  ``InferenceService`` (built with :mod:`perfml.serving.engines`'s builders) whose one container
  runs ``perfml serve``, or a plain Deployment and Service. All serve ``serving.models`` by
  alias and reload when an alias moves.
"""

from __future__ import annotations

from typing import Any

from perfml.config import Settings
from perfml.deploy.security import (
    container_security,
    credential_envs,
    pod_security,
    secret_env,
)
from perfml.deploy.values import ComponentResources, DeployValues
from perfml.serving.engines import kserve_resource, seldon_resource

Json = dict[str, Any]

CONFIG_MAP = "perfml-config"
CONFIG_FILE = "perfml.yaml"
CONFIG_DIR = "/etc/perfml"
WORKSPACE = "/workspace"
WORKSPACE_CLAIM = "perfml-workspace"
SERVICE_ACCOUNT = "perfml"
CONTROLLER_ACCOUNT = "perfml-controller"
SERVING = "perfml-serving"
DASHBOARD = "perfml-dashboard"
CONTROLLER = "perfml-controller"
LIVE = "perfml-live"
DASHBOARD_PORT = 8088
JOBS_METRICS_PORT = 9102
FINISHED_JOB_TTL = 86_400
"""Seconds a finished CronJob run (its pod and log) stays for inspection."""
SERVING_PORTS = {"deployment": [8080], "seldon": [8000, 8080], "kserve": [8080]}
"""Ports the serving pods take requests on, per engine (Seldon's executor answers on 8000)."""


def labels(component: str | None = None) -> Json:
    found = {
        "app.kubernetes.io/name": "perfml",
        "app.kubernetes.io/part-of": "perfml",
        "app.kubernetes.io/managed-by": "perfml",
    }
    if component:
        found["app.kubernetes.io/component"] = component
    return found


def selector(component: str) -> Json:
    return {"app.kubernetes.io/name": "perfml", "app.kubernetes.io/component": component}


def metadata(name: str, namespace: str, component: str | None = None) -> Json:
    return {"name": name, "namespace": namespace, "labels": labels(component)}


def resources(chosen: ComponentResources) -> Json:
    return chosen.model_dump()


def _env(settings: Settings) -> list[Json]:
    return [
        {"name": "PERFML_CONFIG", "value": f"{CONFIG_DIR}/{CONFIG_FILE}"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        *secret_env(credential_envs(settings)),
    ]


def _mounts() -> list[Json]:
    return [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "workspace", "mountPath": WORKSPACE},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def _volumes() -> list[Json]:
    return [
        {"name": "config", "configMap": {"name": CONFIG_MAP}},
        {"name": "workspace", "persistentVolumeClaim": {"claimName": WORKSPACE_CLAIM}},
        {"name": "tmp", "emptyDir": {}},
    ]


def _http_probe(path: str, port: str | int, period: int) -> Json:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def container(
    name: str,
    settings: Settings,
    values: DeployValues,
    args: list[str],
    chosen: ComponentResources,
    ports: list[tuple[str, int]] | None = None,
) -> Json:
    """A perfml container running ``perfml ARGS``."""
    found: Json = {
        "name": name,
        "image": values.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": _env(settings),
        "resources": resources(chosen),
        "securityContext": container_security(),
        "volumeMounts": _mounts(),
    }
    if ports:
        found["ports"] = [
            {"name": port_name, "containerPort": number, "protocol": "TCP"}
            for port_name, number in ports
        ]
    return found


def pod_spec(containers: list[Json], account: str, restart: str | None = None) -> Json:
    spec: Json = {
        "serviceAccountName": account,
        "automountServiceAccountToken": account == CONTROLLER_ACCOUNT,
        "securityContext": pod_security(),
        "containers": containers,
        "volumes": _volumes(),
    }
    if restart:
        spec["restartPolicy"] = restart
    return spec


def config_annotations(digest: str | None) -> dict[str, Json]:
    """The pod annotation that rolls the pods when ``perfml.yaml`` changes; none when kapp
    versions the ConfigMap instead (``digest`` None: see :func:`perfml.deploy.k8s.render`)."""
    return {} if digest is None else {"annotations": {"perfml.io/config-sha256": digest}}


def _template(component: str, config_digest: str | None, spec: Json) -> Json:
    return {
        "metadata": {"labels": labels(component), **config_annotations(config_digest)},
        "spec": spec,
    }


def deployment(
    name: str,
    namespace: str,
    component: str,
    replicas: int,
    template: Json,
    recreate: bool = False,
) -> Json:
    spec: Json = {
        "replicas": replicas,
        "selector": {"matchLabels": selector(component)},
        "template": template,
    }
    if recreate:
        spec["strategy"] = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, namespace, component),
        "spec": spec,
    }


def service(name: str, namespace: str, component: str, ports: list[tuple[str, int]]) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, namespace, component),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(component),
            "ports": [
                {"name": port_name, "port": number, "targetPort": port_name, "protocol": "TCP"}
                for port_name, number in ports
            ],
        },
    }


def controller_objects(settings: Settings, values: DeployValues, digest: str | None) -> list[Json]:
    """The controller's Deployment and CronJob; the values' ``scheduler`` picks the live one."""
    ns = values.namespace
    chosen = values.resources.controller
    loop = container("controller", settings, values, ["controller", "run"], chosen)
    run_once = container("controller", settings, values, ["controller", "run-once"], chosen)
    live_loop = values.scheduler == "deployment"
    job_template = _template(
        "controller", digest, pod_spec([run_once], CONTROLLER_ACCOUNT, "Never")
    )
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(CONTROLLER, ns, "controller"),
        "spec": {
            "schedule": values.schedule,
            "suspend": live_loop,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels("controller")},
                "spec": {
                    "backoffLimit": 1,
                    "ttlSecondsAfterFinished": FINISHED_JOB_TTL,
                    "template": job_template,
                },
            },
        },
    }
    loop_template = _template("controller", digest, pod_spec([loop], CONTROLLER_ACCOUNT))
    return [
        deployment(CONTROLLER, ns, "controller", 1 if live_loop else 0, loop_template, True),
        cron,
    ]


def dashboard_objects(settings: Settings, values: DeployValues, digest: str | None) -> list[Json]:
    """The dashboard (and the job metrics beside it), and their Service."""
    ns = values.namespace
    page = container(
        "dashboard",
        settings,
        values,
        ["dashboard", "--host", "0.0.0.0", "--port", str(DASHBOARD_PORT)],
        values.resources.dashboard,
        [("http", DASHBOARD_PORT)],
    )
    page["readinessProbe"] = _http_probe("/healthz", "http", 10)
    page["livenessProbe"] = _http_probe("/healthz", "http", 30)
    metrics = container(
        "jobs-metrics",
        settings,
        values,
        ["runs", "serve-metrics", "--host", "0.0.0.0", "--port", str(JOBS_METRICS_PORT)],
        values.resources.jobs_metrics,
        [("metrics", JOBS_METRICS_PORT)],
    )
    metrics["readinessProbe"] = _http_probe("/metrics", "metrics", 15)
    metrics["livenessProbe"] = _http_probe("/metrics", "metrics", 30)
    template = _template("dashboard", digest, pod_spec([page, metrics], SERVICE_ACCOUNT))
    return [
        deployment(DASHBOARD, ns, "dashboard", 1, template),
        service(
            DASHBOARD, ns, "dashboard", [("http", DASHBOARD_PORT), ("metrics", JOBS_METRICS_PORT)]
        ),
    ]


def live_objects(settings: Settings, values: DeployValues, digest: str | None) -> list[Json]:
    """The fleet's scorer (``perfml live``) and its Service (see the module)."""
    ns = values.namespace
    port = settings.sources.remote_write.port
    scorer = container(
        "live", settings, values, ["live", "--host", "0.0.0.0", "--port", str(port)],
        values.resources.live, [("remote-write", port)],
    )  # fmt: skip
    scorer["readinessProbe"] = _http_probe("/-/ready", "remote-write", 5)
    scorer["livenessProbe"] = _http_probe("/-/ready", "remote-write", 15)
    template = _template("live", digest, pod_spec([scorer], SERVICE_ACCOUNT))
    return [
        deployment(LIVE, ns, "live", 1, template, recreate=True),
        service(LIVE, ns, "live", [("remote-write", port)]),
    ]


def _serving_container(settings: Settings, values: DeployValues, name: str) -> Json:
    port = settings.serving.port
    found = container(name, settings, values, ["serve"], values.resources.serving, [("http", port)])
    found["readinessProbe"] = _http_probe("/v2/health/ready", port, 5)
    found["livenessProbe"] = _http_probe("/v2/health/live", port, 15)
    return found


def serving_objects(settings: Settings, values: DeployValues, digest: str | None) -> list[Json]:
    """The inference service of the values' ``serving_engine``."""
    ns = values.namespace
    pod_metadata = {"labels": labels("serving"), **config_annotations(digest)}
    if values.serving_engine == "seldon":
        spec = pod_spec([_serving_container(settings, values, "perfml")], SERVICE_ACCOUNT)
        return [
            seldon_resource(
                metadata(SERVING, ns, "serving"),
                "perfml",
                spec,
                replicas=values.replicas,
                pod_metadata=pod_metadata,
            )
        ]
    if values.serving_engine == "kserve":
        spec = pod_spec([_serving_container(settings, values, "kserve-container")], SERVICE_ACCOUNT)
        predictor = {"minReplicas": values.replicas, **spec}
        found = kserve_resource(metadata(SERVING, ns, "serving"), predictor)
        # plain Deployments: Knative would refuse the claim and the emptyDir volumes
        found["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": "RawDeployment"}
        return [found]
    spec = pod_spec([_serving_container(settings, values, "serving")], SERVICE_ACCOUNT)
    template = {"metadata": pod_metadata, "spec": spec}
    return [
        deployment(SERVING, ns, "serving", values.replicas, template),
        service(SERVING, ns, "serving", [("http", settings.serving.port)]),
    ]


def workspace_claim(values: DeployValues) -> Json:
    """The workspace: the feature store, the run history, and (SQLite, files) the registry.
    Read and written by every pod, hence ``ReadWriteMany``."""
    spec: Json = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": values.storage_size}},
    }
    if values.storage_class is not None:
        spec["storageClassName"] = values.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(WORKSPACE_CLAIM, values.namespace, "workspace"),
        "spec": spec,
    }
