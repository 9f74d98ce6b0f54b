"""Verdicts given from the dashboard and from Alertmanager, recorded in the verdict log.

Two ways in, one way down (:meth:`perfml.anomalies.VerdictLog.record`):

- the Anomalies page's incidents table: ``POST /api/incidents/{id}/verdict`` with
  ``{"verdict": "true_anomaly"|"false_alarm"|"expected_change", "note": ..., "silence": ...}``
  (:func:`verdict_on`); the operator is the ``X-Forwarded-User`` header of an authenticating
  proxy, else ``by`` in the body, else ``dashboard``;
- Alertmanager's webhook (payload version 4, :class:`~perfml.alerting.notify.WebhookPayload`):
  ``POST /api/verdicts/alertmanager`` (:func:`verdicts_from_alertmanager`). It lives on the
  dashboard's app, not the inference server's: the dashboard already reads the score log and
  the verdict log, and the inference server stays a data plane. Each ``AnomalyDetected`` alert
  carrying a verdict — its annotation or label ``verdict``, else the receiver named
  ``…verdict-<verdict>`` (a receiver per verdict an acknowledging route sends to) — is recorded
  for the incident of its ``entity`` and ``metric`` its ``startsAt`` falls in (or is nearest,
  within a week). Who: the annotation ``by``, else ``alertmanager:<receiver>``. An alert
  without a verdict, of another rule or without an incident is skipped with the reason; an
  incident that already has one is skipped too, so a redelivered payload changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from perfml.alerting.notify import WebhookAlert, WebhookPayload
from perfml.anomalies import (
    Incident,
    ScoreLog,
    Verdict,
    VerdictKind,
    VerdictLog,
    find_incidents,
    incident_at,
)
from perfml.anomalies.verdicts import DEFAULT_SILENCE, IncidentNotFoundError
from perfml.dashboard.data import DashboardSources
from perfml.dashboard.errors import DashboardError
from perfml.errors import PerfmlError
from perfml.timeparse import parse_instant, to_epoch_ms

ALERT = "AnomalyDetected"
DEFAULT_OPERATOR = "dashboard"
LOOK_BACK = timedelta(days=7)
"""How long before an alert's ``startsAt`` its incident may have begun."""


class VerdictsUnavailableError(DashboardError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__("this dashboard has no score log or verdict log: verdicts cannot be given")


def _parts(sources: DashboardSources) -> tuple[VerdictLog, ScoreLog]:
    if sources.verdicts is None or sources.scores is None:
        raise VerdictsUnavailableError()
    return sources.verdicts, sources.scores


def _incidents(sources: DashboardSources, scores: ScoreLog, **window: Any) -> list[Incident]:
    options = sources.incidents
    return find_incidents(
        scores,
        gap_ms=options.gap_ms,
        fleet_fraction=options.fleet_fraction,
        fleet_min_entities=options.fleet_min_entities,
        **window,
    ).incidents


def verdict_on(
    sources: DashboardSources,
    incident_id: str,
    verdict: str,
    *,
    by: str | None = None,
    note: str = "",
    silence: str = DEFAULT_SILENCE,
) -> Verdict:
    """Record ``verdict`` on the host incident ``incident_id`` of the score log."""
    log, scores = _parts(sources)
    found = next((i for i in _incidents(sources, scores) if i.id == incident_id), None)
    if found is None:
        raise IncidentNotFoundError(repr(incident_id))
    return log.record(found, verdict, by=by or DEFAULT_OPERATOR, note=note, silence_for=silence)


@dataclass
class WebhookOutcome:
    """What became of each alert of a webhook payload (by fingerprint)."""

    recorded: list[Verdict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "recorded": [v.to_json() for v in self.recorded],
            "skipped": [{"fingerprint": f, "reason": r} for f, r in self.skipped.items()],
        }


def alert_verdict(payload: WebhookPayload, alert: WebhookAlert) -> str | None:
    """The verdict an alert carries: its annotation or label ``verdict``, the payload's
    common ones, else the receiver's name after ``verdict-``."""
    for found in (alert.annotations, alert.labels, payload.common_annotations):
        if found.get("verdict"):
            return found["verdict"]
    _, marker, rest = payload.receiver.rpartition("verdict-")
    return rest if marker and rest else None


def verdicts_from_alertmanager(
    sources: DashboardSources, payload: WebhookPayload
) -> WebhookOutcome:
    """Record the verdicts of ``payload``'s alerts (see the module)."""
    log, scores = _parts(sources)
    outcome = WebhookOutcome()
    for alert in payload.alerts:
        key = alert.fingerprint
        if alert.labels.get("alertname") != ALERT:
            outcome.skipped[key] = f"not an {ALERT} alert"
            continue
        said = alert_verdict(payload, alert)
        entity = alert.labels.get("entity")
        if said is None or not entity:
            outcome.skipped[key] = "no verdict" if said is None else "no entity label"
            continue
        try:
            kind = VerdictKind.parse(said)
            at = parse_instant(alert.starts_at, "startsAt")
        except PerfmlError as exc:
            outcome.skipped[key] = str(exc)
            continue
        incidents = _incidents(sources, scores, start=at - LOOK_BACK, end=at + LOOK_BACK)
        found = incident_at(incidents, entity, alert.labels.get("metric"), to_epoch_ms(at))
        if found is None:
            outcome.skipped[key] = f"no incident of {entity} near {alert.starts_at}"
            continue
        taken = log.get(found.id)
        if taken is not None:
            outcome.skipped[key] = f"incident {found.id} already has a verdict: {taken.kind}"
            continue
        by = alert.annotations.get("by") or f"alertmanager:{payload.receiver}"
        note = alert.annotations.get("note", "")
        outcome.recorded.append(log.record(found, kind, by=by, note=note))
    return outcome
