"""What keeps perfml on a cluster safe: no credential in a manifest, least privilege, no root.

- :func:`refuse_inline_secrets`: a ``perfml.yaml`` that holds a credential inline (a password in
  ``registry.url``, a token in a webhook's query string...) is refused for export, naming the
  key: a manifest is committed, printed and diffed, a credential must not be. Credentials reach
  the pods from the Secret :data:`SECRET` by reference (``secretKeyRef``), never by value.
- :func:`controller_role`: the only Role, for the controller's ServiceAccount, in its own
  namespace; no ``*``, no ClusterRole.
- :func:`container_security` / :func:`pod_security`: every container runs as the image's
  numeric non-root user, with a read-only root filesystem and no capabilities.
- :func:`network_policies`: ingress denied by default, then allowed port by port.

>>> refuse_inline_secrets(Settings.model_validate(
...     {"registry": {"url": "postgresql+psycopg://perfml:hunter2@db/perfml"}}))
Traceback (most recent call last):
...
perfml.deploy.security.InlineSecretError: perfml.yaml: registry.url holds a credential inline \
(postgresql+psycopg://perfml:***@db/perfml): ...
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from perfml.config import Settings
from perfml.deploy.errors import DeployError
from perfml.errors import UsageError

SECRET = "perfml-secrets"
"""The Secret every credential comes from, each under the key of its environment variable."""
ALERTMANAGER_SECRETS = "perfml-alertmanager-secrets"
"""The Secret (in the monitoring namespace) the Alertmanager mounts for the files its
configuration names (the SMTP password); list it in the Alertmanager's ``spec.secrets``."""
UID = 10001
"""The image's user and group (see the Dockerfile)."""
PASSWORD_ENV = "PGPASSWORD"
"""Where the PostgreSQL driver reads the registry database's password from."""
_SECRET_PARAMS = re.compile(
    r"(token|secret|password|passwd|pwd|key|auth|sig|signature|credential|code)", re.I
)

Json = dict[str, Any]


class InlineSecretError(DeployError, UsageError):
    """A credential is written inline in ``perfml.yaml``; it cannot go into a manifest."""

    def __init__(self, key: str, shown: str, instead: str) -> None:
        self.key = key
        super().__init__(
            f"perfml.yaml: {key} holds a credential inline ({shown}): "
            f"never write it in perfml.yaml; {instead}"
        )


def _mask(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = "&".join(
        f"{k}=***" if _SECRET_PARAMS.search(k) else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def _credential_in(url: str) -> bool:
    parts = urlsplit(url)
    if parts.password:
        return True
    return any(_SECRET_PARAMS.search(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True))


def _urls(settings: Settings) -> Iterator[tuple[str, str, str]]:
    """(key, url, what to do instead) for every URL of ``settings`` that may hold one."""
    secret = f"the Secret {SECRET!r}"
    if settings.registry.url:
        yield (
            "registry.url",
            settings.registry.url,
            f"write the URL without the password and put it in {secret} under {PASSWORD_ENV}",
        )
    if settings.registry.artifacts:
        yield (
            "registry.artifacts",
            settings.registry.artifacts,
            f"use registry.oci_username_env / oci_password_env, keys of {secret}",
        )
    if settings.sources.prometheus.url:
        yield (
            "sources.prometheus.url",
            settings.sources.prometheus.url,
            f"use sources.prometheus.token_env / password_env, keys of {secret}",
        )
    for index, webhook in enumerate(settings.monitoring.notifications.webhooks):
        yield (
            f"monitoring.notifications.webhooks[{index}].url",
            webhook.url,
            "a webhook's token cannot be a reference in Alertmanager's webhook_configs: "
            "put the token in the receiving end's own Secret-backed configuration",
        )
    for index, target in enumerate(settings.monitoring.targets):
        yield (
            f"monitoring.targets[{index}].url",
            target.url,
            "scrape targets take no credentials in perfml.yaml",
        )


def refuse_inline_secrets(settings: Settings) -> None:
    """Raise :class:`InlineSecretError` for the first credential written inline in ``settings``.

    An SMTP password can only be named (``password_env``, ``password_file``): the settings
    have no key for an inline one.
    """
    for key, url, instead in _urls(settings):
        if _credential_in(url):
            raise InlineSecretError(key, _mask(url), instead)


def secret_env(names: list[str]) -> list[Json]:
    """Env vars read from :data:`SECRET` by reference, each optional (an unset credential is
    the same as locally: the feature that needs it says so)."""
    return [
        {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": SECRET, "key": name, "optional": True}},
        }
        for name in sorted(set(names))
    ]


def credential_envs(settings: Settings) -> list[str]:
    """Every environment variable ``settings`` reads a credential from."""
    names = [
        PASSWORD_ENV,
        settings.registry.oci_username_env,
        settings.registry.oci_password_env,
        settings.serving.token_env,
        settings.sources.prometheus.token_env,
        settings.sources.prometheus.password_env,
    ]
    return sorted(set(names))


def container_security() -> Json:
    """The securityContext of every perfml container."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
    }


def pod_security() -> Json:
    """The pod securityContext: the claim's files belong to the image's group."""
    return {
        "fsGroup": UID,
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def service_account(name: str, namespace: str, labels: Json, mount_token: bool) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "automountServiceAccountToken": mount_token,
    }


def controller_role(name: str, namespace: str, labels: Json, config_maps: list[str]) -> Json:
    """What the controller may do, in its namespace only: run and follow Jobs, read their
    pods' logs, and patch its own ConfigMaps (named, not all of them)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "rules": [
            {
                "apiGroups": ["batch"],
                "resources": ["jobs"],
                "verbs": ["create", "get", "list", "watch"],
            },
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": sorted(config_maps),
                "verbs": ["get", "patch"],
            },
        ],
    }


def role_binding(name: str, namespace: str, labels: Json, account: str) -> Json:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def _policy(name: str, namespace: str, labels: Json, selector: Json, ingress: list[Json]) -> Json:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"podSelector": selector, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def _ports(ports: list[int]) -> list[Json]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def network_policies(
    namespace: str,
    monitoring_namespace: str,
    labels: Json,
    serving: tuple[Json, list[int]],
    dashboard: tuple[Json, list[int], list[int]],
    live: tuple[Json, list[int]],
) -> list[Json]:
    """Ingress denied to every pod of ``namespace``, then: the serving pods' ports from
    anywhere in the cluster; the dashboard's port from anywhere in the cluster and its metrics
    ports from ``monitoring_namespace`` only; the live scorer's remote-write port (which also
    serves its metrics) from anywhere in the cluster, where the fleet's Prometheus may run. The
    controller takes no ingress at all."""
    anywhere: list[Json] = [{"namespaceSelector": {}}]
    monitoring = [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": monitoring_namespace}
            }
        }
    ]
    serving_selector, serving_ports = serving
    dashboard_selector, dashboard_ports, metrics_ports = dashboard
    live_selector, live_ports = live
    return [
        _policy("perfml-default-deny-ingress", namespace, labels, {}, []),
        _policy(
            "perfml-serving",
            namespace,
            labels,
            serving_selector,
            [{"from": anywhere, "ports": _ports(serving_ports)}],
        ),
        _policy(
            "perfml-dashboard",
            namespace,
            labels,
            dashboard_selector,
            [
                {"from": anywhere, "ports": _ports(dashboard_ports)},
                {"from": monitoring, "ports": _ports(metrics_ports)},
            ],
        ),
        _policy(
            "perfml-live",
            namespace,
            labels,
            live_selector,
            [{"from": anywhere, "ports": _ports(live_ports)}],
        ),
    ]
