"""Alerting: rules as data, their lifecycle, the alert store, and telling people.

- :mod:`.rules` and :mod:`.rule_kinds` — a rule is a kind (a plugin with typed parameters and
  its PromQL) with labels and annotations; the shipped kinds, one rule each;
- :mod:`.templates` — Go templating of annotations, as Prometheus renders it;
- :mod:`.alerts` — an alert's states and the tracker that moves them as Prometheus does;
- :mod:`.engine` — evaluates every rule over a series source, keeps the alerts, notifies;
- :mod:`.store` — alerts, their history, silences and the notification log in the metadata
  database;
- :mod:`.dispatch` and :mod:`.notify` — Alertmanager's grouping, timing, silences, and the
  notifiers (webhook, log file, e-mail);
- :mod:`.prometheus_config` and :mod:`.alertmanager` — the same rules and routes as
  Prometheus and Alertmanager configuration, for a cluster.

It evaluates PromQL with :mod:`perfml.promql` and reads no part but the metadata database.
"""

from perfml.alerting.alerts import ACTIVE, NOTIFIED, Alert, AlertState, AlertTracker
from perfml.alerting.dispatch import Dispatcher, LabelMatcher, Silence
from perfml.alerting.engine import RuleEngine, RuleHealth, build_engine
from perfml.alerting.errors import AlertingError
from perfml.alerting.notify import Notification, Notifier, NotifierRegistry
from perfml.alerting.prometheus_config import export_prometheus
from perfml.alerting.rules import (
    KINDS,
    Rule,
    RuleKind,
    RuleParams,
    builtin_kinds,
    default_rules,
    rule_kind,
    rules_from_settings,
)
from perfml.alerting.store import AlertStore

__all__ = [
    "ACTIVE",
    "KINDS",
    "NOTIFIED",
    "Alert",
    "AlertState",
    "AlertStore",
    "AlertTracker",
    "AlertingError",
    "Dispatcher",
    "LabelMatcher",
    "Notification",
    "Notifier",
    "NotifierRegistry",
    "Rule",
    "RuleEngine",
    "RuleHealth",
    "RuleKind",
    "RuleParams",
    "Silence",
    "build_engine",
    "builtin_kinds",
    "default_rules",
    "export_prometheus",
    "rule_kind",
    "rules_from_settings",
]
