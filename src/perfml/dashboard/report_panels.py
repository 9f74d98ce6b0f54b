"""The report's panels that no dashboard page has, built from records as panel data of the
shape of :func:`perfml.dashboard.data.panel_data`, so ``dashboard.js`` draws them as it draws
the dashboard's: the drift chart and table over windows, the aliases' and the alerts'
timelines, and the summary's tables.

>>> from perfml.controller.decisions import Action, Decision
>>> figures = {"method": "kl", "threshold": 0.1, "drift": {"load": 0.3}}
>>> seen = Decision.new("cpu", "2026-04", Action.PROMOTED, at_ms=0, figures=figures)
>>> chart, table = drift_panels([], [seen], "kl", 0.1)
>>> chart["series"][0]["x"], chart["series"][0]["v"], chart["threshold"]["value"]
(['2026-04'], [0.3], 0.1)
>>> table["rows"], table["flagged"]
([['load', '0.3000 !']], [[0, 1]])
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from perfml.dashboard.data import DashboardSources, Json, TimeRange
from perfml.dashboard.panels import UNITS
from perfml.dashboard.records import format_time

if TYPE_CHECKING:
    from perfml.alerting.store import HistoryEntry
    from perfml.controller.decisions import Decision
    from perfml.drift.report import DriftRecord
    from perfml.registry.records import AliasMove

MAX_ALERT_CHANGES: Final = 10_000
"""How many alert state changes the alerts' timeline reads at most (the newest)."""
ALERT_COLORS: Final[Mapping[str, str]] = {
    "pending": "#e0b400",
    "firing": "#c4162a",
    "resolved": "#37872d",
    "inactive": "#8e8e8e",
}
"""The colour of each alert state on the alerts' timeline."""
VERSION_COLORS: Final = ("#3274d9", "#37872d", "#8f3bb8", "#e0b400", "#fa6400", "#1f9e89")
"""The colours of the versions on the aliases' timeline, in turn."""
PROMOTING: Final = frozenset({"promote", "rollback"})
"""Audit log actions that put a version in service."""


def report_panel(
    panel_id: str,
    title: str,
    kind: str,
    *,
    unit: str = "short",
    note: str = "",
    width: int = 24,
    threshold: float | None = None,
    message: str = "No data for this report.",
    **content: Any,
) -> Json:
    """A panel answer of the shape of :func:`~perfml.dashboard.data.panel_data`, for data
    that is not a dashboard panel's; ``content`` holds the kind's keys (``series``, ``rows``,
    ``lanes``...)."""
    tickformat, suffix = UNITS[unit]
    answer: Json = {
        "id": panel_id,
        "title": title,
        "kind": kind,
        "unit": unit,
        "format": {"tickformat": tickformat, "suffix": suffix},
        "note": note,
        "width": width,
        "threshold": None
        if threshold is None
        else {"value": threshold, "label": f"threshold {threshold:g}"},
        "error": None,
        "message": None,
        **content,
    }
    has_data = any(any(v is not None for v in s["v"]) for s in answer.get("series", ())) or bool(
        answer.get("rows") or answer.get("lanes")
    )
    answer["empty"] = not has_data
    if not has_data:
        answer["message"] = message
    return answer


def drift_method(expr: str) -> str:
    found = re.search(r'method="([a-z_]+)"', expr)
    return found.group(1) if found else "kl"


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


class _Cell(NamedTuple):
    value: float | None
    threshold: float | None


def drift_panels(
    records: Iterable[DriftRecord],
    decisions: Iterable[Decision],
    method: str,
    default_threshold: float | None,
) -> list[Json]:
    """The drift chart (one trace per feature over the windows, the threshold dashed) and
    table (features × windows, cells over the threshold flagged) of the fleet-wide
    ``method`` values in ``records``; without any, of the drift figures of ``decisions``."""
    cells: dict[tuple[str, str], _Cell] = {}
    starts: dict[str, int] = {}
    for record in records:
        if record.method != method or record.entity is not None:
            continue
        cells[(record.feature, record.window)] = _Cell(_number(record.value), record.threshold)
        starts[record.window] = round(record.start.timestamp() * 1000)
    source = "the drift report"
    if not cells:
        source = "the controller's decisions"
        several = len({d.model for d in decisions}) > 1
        for decision in sorted(decisions, key=lambda d: d.at_ms):
            figures = decision.figures
            if figures.get("method", method) != method or not figures.get("drift"):
                continue
            limit = figures.get("threshold", default_threshold)
            for feature, value in figures["drift"].items():
                name = f"{decision.model} {feature}" if several else feature
                cells[(name, decision.window)] = _Cell(_number(value), limit)
            starts.setdefault(decision.window, decision.at_ms)
    windows = sorted(starts, key=lambda w: (starts[w], w))
    features = sorted({feature for feature, _ in cells})
    threshold = next(
        (c.threshold for c in cells.values() if c.threshold is not None), default_threshold
    )
    series = []
    rows: list[list[Any]] = []
    flagged: list[list[int]] = []
    for row, feature in enumerate(features):
        found = [cells.get((feature, w), _Cell(None, None)) for w in windows]
        series.append(
            {
                "name": feature,
                "labels": {"feature": feature, "method": method},
                "x": windows,
                "t": [starts[w] for w in windows],
                "v": [c.value for c in found],
                "value": next((c.value for c in reversed(found) if c.value is not None), None),
            }
        )
        texts: list[Any] = [feature]
        for column, cell in enumerate(found, start=1):
            over = cell.value is not None and cell.threshold is not None
            over = over and cell.value > cell.threshold  # type: ignore[operator]
            if over:
                flagged.append([row, column])
            texts.append("" if cell.value is None else f"{cell.value:.4f}{' !' if over else ''}")
        rows.append(texts)
    name = method.upper() if method in ("kl", "psi", "js") else method
    chart = report_panel(
        "drift-chart",
        f"Feature drift ({name}) per window",
        "timeseries",
        threshold=threshold,
        note=f"Each feature's {method} against the reference window, from {source}; over the "
        "dashed threshold line a feature has drifted.",
        message="No drift was measured for this report.",
        series=series,
        xaxis={"type": "category"},
    )
    table = report_panel(
        "drift-table",
        f"Feature drift ({name}) per window, flagged over the threshold",
        "table",
        note="A cell marked ! is over its threshold.",
        message="No drift was measured for this report.",
        columns=["feature", *windows],
        rows=rows,
        flagged=flagged,
    )
    return [chart, table]


def registry_moves(sources: DashboardSources) -> list[AliasMove]:
    if sources.registry is None:
        return []
    registry = sources.registry
    moves = [move for model in registry.models() for move in registry.history(model.name)]
    moves.sort(key=lambda m: (m.at, m.model, m.revision))
    return moves


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def promotion_markers(moves: Sequence[AliasMove], window: TimeRange) -> list[Json]:
    return [
        {"at": _ms(m.at), "label": f"{m.model} v{m.to_version} → {m.alias}"}
        for m in moves
        if m.action in PROMOTING and window.start_ms <= _ms(m.at) <= window.end_ms
    ]


def alias_timeline(moves: Sequence[AliasMove], window: TimeRange, markers: list[Json]) -> Json:
    """One lane per alias of each model: the version it held from each move to the next."""
    by_lane: dict[str, list[AliasMove]] = {}
    for move in moves:
        by_lane.setdefault(f"{move.model}@{move.alias}", []).append(move)
    lanes = []
    versions: set[int] = set()
    for name, held in by_lane.items():
        segments = []
        for this, following in zip(held, (*held[1:], None), strict=True):
            start = max(_ms(this.at), window.start_ms)
            end = window.end_ms if following is None else min(_ms(following.at), window.end_ms)
            if this.to_version is None or end < start:
                continue
            versions.add(this.to_version)
            why = f"{this.action} by {this.actor}" + (f": {this.reason}" if this.reason else "")
            state = f"v{this.to_version}"
            segments.append({"state": state, "reason": why, "start": start, "end": end})
        if segments:
            lanes.append({"name": name, "segments": segments})
    states = [f"v{v}" for v in sorted(versions)]
    colors = {s: VERSION_COLORS[i % len(VERSION_COLORS)] for i, s in enumerate(states)}
    return report_panel(
        "models-alias-timeline",
        "Aliases over time",
        "timeline",
        note="The version each alias held; a vertical line marks each promotion.",
        message="No alias was set in this time range.",
        lanes=lanes,
        states=states,
        colors=colors,
        markers=markers,
    )


def _labels_text(labels: Mapping[str, str]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    return f" {{{shown}}}" if shown else ""


def alert_timeline(sources: DashboardSources, window: TimeRange) -> Json:
    """One lane per alert (a rule and its labels): its state from each change to the next."""
    changes: list[HistoryEntry] = []
    if sources.alerts is not None:
        changes = [
            c
            for c in sources.alerts.history(since_ms=window.start_ms, limit=MAX_ALERT_CHANGES)
            if c.at_ms <= window.end_ms
        ]
    by_alert: dict[tuple[str, str], list[HistoryEntry]] = {}
    for change in sorted(changes, key=lambda c: (c.at_ms, c.rule, c.fingerprint)):
        by_alert.setdefault((change.rule, change.fingerprint), []).append(change)
    lanes = []
    for (rule, _), found in by_alert.items():
        segments: list[Json] = []
        first = found[0]
        if first.from_state is not None and first.at_ms > window.start_ms:
            # It changed from a state it entered before the report's range.
            segments.append(
                {"state": first.from_state, "reason": None, "start": window.start_ms,
                 "end": first.at_ms}
            )  # fmt: skip
        for this, following in zip(found, (*found[1:], None), strict=True):
            end = window.end_ms if following is None else following.at_ms
            segments.append(
                {"state": this.to_state, "reason": f"value {this.value:g}",
                 "start": this.at_ms, "end": max(end, this.at_ms)}
            )  # fmt: skip
        lanes.append({"name": rule + _labels_text(first.labels), "segments": segments})
    message = (
        "The alert store is not connected."
        if sources.alerts is None
        else "No alert changed state in this time range."
    )
    return report_panel(
        "alerts-timeline",
        "Alerts over time",
        "timeline",
        note="Pending: the condition holds, not yet for long enough; firing: notified; "
        "resolved: the condition went away.",
        message=message,
        lanes=lanes,
        states=list(ALERT_COLORS),
        colors=dict(ALERT_COLORS),
    )


# -- the summary -----------------------------------------------------------------------------


def _drift_text(figures: Mapping[str, Any]) -> str:
    drift = figures.get("drift") or {}
    return ", ".join(
        f"{feature} {value:.3g}" if isinstance(value, int | float) else f"{feature} -"
        for feature, value in sorted(drift.items())
    )


def decisions_table(decisions: Sequence[Decision]) -> Json:
    """The controller's decisions, oldest first, with the drift they saw and their reasons."""
    columns = ["decided", "model", "window", "action", "production", "candidate", "drift", "why"]
    rows = [
        [
            format_time(d.at_ms / 1000),
            d.model,
            d.window,
            d.action.value,
            d.production or "",
            d.candidate or "",
            _drift_text(d.figures),
            "; ".join(d.reasons),
        ]
        for d in sorted(decisions, key=lambda d: (d.at_ms, d.model, d.window))
    ]
    return report_panel(
        "summary-decisions",
        "Controller decisions",
        "table",
        note="One decision per model and window: the drift it saw, what it did and why.",
        message="The controller made no decision in this report.",
        columns=columns,
        rows=rows,
    )


def promotions_table(moves: Sequence[AliasMove]) -> Json:
    """Every promotion (and rollback) in the registry's audit log, oldest first."""
    columns = ["at", "model", "alias", "action", "from", "to", "actor", "reason"]
    rows = [
        [
            format_time(m.at.timestamp()),
            m.model,
            m.alias,
            m.action,
            "" if m.from_version is None else f"v{m.from_version}",
            f"v{m.to_version}",
            m.actor,
            m.reason,
        ]
        for m in moves
        if m.action in PROMOTING
    ]
    return report_panel(
        "summary-promotions",
        "Promotions",
        "table",
        message="No version was promoted yet.",
        columns=columns,
        rows=rows,
    )


def summary_facts(
    sources: DashboardSources,
    window: TimeRange,
    moves: Sequence[AliasMove],
    decisions: Sequence[Decision],
    jobs: Json,
    alerts: Json,
) -> Json:
    """The report's key figures, one per row."""
    rows: list[list[Any]] = [
        [
            "time range",
            f"{format_time(window.start_ms / 1000)} → {format_time(window.end_ms / 1000)}",
        ]
    ]
    if sources.registry is not None:
        for model in sources.registry.models():
            count = len(sources.registry.versions(model.name))
            held = ", ".join(f"{a} v{v}" for a, v in sorted(model.aliases.items()))
            rows.append([f"model {model.name}", f"{count} version(s); {held or 'no alias'}"])
    rows.append(["promotions", str(sum(1 for m in moves if m.action in PROMOTING))])
    actions: dict[str, int] = {}
    for d in decisions:
        action = d.action.value
        actions[action] = actions.get(action, 0) + 1
    shown = ", ".join(f"{a} {n}" for a, n in sorted(actions.items()))
    rows.append(["controller decisions", f"{len(decisions)}" + (f" ({shown})" if shown else "")])
    lanes = jobs.get("lanes") or []
    failed = sum(1 for lane in lanes if lane.get("state") == "Failed")
    rows.append(["training jobs", f"{len(lanes)} ({failed} failed)"])
    fired = sum(
        1
        for lane in alerts.get("lanes") or []
        if any(s["state"] == "firing" for s in lane["segments"])
    )
    rows.append(["alerts", f"{len(alerts.get('lanes') or [])} ({fired} fired)"])
    return report_panel(
        "summary-facts", "At a glance", "table", width=24, columns=["what", "value"], rows=rows
    )
