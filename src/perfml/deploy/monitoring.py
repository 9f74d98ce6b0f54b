"""perfml's monitoring for the Prometheus operator, Alertmanager and Grafana on a cluster.

The same rules, routes and dashboards as the embedded mode, as the operators read them:

- a ``PrometheusRule`` (``monitoring.coreos.com/v1``) whose ``spec.groups`` are
  :func:`~perfml.alerting.prometheus_config.rule_groups` of the shipped and the user's rules;
- ``PodMonitor`` s for the serving pods and the job metrics; each sets the ``job`` label the
  rules name (``perfml-serving``, ``perfml-jobs``), whatever engine runs the pods;
- the Alertmanager configuration as the Secret :data:`ALERTMANAGER_CONFIG` (key
  ``alertmanager.yaml``) in the monitoring namespace, for the Alertmanager resource's
  ``spec.configSecret``: secrets in it are files (the SMTP password is
  ``/etc/alertmanager/secrets/perfml-alertmanager-secrets/<password_env>``), never values;
- one ConfigMap per Grafana dashboard, labelled ``grafana_dashboard: "1"`` for the Grafana
  sidecar, in the monitoring namespace; their datasource is Grafana's ``prometheus``.
"""

from __future__ import annotations

import json
from typing import Any

from perfml.alerting.alertmanager import alertmanager_config
from perfml.alerting.prometheus_config import dump_yaml, rule_groups
from perfml.alerting.rules import JOBS_JOB, LIVE_JOB, SERVING_JOB, Rule
from perfml.config import Settings
from perfml.dashboard.grafana import DATASOURCE_INPUT, grafana_dashboards
from perfml.deploy.values import DeployValues
from perfml.deploy.workloads import labels, metadata, selector

Json = dict[str, Any]

RULES = "perfml-rules"
ALERTMANAGER_CONFIG = "perfml-alertmanager-config"
ALERTMANAGER_KEY = "alertmanager.yaml"
GRAFANA_DATASOURCE = "prometheus"
"""The uid of the Prometheus datasource in Grafana (kube-prometheus-stack's default)."""
_HEADER = "# Written by `perfml export k8s` from perfml.yaml: change that file instead.\n"


def prometheus_rule(settings: Settings, values: DeployValues, rules: list[Rule]) -> Json:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(RULES, values.namespace, "monitoring"),
        "spec": rule_groups(rules, settings.monitoring.evaluation_interval),
    }


def pod_monitor(
    name: str, values: DeployValues, component: str, port: str, job: str, interval: str
) -> Json:
    """Scrape ``port`` of the ``component`` pods at ``/metrics`` as the job ``job``."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(name, values.namespace, "monitoring"),
        "spec": {
            "selector": {"matchLabels": selector(component)},
            "namespaceSelector": {"matchNames": [values.namespace]},
            "podMetricsEndpoints": [
                {
                    "port": port,
                    "path": "/metrics",
                    "interval": interval,
                    "relabelings": [
                        {"action": "replace", "targetLabel": "job", "replacement": job}
                    ],
                }
            ],
        },
    }


def pod_monitors(settings: Settings, values: DeployValues) -> list[Json]:
    interval = settings.monitoring.scrape_interval
    return [
        pod_monitor("perfml-serving", values, "serving", "http", SERVING_JOB, interval),
        pod_monitor("perfml-jobs", values, "dashboard", "metrics", JOBS_JOB, interval),
        pod_monitor("perfml-live", values, "live", "remote-write", LIVE_JOB, interval),
    ]


def alertmanager_secret(settings: Settings, values: DeployValues) -> Json:
    config = alertmanager_config(settings.monitoring).to_dict()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(ALERTMANAGER_CONFIG, values.monitoring_namespace, "monitoring"),
        "type": "Opaque",
        "stringData": {ALERTMANAGER_KEY: dump_yaml(config, _HEADER)},
    }


def _for_sidecar(model: Json) -> str:
    """``model`` as the sidecar loads it: no import inputs, the datasource named."""
    provisioned = {k: v for k, v in model.items() if k != "__inputs"}
    text = json.dumps(provisioned, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return text.replace(f"${{{DATASOURCE_INPUT}}}", GRAFANA_DATASOURCE)


def grafana_config_maps(values: DeployValues) -> list[Json]:
    found = []
    for file_name, model in grafana_dashboards().items():
        name = f"grafana-{file_name.removesuffix('.json')}"
        meta = metadata(name, values.monitoring_namespace, "monitoring")
        meta["labels"] = {**labels("monitoring"), "grafana_dashboard": "1"}
        meta["annotations"] = {"grafana_folder": "perfml"}
        found.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta,
                "data": {file_name: _for_sidecar(model)},
            }
        )
    return found
