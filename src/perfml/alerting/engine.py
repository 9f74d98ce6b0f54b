"""The rule engine: evaluate every rule, move its alerts, keep them, tell people.

One evaluation at ``at_ms`` runs each enabled rule's PromQL over a series source
(:func:`perfml.promql.evaluate`), feeds the result to the
:class:`~perfml.alerting.alerts.AlertTracker`, writes the transitions and the current alerts
to the :class:`~perfml.alerting.store.AlertStore` in one transaction, and hands the
firing and resolved alerts to the :class:`~perfml.alerting.dispatch.Dispatcher`. A rule whose
evaluation fails is recorded in its :class:`RuleHealth` (as Prometheus counts
``prometheus_rule_evaluation_failures_total``) and keeps its alerts as they were; the other
rules run on. :meth:`RuleEngine.evaluate_range` replays a past period, step by step.

>>> from typing import NamedTuple
>>> class Rule(NamedTuple):
...     name: str
...     expr: str
...     for_: float = 0.0
...     keep_firing_for: float = 0.0
...     labels: dict[str, str] = {"severity": "warning"}
...     annotations: dict[str, str] = {}
...     enabled: bool = True
>>> class Sample(NamedTuple):
...     labels: dict[str, str]
...     value: float
>>> def evaluate(expr, at_ms, source):  # a stand-in for PromQL: "up" is 0 from t=60s on
...     return [Sample({"job": "serving"}, 0.0)] if at_ms >= 60_000 else []
>>> engine = RuleEngine([Rule("Down", "up == 0", for_=60.0)], source=None, evaluate=evaluate)
>>> [(a.state.value, a.last_evaluated_ms) for a in engine.evaluate_range(0, 180_000, 30_000)]
[('pending', 60000), ('firing', 120000)]
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from perfml.alerting.alertmanager import alertmanager_config
from perfml.alerting.alerts import NOTIFIED, Alert, AlertRule, AlertTracker
from perfml.alerting.dispatch import Dispatcher, Silence, routing_from_config
from perfml.alerting.errors import AlertingError
from perfml.alerting.notify import generator_url, notifiers_from_settings
from perfml.alerting.store import AlertStore
from perfml.config import MonitoringSettings
from perfml.errors import UsageError
from perfml.timeparse import parse_duration

log = logging.getLogger(__name__)


class EngineRule(AlertRule, Protocol):
    """What the engine reads of a rule (:class:`perfml.alerting.rules.Rule` has it)."""

    @property
    def expr(self) -> str: ...
    @property
    def enabled(self) -> bool: ...


Evaluate = Callable[[str, int, Any], Any]
"""``evaluate(expr, at_ms, source) -> list[Sample] | float``, as PromQL's."""


class BadStepError(AlertingError, UsageError):
    def __init__(self, step_ms: int) -> None:
        super().__init__(f"the evaluation step must be positive, not {step_ms} ms")


@dataclass(frozen=True)
class _ScalarSample:
    # A scalar result is one alert without labels, as Prometheus's rule query turns it.
    labels: Mapping[str, str]
    value: float


@dataclass
class RuleHealth:
    """How a rule's evaluations go: Prometheus's rule health, last error and duration."""

    rule: str
    health: Literal["unknown", "ok", "err"] = "unknown"
    last_error: str = ""
    last_evaluation_ms: int | None = None
    last_duration_s: float = 0.0
    evaluations: int = 0
    failures: int = 0


def _promql_evaluate() -> Evaluate:
    from perfml import promql

    return promql.evaluate


class RuleEngine:
    """Evaluates ``rules`` over ``source``; ``store`` and ``dispatcher`` are optional (no
    persistence, no notifications without them). With a store, the tracker resumes from the
    stored alerts and the dispatcher from the stored notification log."""

    def __init__(
        self,
        rules: Sequence[EngineRule],
        source: Any,
        store: AlertStore | None = None,
        dispatcher: Dispatcher | None = None,
        *,
        resolve_timeout_s: float = 300.0,
        evaluate: Evaluate | None = None,
        silences: Sequence[Silence] = (),
    ) -> None:
        self.rules = [r for r in rules if r.enabled]
        self.source = source
        self.store = store
        self.dispatcher = dispatcher
        self.silences = list(silences)
        """Silences applied when there is no store (a store's own are used otherwise)."""
        self._evaluate = evaluate or _promql_evaluate()
        self.tracker = AlertTracker(round(resolve_timeout_s * 1000))
        self.health = {r.name: RuleHealth(r.name) for r in self.rules}
        if store is not None:
            names = set(self.health)
            self.tracker.restore(a for a in store.current_alerts() if a.rule in names)
            if dispatcher is not None:
                dispatcher.restore_log(store.notify_log())

    def evaluate(self, at_ms: int) -> list[Alert]:
        """Evaluate every rule at ``at_ms``; return the alerts whose state changed."""
        transitions: list[Alert] = []
        for rule in self.rules:
            health = self.health[rule.name]
            started = time.perf_counter()
            try:
                result = self._evaluate(rule.expr, at_ms, self.source)
                samples = (
                    [_ScalarSample({}, float(result))]
                    if isinstance(result, float | int)
                    else (result)
                )
                transitions.extend(self.tracker.update(rule, samples, at_ms))
            except Exception as exc:  # one broken rule must not stop the others
                health.health, health.last_error = "err", f"{type(exc).__name__}: {exc}"
                health.failures += 1
                log.warning("rule %s failed at %d ms: %s", rule.name, at_ms, health.last_error)
            else:
                health.health, health.last_error = "ok", ""
            health.evaluations += 1
            health.last_evaluation_ms = at_ms
            health.last_duration_s = time.perf_counter() - started
        tracked = self.tracker.tracked()
        if self.store is not None:
            self.store.save_evaluation(transitions, tracked)
        if self.dispatcher is not None:
            self._notify([a for a in tracked if a.state in NOTIFIED], at_ms)
        return transitions

    def _notify(self, alerts: list[Alert], at_ms: int) -> None:
        if self.dispatcher is None:
            return
        silences = self.store.silences(at_ms) if self.store is not None else self.silences
        deliveries = self.dispatcher.dispatch(alerts, at_ms, silences)
        for failed in (d for d in deliveries if d.outcome == "failed"):
            log.warning("%s notification to %s failed: %s", failed.integration, failed.target,
                        failed.error)  # fmt: skip
        if self.store is not None and deliveries:
            self.store.record_deliveries(deliveries)
            self.store.save_notify_log(self.dispatcher.export_log())

    def evaluate_range(self, start_ms: int, end_ms: int, step_ms: int) -> list[Alert]:
        """Evaluate at ``start_ms``, ``start_ms + step_ms`` … up to ``end_ms`` (inclusive), as
        a running engine would have; return every transition in order."""
        if step_ms <= 0:
            raise BadStepError(step_ms)
        transitions: list[Alert] = []
        for at_ms in range(start_ms, end_ms + 1, step_ms):
            transitions.extend(self.evaluate(at_ms))
        return transitions

    def alerts(self) -> list[Alert]:
        """The pending and firing alerts now."""
        return self.tracker.alerts()

    def run(
        self,
        interval_s: float,
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Evaluate every ``interval_s`` seconds of ``clock`` until ``stop`` is set. A failed
        round (the database unreachable, say) is logged and the loop goes on."""
        while not stop.is_set():
            started = clock()
            try:
                self.evaluate(round(started * 1000))
            except Exception:
                log.exception("rule evaluation round at %.3f failed", started)
            stop.wait(max(0.0, interval_s - (clock() - started)))


def build_engine(
    monitoring: MonitoringSettings,
    store: AlertStore,
    source: Any,
    *,
    rules: Sequence[EngineRule] | None = None,
    alerts_log: Path | None = None,
    external_url: str = "",
) -> RuleEngine:
    """The engine ``monitoring:`` describes over ``source``: its rules
    (:func:`~perfml.alerting.rules.rules_from_settings` unless given), the alerts kept in
    ``store``, and notifications as ``monitoring.notifications`` configures them (the
    JSON-lines log at ``alerts_log`` unless the settings name one), routed and inhibited as
    the exported Alertmanager configuration says."""
    from perfml.alerting.rules import Rule, rules_from_settings

    chosen: Sequence[EngineRule] = rules_from_settings(monitoring) if rules is None else rules
    defined = [rule for rule in chosen if isinstance(rule, Rule)]
    options, routes, inhibitions = routing_from_config(alertmanager_config(monitoring, defined))
    dispatcher = Dispatcher(
        notifiers_from_settings(monitoring.notifications, alerts_log),
        options,
        routes=routes,
        inhibitions=inhibitions,
        external_url=external_url,
        generator_urls={r.name: generator_url(external_url, r.expr) for r in chosen},
    )
    return RuleEngine(
        chosen,
        source,
        store,
        dispatcher,
        resolve_timeout_s=parse_duration(monitoring.resolve_timeout).total_seconds(),
    )
