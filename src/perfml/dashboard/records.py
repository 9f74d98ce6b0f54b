"""Panels read from perfml's own records: the jobs' timeline from the run history, the
registry's versions, aliases and audit log, the alerts, and the controller's decisions.

Each reader is registered in :data:`perfml.dashboard.data.READERS` for its
:class:`~perfml.dashboard.panels.Source` and answers as :mod:`perfml.dashboard.data` says:
a timeline's ``lanes`` (one per job: ``name``, ``run``, ``task``, ``segments`` of ``state``,
``reason``, ``start``, ``end`` in Unix ms), a table's ``columns`` and ``rows`` (times as
``YYYY-MM-DD HH:MM:SSZ``), newest first.

>>> format_time(0)
'1970-01-01 00:00:00Z'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from perfml.controller.decisions import Decision
from perfml.dashboard.data import (
    READERS,
    DashboardSources,
    Json,
    TimeRange,
    finite_or_none,
)
from perfml.dashboard.panels import STATE_COLORS, Panel, Source
from perfml.pipelines.job_metrics import job_name
from perfml.pipelines.states import JobRecord, JobState, RunRecord

JOB_STATES: Final = tuple(state.value for state in JobState)
"""The states a job's timeline shows, in the order of its legend."""


def format_time(epoch_seconds: float) -> str:
    """A Unix time as UTC, to the second."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _format_moment(moment: datetime | None) -> str:
    return "" if moment is None else format_time(moment.timestamp())


def _labels_text(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


# -- the jobs' timeline ------------------------------------------------------------------


def job_segments(job: JobRecord, window: TimeRange) -> list[Json]:
    """The spans of ``job``'s states within ``window``: each transition until the next; the
    last (a terminal state stays, as a finished pod keeps its phase) until the window's end."""
    segments: list[Json] = []
    transitions = job.transitions
    for this, following in zip(transitions, (*transitions[1:], None), strict=True):
        start = round(this.at * 1000)
        end = window.end_ms if following is None else round(following.at * 1000)
        start, end = max(start, window.start_ms), min(end, window.end_ms)
        if end < start or (end == start and following is not None):
            continue
        reason = None if this.reason is None else this.reason.value
        if segments and segments[-1]["state"] == this.state.value and segments[-1]["end"] == start:
            segments[-1]["end"] = end  # a new reason in the same state: one span
            continue
        segments.append({"state": this.state.value, "reason": reason, "start": start, "end": end})
    return segments


def _in_window(job: JobRecord, window: TimeRange) -> bool:
    if not job.transitions:
        return False
    first, last = job.transitions[0].at * 1000, job.transitions[-1].at * 1000
    if first > window.end_ms:
        return False
    return job.state.is_active or last >= window.start_ms


def job_lanes(runs: Iterable[RunRecord], window: TimeRange) -> list[Json]:
    """One lane per job active or ended within ``window``, the earliest started first."""
    lanes = []
    for run in runs:
        for job in run.jobs.values():
            if not _in_window(job, window):
                continue
            segments = job_segments(job, window)
            if segments:
                lanes.append(
                    {
                        "name": job_name(run, job.task),
                        "run": run.run_id,
                        "task": job.task,
                        "state": job.state.value,
                        "segments": segments,
                        "first": job.transitions[0].at,
                    }
                )
    lanes.sort(key=lambda lane: (lane["first"], lane["name"]))
    for lane in lanes:
        del lane["first"]
    return lanes


@READERS.register(Source.RUN_HISTORY)
def read_run_history(panel: Panel, sources: DashboardSources, window: TimeRange) -> Json:
    if sources.history is None:
        message: str | None = "The run history is not connected."
        lanes: list[Json] = []
    else:
        lanes = job_lanes(sources.history.list_runs(sources.max_runs), window)
        message = None if lanes else "No pipeline job ran in this time range yet."
    colors = {state: STATE_COLORS[state] for state in JOB_STATES}
    return {"lanes": lanes, "states": list(JOB_STATES), "colors": colors, "message": message}


# -- the registry ------------------------------------------------------------------------

_NO_REGISTRY: Final = "The model registry is not connected."


def _metrics_text(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


@READERS.register(Source.MODEL_VERSIONS)
def read_versions(panel: Panel, sources: DashboardSources, window: TimeRange) -> Json:
    columns = ["model", "version", "aliases", "detector", "created", "metrics", "digest", "run"]
    if sources.registry is None:
        return {"columns": columns, "rows": [], "message": _NO_REGISTRY}
    rows = []
    for model in sources.registry.models():
        for v in sources.registry.versions(model.name):
            rows.append(
                [
                    v.model,
                    v.version,
                    ", ".join(v.aliases),
                    v.detector,
                    _format_moment(v.created_at),
                    _metrics_text(v.metrics),
                    v.digest[:12],
                    v.pipeline_run or "",
                ]
            )
    rows.sort(key=lambda row: (row[4], row[0], row[1]), reverse=True)
    message = None if rows else "No model version is registered yet."
    return {"columns": columns, "rows": rows[: sources.max_rows], "message": message}


@READERS.register(Source.MODEL_ALIASES)
def read_aliases(panel: Panel, sources: DashboardSources, window: TimeRange) -> Json:
    columns = ["model", "alias", "version", "latest version"]
    if sources.registry is None:
        return {"columns": columns, "rows": [], "message": _NO_REGISTRY}
    rows = [
        [model.name, alias, version, model.latest_version]
        for model in sources.registry.models()
        for alias, version in sorted(model.aliases.items())
    ]
    message = None if rows else "No alias is set yet (perfml models promote NAME:VERSION)."
    return {"columns": columns, "rows": rows, "message": message}


@READERS.register(Source.AUDIT_LOG)
def read_audit_log(panel: Panel, sources: DashboardSources, window: TimeRange) -> Json:
    columns = ["at", "model", "alias", "action", "from", "to", "actor", "reason", "forced"]
    if sources.registry is None:
        return {"columns": columns, "rows": [], "message": _NO_REGISTRY}
    moves = [
        move for model in sources.registry.models() for move in sources.registry.history(model.name)
    ]
    moves.sort(key=lambda m: (m.at, m.model, m.revision), reverse=True)
    rows = [
        [
            _format_moment(m.at),
            m.model,
            m.alias,
            m.action,
            m.from_version,
            m.to_version,
            m.actor,
            m.reason,
            "yes" if m.forced else "",
        ]
        for m in moves[: sources.max_rows]
    ]
    message = None if rows else "No alias has moved yet."
    return {"columns": columns, "rows": rows, "message": message}


# -- alerts ----------------------------------------------------------------------------

_NO_ALERTS: Final = "The alert store is not connected."


@READERS.register(Source.ACTIVE_ALERTS)
def read_active_alerts(panel: Panel, sources: DashboardSources, window: TimeRange) -> Json:
    columns = ["since", "alert", "state", "labels", "value", "summary"]
    if sources.alerts is None:
        return {"columns": columns, "rows": [], "message": _NO_ALERTS}
    alerts = [a for a in sources.alerts.current_alerts() if a.state.is_active]
    alerts.sort(key=lambda a: (a.active_at_ms, a.rule), reverse=True)
    rows = [
        [
            format_time(a.active_at_ms / 1000),
            a.rule,
            a.state.value,
            _labels_text({k: v for k, v in a.labels.items() if k != "alertname"}),
            finite_or_none(a.value),
            a.annotations.get("summary", ""),
        ]
        for a in alerts[: sources.max_rows]
    ]
    return {"columns": columns, "rows": rows, "message": None if rows else "No alert is active."}


@READERS.register(Source.ALERT_HISTORY)
def read_alert_history(panel: Panel, sources: DashboardSources, window: TimeRange) -> Json:
    columns = ["at", "alert", "from", "to", "labels", "value"]
    if sources.alerts is None:
        return {"columns": columns, "rows": [], "message": _NO_ALERTS}
    changes = [
        c
        for c in sources.alerts.history(since_ms=window.start_ms, limit=sources.max_rows)
        if c.at_ms <= window.end_ms
    ]
    changes.sort(key=lambda c: (c.at_ms, c.rule), reverse=True)
    rows = [
        [
            format_time(c.at_ms / 1000),
            c.rule,
            c.from_state or "",
            c.to_state,
            _labels_text({k: v for k, v in c.labels.items() if k != "alertname"}),
            finite_or_none(c.value),
        ]
        for c in changes
    ]
    message = None if rows else "No alert changed state in this time range."
    return {"columns": columns, "rows": rows, "message": message}


# -- the controller's decisions --------------------------------------------------------------

DECISION_COLUMNS: Final = (
    "decided",
    "model",
    "window",
    "decision",
    "drift measure",
    "drift",
    "version trained",
    "gate",
    "why",
)


def _worst_drift(figures: Mapping[str, Any]) -> str:
    """The highest drift of the features, and which: ``0.312 (memory_util)``."""
    measured = {
        feature: value
        for feature, value in (figures.get("drift") or {}).items()
        if isinstance(value, int | float)
    }
    if not measured:
        return ""
    feature = max(measured, key=lambda f: (measured[f], f))
    return f"{measured[feature]:.4g} ({feature})"


def _measure(figures: Mapping[str, Any]) -> str:
    method = figures.get("method")
    if not method:
        return ""
    threshold = figures.get("threshold")
    limit = f", threshold {threshold:g}" if isinstance(threshold, int | float) else ""
    return f"{method}{limit}"


def gate_verdict(figures: Mapping[str, Any]) -> str:
    """The gate's verdict of a decision's candidate: ``passed``, ``refused: why``, or ``""``
    when no candidate was trained.

    >>> gate_verdict({"gate": {"passed": False, "reason": "f1 0.7 < 0.8"}})
    'refused: f1 0.7 < 0.8'
    """
    gate = figures.get("gate")
    if not isinstance(gate, Mapping):
        return ""
    if gate.get("passed"):
        return "passed"
    reason = gate.get("reason") or ""
    return f"refused: {reason}" if reason else "refused"


def decision_rows(found: Iterable[Decision]) -> list[list[str]]:
    """The rows of ``found``, newest first (by the controller's clock)."""
    ordered = sorted(found, key=lambda d: (d.at_ms, d.recorded_at, d.model), reverse=True)
    return [
        [
            format_time(d.at_ms / 1000),
            d.model,
            d.window,
            d.action.value,
            _measure(d.figures),
            _worst_drift(d.figures),
            d.candidate or "",
            gate_verdict(d.figures),
            "; ".join(d.reasons),
        ]
        for d in ordered
    ]


@READERS.register(Source.CONTROLLER_DECISIONS)
def read_decisions(panel: Panel, sources: DashboardSources, window: TimeRange) -> Json:
    columns = list(DECISION_COLUMNS)
    if sources.decisions is None:
        return {"columns": columns, "rows": [], "message": "The decision log is not connected."}
    rows = decision_rows(sources.decisions.history(limit=sources.max_rows))
    message = None if rows else "The controller has made no decision yet (perfml controller run)."
    return {"columns": columns, "rows": rows, "message": message}
