"""Alerts: their states, the immutable record of one, and the tracker that moves them.

An alerting rule's expression returns samples; each label set it returns is one alert. The
tracker moves alerts exactly as Prometheus does (``rules/alerting.go``), so the embedded mode
and a real Prometheus fire the same alerts at the same evaluations::

    (returned) ──► pending ──(returned for `for`)──► firing ──(not returned)──► resolved
                      │                               ▲   │                  (kept resolve_timeout
                      └─(not returned)──► inactive    └───┘ keep_firing_for   for notification,
                                          (dropped)                           then forgotten)

- a label set first returned at ``t`` is pending with ``active_at = t``; it fires at the first
  evaluation where ``t - active_at >= for`` (with ``for`` 0 at once, never seen pending);
- a pending alert not returned is dropped (``inactive``), never notified;
- a firing alert not returned is resolved at once, unless ``keep_firing_for`` is set: it keeps
  firing while less than ``keep_firing_for`` has passed since the first evaluation that did not
  return it (Prometheus's ``KeepFiringSince``);
- a label set returned again while pending or firing keeps its ``active_at``; once resolved, it
  starts a new alert.

>>> class Rule:
...     name, for_, keep_firing_for = "HighLoad", 60.0, 0.0
...     labels, annotations = {"severity": "warning"}, {"summary": "{{ $labels.host }} busy"}
>>> from typing import NamedTuple
>>> class Sample(NamedTuple):  # an instant-vector element, as promql.evaluate returns
...     labels: dict[str, str]
...     value: float
>>> tracker = AlertTracker()
>>> [a.state.value for a in tracker.update(Rule(), [Sample({"host": "a"}, 3.0)], at_ms=0)]
['pending']
>>> [a.state.value for a in tracker.update(Rule(), [Sample({"host": "a"}, 4.0)], at_ms=60_000)]
['firing']
>>> alert = tracker.alerts()[0]
>>> dict(alert.labels), alert.annotations["summary"], alert.active_at_ms
({'alertname': 'HighLoad', 'host': 'a', 'severity': 'warning'}, 'a busy', 0)
>>> [a.state.value for a in tracker.update(Rule(), [], at_ms=120_000)]
['resolved']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from perfml.alerting import templates
from perfml.alerting.errors import AlertingError

ALERTNAME = "alertname"


class DuplicateAlertError(AlertingError):
    """Two samples of one rule give the same alert label set (Prometheus refuses it too)."""

    def __init__(self, rule: str, labels: Mapping[str, str]) -> None:
        self.rule = rule
        self.labels = dict(labels)
        super().__init__(
            f"rule {rule!r}: the expression returned two samples with the alert labels "
            f"{format_labels(labels)}: make the labels unique (aggregate, or keep a label)"
        )


class AlertState(StrEnum):
    """Where an alert is in its lifecycle."""

    PENDING = "pending"
    """Returned by the expression for less than the rule's ``for``: not notified."""
    FIRING = "firing"
    """Returned for at least ``for`` (or kept by ``keep_firing_for``): notified."""
    RESOLVED = "resolved"
    """Was firing and is no longer returned: notified once, then forgotten."""
    INACTIVE = "inactive"
    """Was pending and is no longer returned: dropped without ever being notified."""

    @property
    def is_active(self) -> bool:
        return self in ACTIVE


ACTIVE: frozenset[AlertState] = frozenset({AlertState.PENDING, AlertState.FIRING})
"""States of an alert whose condition holds (or is held by ``keep_firing_for``)."""
ENDED: frozenset[AlertState] = frozenset({AlertState.RESOLVED, AlertState.INACTIVE})
"""States of an alert whose condition went away; with ACTIVE they cover every state."""
NOTIFIED: frozenset[AlertState] = frozenset({AlertState.FIRING, AlertState.RESOLVED})
"""States that are sent to the notification pipeline (as Prometheus sends to Alertmanager)."""


class AlertRule(Protocol):
    """What the tracker reads of a rule (:class:`perfml.alerting.rules.Rule` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def for_(self) -> float: ...
    @property
    def keep_firing_for(self) -> float: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...


class AlertSample(Protocol):
    """One element of an instant vector (:class:`perfml.promql.Sample` is one)."""

    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def value(self) -> float: ...


# -- label sets ------------------------------------------------------------------------------

_FNV_OFFSET, _FNV_PRIME, _MASK = 14695981039346656037, 1099511628211, 2**64 - 1


def fingerprint(labels: Mapping[str, str]) -> str:
    """The label set's fingerprint exactly as Alertmanager computes it (FNV-1a 64 over sorted
    names and values, each followed by byte 0xff), in its 16-hex-digit spelling.

    >>> fingerprint({}), fingerprint({"alertname": "Up"}) == fingerprint({"alertname": "Up"})
    ('cbf29ce484222325', True)
    """
    value = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                value = ((value ^ byte) * _FNV_PRIME) & _MASK
            value = ((value ^ 0xFF) * _FNV_PRIME) & _MASK
    return f"{value:016x}"


def format_labels(labels: Mapping[str, str]) -> str:
    """``{a="1", b="2"}``, sorted, as Prometheus prints a label set."""
    inner = ", ".join(f"{k}={_quote(labels[k])}" for k in sorted(labels))
    return "{" + inner + "}"


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(mapping.items())))


# -- the record ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=True)
class Alert:
    """One alert of one rule: a label set, its state and its times (Unix milliseconds)."""

    rule: str
    labels: Mapping[str, str]
    """The sample's labels without ``__name__``, the rule's labels, and ``alertname``."""
    annotations: Mapping[str, str]
    """The rule's annotations expanded for this sample (at its latest evaluation)."""
    state: AlertState
    active_at_ms: int
    """When the label set was first returned (the alert became pending)."""
    fired_at_ms: int | None = None
    resolved_at_ms: int | None = None
    last_evaluated_ms: int = 0
    value: float = math.nan
    """The sample value at the latest evaluation that returned the label set."""
    keep_firing_since_ms: int | None = None
    """The first evaluation that no longer returned a firing alert kept by keep_firing_for."""
    fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(self, "annotations", _frozen(self.annotations))
        object.__setattr__(self, "fingerprint", fingerprint(self.labels))

    @property
    def key(self) -> tuple[str, str]:
        """(rule, fingerprint): what identifies the alert across evaluations."""
        return (self.rule, self.fingerprint)

    def with_state(self, state: AlertState, at_ms: int) -> Alert:
        """A copy moved to ``state`` at ``at_ms`` (its firing or resolution time set)."""
        changes: dict[str, Any] = {"state": state, "last_evaluated_ms": at_ms}
        if state is AlertState.FIRING:
            changes["fired_at_ms"] = at_ms
        elif state in ENDED:
            changes["resolved_at_ms"] = at_ms
            changes["keep_firing_since_ms"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the value as a string when it is not finite)."""
        return {
            "rule": self.rule,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "state": self.state.value,
            "active_at_ms": self.active_at_ms,
            "fired_at_ms": self.fired_at_ms,
            "resolved_at_ms": self.resolved_at_ms,
            "last_evaluated_ms": self.last_evaluated_ms,
            "value": self.value if math.isfinite(self.value) else templates.go_float(self.value),
            "keep_firing_since_ms": self.keep_firing_since_ms,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        return cls(
            rule=data["rule"],
            labels=data["labels"],
            annotations=data["annotations"],
            state=AlertState(data["state"]),
            active_at_ms=int(data["active_at_ms"]),
            fired_at_ms=data.get("fired_at_ms"),
            resolved_at_ms=data.get("resolved_at_ms"),
            last_evaluated_ms=int(data.get("last_evaluated_ms", 0)),
            value=float(data.get("value", math.nan)),
            keep_firing_since_ms=data.get("keep_firing_since_ms"),
        )


# -- the state machine -----------------------------------------------------------------------


def _expand(text: str, labels: Mapping[str, str], value: float) -> str:
    # As Prometheus: a template that fails to expand shows the error instead of stopping the rule.
    try:
        return templates.expand(text, labels, value)
    except templates.TemplateError as exc:
        return f"<error expanding template: {exc.problem}>"


def alert_labels(rule: AlertRule, sample_labels: Mapping[str, str], value: float) -> dict[str, str]:
    """The alert's labels for one sample: the sample's without ``__name__``, then the rule's
    (templates expanded), then ``alertname``."""
    labels = {k: v for k, v in sample_labels.items() if k != "__name__"}
    for name, text in rule.labels.items():
        labels[name] = _expand(text, sample_labels, value)
    labels[ALERTNAME] = rule.name
    return {k: v for k, v in labels.items() if v != ""}  # an empty label is no label


class AlertTracker:
    """The alerts of every rule, moved by each evaluation's result; no I/O, no clock.

    ``resolved_retention_ms`` is how long a resolved alert is kept (for notification) before
    it is forgotten; Prometheus keeps them 15 minutes, perfml uses ``resolve_timeout``.
    """

    def __init__(self, resolved_retention_ms: int = 15 * 60_000) -> None:
        self.resolved_retention_ms = resolved_retention_ms
        self._alerts: dict[str, dict[str, Alert]] = {}

    def update(self, rule: AlertRule, samples: Sequence[AlertSample], at_ms: int) -> list[Alert]:
        """Apply one evaluation of ``rule`` at ``at_ms``; return the alerts whose state changed
        (new pending or firing, firing, resolved, dropped), each in its new state."""
        hold_ms = round(rule.for_ * 1000)
        keep_ms = round(rule.keep_firing_for * 1000)
        returned: dict[str, Alert] = {}
        for sample in samples:
            value = float(sample.value)
            labels = alert_labels(rule, sample.labels, value)
            annotations = {k: _expand(t, sample.labels, value) for k, t in rule.annotations.items()}
            alert = Alert(rule.name, labels, annotations, AlertState.PENDING, at_ms,
                          last_evaluated_ms=at_ms, value=value)  # fmt: skip
            if alert.fingerprint in returned:
                raise DuplicateAlertError(rule.name, labels)
            returned[alert.fingerprint] = alert

        known = self._alerts.setdefault(rule.name, {})
        changed: list[Alert] = []
        for key, alert in returned.items():
            previous = known.get(key)
            if previous is not None and previous.state.is_active:
                known[key] = dataclasses.replace(
                    previous, annotations=alert.annotations, value=alert.value,
                    last_evaluated_ms=at_ms, keep_firing_since_ms=None,
                )  # fmt: skip
            else:
                known[key] = alert
                changed.append(alert)

        for key, alert in list(known.items()):
            if key not in returned:
                keep_firing = False
                if alert.state is AlertState.FIRING and keep_ms > 0:
                    since = alert.keep_firing_since_ms
                    since = at_ms if since is None else since
                    keep_firing = at_ms - since < keep_ms
                    alert = dataclasses.replace(alert, keep_firing_since_ms=since)
                    known[key] = alert
                if alert.state is AlertState.PENDING or (
                    alert.resolved_at_ms is not None
                    and at_ms - alert.resolved_at_ms > self.resolved_retention_ms
                ):
                    del known[key]
                if alert.state.is_active and not keep_firing:
                    ended = (
                        AlertState.RESOLVED
                        if alert.state is AlertState.FIRING
                        else (AlertState.INACTIVE)
                    )
                    alert = alert.with_state(ended, at_ms)
                    if key in known:
                        known[key] = alert
                    changed.append(alert)
                if not keep_firing:
                    continue
            alert = known[key]
            if alert.state is AlertState.PENDING and at_ms - alert.active_at_ms >= hold_ms:
                alert = alert.with_state(AlertState.FIRING, at_ms)
                known[key] = alert
                # A new alert firing at once is one change, not two.
                changed = [c for c in changed if c.fingerprint != key]
                changed.append(alert)
        return changed

    def alerts(self, rule: str | None = None) -> list[Alert]:
        """The pending and firing alerts (of ``rule``, or of every rule), by rule then labels."""
        return [a for a in self.tracked(rule) if a.state.is_active]

    def tracked(self, rule: str | None = None) -> list[Alert]:
        """Every alert held: pending, firing and the resolved ones not forgotten yet."""
        names = [rule] if rule is not None else sorted(self._alerts)
        found = [a for name in names for a in self._alerts.get(name, {}).values()]
        return sorted(found, key=lambda a: (a.rule, sorted(a.labels.items())))

    def forget(self, rule: str) -> None:
        """Drop every alert of ``rule`` (a rule that was removed or disabled)."""
        self._alerts.pop(rule, None)

    def export_state(self) -> list[dict[str, Any]]:
        """The tracker's whole state as JSON-ready dicts (see :meth:`restore`)."""
        return [a.to_dict() for a in self.tracked()]

    def restore(self, alerts: Iterable[Alert | Mapping[str, Any]]) -> None:
        """Replace the state with ``alerts`` (records or :meth:`export_state` dicts), so that a
        restarted process keeps each alert's ``active_at`` and does not fire anew."""
        self._alerts = {}
        for item in alerts:
            alert = item if isinstance(item, Alert) else Alert.from_dict(item)
            self._alerts.setdefault(alert.rule, {})[alert.fingerprint] = alert
