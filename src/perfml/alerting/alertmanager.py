"""The Alertmanager configuration perfml's alerts are routed with, as data.

:func:`alertmanager_config` turns ``monitoring.notifications`` into an
:class:`AlertmanagerConfig` — modelled once here, dumped without unset fields — that
``amtool check-config`` accepts:

- one **route** grouped by ``group_by`` with ``group_wait``, ``group_interval`` and
  ``repeat_interval``, and a sub-route for ``severity="critical"`` told sooner and repeated more
  often (``critical_group_wait``, ``critical_repeat_interval``);
- one **receiver**, ``perfml``, with a ``webhook_configs`` entry per webhook and an
  ``email_configs`` entry for SMTP. The mail password is never written into the file: it is
  ``auth_password_file``, the configured file, or ``<secrets_dir>/<password_env>`` (the
  Kubernetes way: the Secret holding the variable mounted as files);
- a sub-route per rule whose kind groups its notifications its own way
  (:attr:`~perfml.alerting.rules.RuleKind.group_by`): ``AnomalyDetected`` by entity, so a host
  with three anomalous metrics is one notification listing them;
- **inhibition**: a critical alert silences the warnings about the same target — the same
  values of :data:`TARGET_LABELS` (a pod, a job, a deployment's predictor, a model version, a
  feature). The alert name is not among them, so ``JobRetriesExhausted`` silences
  ``JobFailed`` for its job. And a rule whose kind inhibits others
  (:attr:`~perfml.alerting.rules.RuleKind.inhibits`) silences their rules' alerts with the same
  values of its ``inhibit_equal``: ``FleetAnomalyStorm`` the ``AnomalyDetected`` alerts of its
  model.

The embedded dispatcher routes and inhibits by this same configuration
(:func:`perfml.alerting.dispatch.routing_from_config`).

The JSON-lines notification log (``notifications.log``) is perfml's own; Alertmanager has none.

>>> from perfml.config import MonitoringSettings
>>> config = alertmanager_config(MonitoringSettings()).to_dict()
>>> [route["matchers"] for route in config["route"]["routes"]], config["receivers"]
([['alertname="AnomalyDetected"'], ['severity="critical"']], [{'name': 'perfml'}])
>>> storm = config["inhibit_rules"][1]
>>> storm["source_matchers"], storm["target_matchers"], storm["equal"]
(['alertname="FleetAnomalyStorm"'], ['alertname="AnomalyDetected"'], ['model'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from perfml.alerting.rules import Rule, rules_from_settings
from perfml.config import MonitoringSettings, SmtpSettings

RECEIVER = "perfml"
TARGET_LABELS = (
    "namespace",
    "pod",
    "job_name",
    "deployment_name",
    "predictor_name",
    "model",
    "version",
    "feature",
)
"""Labels that together name what an alert is about; an inhibition needs them all equal."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WebhookConfig(_Wire):
    url: str
    send_resolved: bool = True


class EmailConfig(_Wire):
    to: str
    from_: str = Field(alias="from")
    smarthost: str
    auth_username: str | None = None
    auth_password_file: str | None = None
    require_tls: bool = True
    send_resolved: bool = False


class Receiver(_Wire):
    name: str
    webhook_configs: list[WebhookConfig] | None = None
    email_configs: list[EmailConfig] | None = None


class Route(_Wire):
    receiver: str | None = None
    group_by: list[str] | None = None
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None
    matchers: list[str] | None = None
    routes: list[Route] | None = None


class InhibitRule(_Wire):
    source_matchers: list[str]
    target_matchers: list[str]
    equal: list[str]


class GlobalConfig(_Wire):
    resolve_timeout: str


class AlertmanagerConfig(_Wire):
    """The whole of ``alertmanager.yml``, as perfml writes it."""

    global_: GlobalConfig = Field(alias="global")
    route: Route
    receivers: list[Receiver]
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as Alertmanager reads it (unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True)


def email_config(smtp: SmtpSettings, secrets_dir: str) -> EmailConfig:
    """The ``email_configs`` entry of ``smtp``, its password by file only."""
    if smtp.password_file is not None:
        password_file: str | None = smtp.password_file
    elif smtp.password_env is not None:
        password_file = f"{secrets_dir.rstrip('/')}/{smtp.password_env}"
    else:
        password_file = None
    return EmailConfig(
        to=smtp.to,
        from_=smtp.from_,
        smarthost=smtp.smarthost,
        auth_username=smtp.username,
        auth_password_file=password_file,
        require_tls=smtp.require_tls,
        send_resolved=smtp.send_resolved,
    )


def _alertname(rules: Sequence[Rule]) -> str:
    names = sorted(rule.name for rule in rules)
    return f'alertname="{names[0]}"' if len(names) == 1 else f'alertname=~"{"|".join(names)}"'


def rule_routes(rules: Sequence[Rule]) -> list[Route]:
    """A sub-route for each enabled rule whose kind groups its notifications its own way; its
    timing is the root route's."""
    return [
        Route(receiver=RECEIVER, group_by=list(rule.kind.group_by), matchers=[_alertname([rule])])
        for rule in rules
        if rule.enabled and rule.kind.group_by
    ]


def rule_inhibitions(rules: Sequence[Rule]) -> list[InhibitRule]:
    """For each enabled rule whose kind inhibits others, an inhibition of the enabled rules of
    those kinds (none if there are none)."""
    enabled = [rule for rule in rules if rule.enabled]
    found = []
    for source in enabled:
        targets = [rule for rule in enabled if rule.kind.name in source.kind.inhibits]
        if targets:
            found.append(
                InhibitRule(
                    source_matchers=[_alertname([source])],
                    target_matchers=[_alertname(targets)],
                    equal=list(source.kind.inhibit_equal),
                )
            )
    return found


def alertmanager_config(
    monitoring: MonitoringSettings, rules: Sequence[Rule] | None = None
) -> AlertmanagerConfig:
    """The Alertmanager configuration of ``monitoring`` and its ``rules`` (default: those
    :func:`~perfml.alerting.rules.rules_from_settings` gives), see the module's doc."""
    chosen = rules_from_settings(monitoring) if rules is None else rules
    notify = monitoring.notifications
    webhooks = [WebhookConfig(url=w.url, send_resolved=w.send_resolved) for w in notify.webhooks]
    emails = [] if notify.smtp is None else [email_config(notify.smtp, monitoring.secrets_dir)]
    receiver = Receiver(
        name=RECEIVER, webhook_configs=webhooks or None, email_configs=emails or None
    )
    critical = Route(
        receiver=RECEIVER,
        matchers=['severity="critical"'],
        group_wait=notify.critical_group_wait,
        repeat_interval=notify.critical_repeat_interval,
    )
    return AlertmanagerConfig(
        global_=GlobalConfig(resolve_timeout=monitoring.resolve_timeout),
        route=Route(
            receiver=RECEIVER,
            group_by=list(notify.group_by),
            group_wait=notify.group_wait,
            group_interval=notify.group_interval,
            repeat_interval=notify.repeat_interval,
            routes=[*rule_routes(chosen), critical],
        ),
        receivers=[receiver],
        inhibit_rules=[
            InhibitRule(
                source_matchers=['severity="critical"'],
                target_matchers=['severity="warning"'],
                equal=list(TARGET_LABELS),
            ),
            *rule_inhibitions(chosen),
        ],
    )
