"""``perfml anomalies`` and ``perfml score``: what the fleet's scores say, operators' verdicts
on it, and backfills."""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from perfml.anomalies import FleetIncident, Incident, label_coverage, review_queue
from perfml.anomalies.report import Findings
from perfml.anomalies.verdicts import DEFAULT_SILENCE, Verdict
from perfml.cli.state import out, state
from perfml.errors import UsageError
from perfml.timeparse import parse_duration, parse_instant

app = typer.Typer(
    help="The fleet's anomalies: incidents by host, metric and time.", no_args_is_help=True
)

JSON_HELP = "print JSON instead of a table"


class NoSuchIncidentError(UsageError):
    def __init__(self, incident: str, start: datetime | None, end: datetime | None) -> None:
        within = f" between {_when(start)} and {_when(end)}" if start or end else ""
        super().__init__(
            f"no incident {incident!r}{within}; `perfml anomalies list` shows the incidents"
        )


def _window(since: str | None, start: str | None, end: str | None) -> dict[str, Any]:
    if since is not None and start is not None:
        raise UsageError("give --since or --start, not both")
    found: dict[str, Any] = {}
    if since is not None:
        found["start"] = datetime.now(UTC) - parse_duration(since, "--since")
    elif start is not None:
        found["start"] = parse_instant(start, "--start")
    if end is not None:
        found["end"] = parse_instant(end, "--end")
    return found


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def _find(
    ctx: typer.Context, window: dict[str, Any], entity: list[str] | None, metric: list[str] | None
) -> Findings:
    return (
        state(ctx).parts().find_incidents(entities=entity or None, metrics=metric or None, **window)
    )


@app.command("list")
def list_incidents(
    ctx: typer.Context,
    entity: list[str] | None = typer.Option(None, "--entity", "-e", help="only this host (repeat)"),
    metric: list[str] | None = typer.Option(
        None, "--metric", "-m", help="only this metric (repeat)"
    ),
    since: str | None = typer.Option(None, "--since", help="a duration back from now, e.g. 7d"),
    start: str | None = typer.Option(None, "--start", help="first instant (RFC 3339)"),
    end: str | None = typer.Option(None, "--end", help="instant after the last"),
    limit: int = typer.Option(50, "--limit", min=1, help="at most this many, newest first"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Incidents: each host's anomalous points across its metrics, newest first; a fleet-wide
    event is one fleet incident."""
    window = _window(since, start, end)
    findings = _find(ctx, window, entity, metric)
    incidents = sorted(findings.incidents, key=lambda i: i.start_ms, reverse=True)[:limit]
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "fleet_size": findings.fleet_size,
                    "incidents": [_incident_json(i) for i in incidents],
                    "fleet_incidents": [_fleet_json(f) for f in findings.fleets],
                }
            )
        )
        return
    if not findings.incidents:
        out.print(_nothing(ctx, findings))
        return
    for fleet in findings.fleets:
        out.print(
            f"[bold]fleet incident {fleet.id}[/]: {fleet.entities} of {fleet.fleet_size} hosts "
            f"({fleet.fraction:.0%}) anomalous from {_when(fleet.start)} to {_when(fleet.end)} "
            f"on {', '.join(fleet.metrics)}"
        )
    table = Table(
        "incident", "host", "metrics (highest first)", "start", "peak", "end", "score", "fleet"
    )
    for incident in incidents:
        table.add_row(
            incident.id,
            incident.entity,
            ", ".join(f"{p.metric} {p.peak_score:.2f}" for p in incident.metrics),
            _when(incident.start),
            _when(incident.peak),
            _when(incident.end),
            f"{incident.peak_score:.2f}",
            incident.fleet or "",
        )
    out.print(table)
    hidden = len(findings.incidents) - len(incidents)
    more = f"; {hidden} older not shown (--limit)" if hidden else ""
    hosts = len({i.entity for i in findings.incidents})
    out.print(
        f"{len(findings.incidents)} incidents on {hosts} of {findings.fleet_size} hosts{more}"
    )


@app.command("show")
def show_incident(
    ctx: typer.Context,
    incident: str = typer.Argument(..., help="an incident id from `perfml anomalies list`"),
    since: str | None = typer.Option(None, "--since", help="a duration back from now, e.g. 7d"),
    start: str | None = typer.Option(None, "--start", help="first instant (RFC 3339)"),
    end: str | None = typer.Option(None, "--end", help="instant after the last"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """One incident: its host, its metrics ranked by score, start, peak and end, and its
    anomalous points; or a fleet incident and its hosts."""
    window = _window(since, start, end)
    findings = _find(ctx, window, None, None)
    found = findings.get(incident)
    if found is None:
        raise NoSuchIncidentError(incident, window.get("start"), window.get("end"))
    if isinstance(found, FleetIncident):
        members = [i for i in findings.incidents if i.fleet == found.id]
        if as_json:
            out.print_json(
                json.dumps(
                    {**_fleet_json(found), "incidents": [_incident_json(i) for i in members]}
                )
            )
            return
        out.print(
            f"fleet incident {found.id}: {found.entities} of {found.fleet_size} hosts "
            f"({found.fraction:.0%}), {_when(found.start)} to {_when(found.end)}"
        )
        for member in members:
            parts = ", ".join(p.metric for p in member.metrics)
            out.print(
                f"  {member.entity}: {parts}, peak {member.peak_score:.2f} at {_when(member.peak)}"
            )
        return
    points = findings.points
    mine = [
        (m, t, v, s)
        for e, m, t, v, s in zip(
            points.column("entity").to_pylist(),
            points.column("metric").to_pylist(),
            points.column("ts").to_pylist(),
            points.column("value").to_pylist(),
            points.column("score").to_pylist(),
            strict=True,
        )
        if e == found.entity and found.start_ms <= t <= found.end_ms
    ]
    if as_json:
        body = _incident_json(found)
        body["points"] = [
            {"metric": m, "ts": _iso(t), "value": v, "score": s} for m, t, v, s in mine
        ]
        out.print_json(json.dumps(body))
        return
    out.print(
        f"incident {found.id} on [bold]{found.entity}[/]: {_when(found.start)} to "
        f"{_when(found.end)}, peak {found.peak_score:.2f} at {_when(found.peak)}"
    )
    if found.fleet:
        out.print(f"part of fleet incident {found.fleet}")
    table = Table("metric", "model", "peak score", "threshold", "peak at", "anomalous points")
    for part in found.metrics:
        table.add_row(
            part.metric,
            part.model,
            f"{part.peak_score:.3f}",
            f"{part.threshold:.3f}",
            _iso(part.peak_ms),
            str(part.points),
        )
    out.print(table)
    points_table = Table("time", "metric", "value", "score")
    for m, t, v, s in sorted(mine, key=lambda p: (p[1], p[0])):
        points_table.add_row(_iso(t), m, f"{v:.4g}", f"{s:.3f}")
    out.print(points_table)


@app.command("verdict")
def verdict(
    ctx: typer.Context,
    incident: str = typer.Argument(..., help="an incident id from `perfml anomalies list`"),
    kind: str = typer.Argument(
        ..., metavar="true|false|expected", help="a true anomaly, a false alarm, an expected change"
    ),
    by: str | None = typer.Option(None, "--by", help="who says so (default: the OS user)"),
    note: str = typer.Option("", "--note", help="why, for the record"),
    silence: str = typer.Option(
        DEFAULT_SILENCE, "--silence", help="how long an expected change silences the host's metrics"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Give an incident a verdict: a true anomaly becomes a labelled anomaly window of each of
    its metrics (the model's quality, the gate and retraining count it); a false alarm leaves
    its flags false positives; an expected change writes no window and silences AnomalyDetected
    for the host's metrics."""
    workspace = state(ctx).parts()
    found = workspace.find_incidents().get(incident)
    if found is None:
        raise NoSuchIncidentError(incident, None, None)
    if isinstance(found, FleetIncident):
        raise UsageError(
            f"{incident} is a fleet incident: give a verdict on each host's incident "
            f"(`perfml anomalies show {incident}` lists them)"
        )
    made = workspace.verdicts().record(
        found, kind, by=by or getpass.getuser(), note=note, silence_for=silence
    )
    if as_json:
        out.print_json(json.dumps(made.to_json()))
        return
    out.print(_said(made))


def _said(made: Verdict) -> str:
    what = made.kind.value.replace("_", " ")
    said = f"incident {made.incident}: {what} (by {made.by})"
    if made.windows:
        return f"{said}; labelled {', '.join(made.metrics)} of {made.entity} as anomalous"
    if made.silences:
        return f"{said}; AnomalyDetected of {made.entity} silenced ({len(made.silences)} metrics)"
    return f"{said}; no anomaly window: its flags count as false positives"


@app.command("review")
def review(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="a duration back from now, e.g. 7d"),
    start: str | None = typer.Option(None, "--start", help="first instant (RFC 3339)"),
    end: str | None = typer.Option(None, "--end", help="instant after the last"),
    limit: int = typer.Option(20, "--limit", min=1, help="at most this many"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The incidents nobody has labelled, those a verdict would tell most first (their peak
    nearest their threshold)."""
    workspace = state(ctx).parts()
    findings = workspace.find_incidents(**_window(since, start, end))
    queue = review_queue(
        findings.incidents, workspace.verdicts().by_incident(), workspace.store().windows(), limit
    )
    if as_json:
        rows = [_incident_json(item.incident) | {"margin": item.margin} for item in queue]
        out.print_json(json.dumps({"queue": rows}))
        return
    if not queue:
        out.print("nothing to review: every incident has a verdict or a labelled window")
        return
    table = Table("incident", "host", "metrics", "start", "peak score", "over threshold")
    for item in queue:
        top = item.incident
        table.add_row(
            top.id,
            top.entity,
            ", ".join(p.metric for p in top.metrics),
            _when(top.start),
            f"{top.peak_score:.3f}",
            f"{item.margin:.1%}",
        )
    out.print(table)
    out.print("`perfml anomalies verdict INCIDENT true|false|expected` records a verdict")


@app.command("coverage")
def coverage(
    ctx: typer.Context,
    metric: list[str] | None = typer.Option(
        None, "--metric", "-m", help="only this metric (repeat)"
    ),
    group_label: str = typer.Option("group", "--group-label", help="the label naming host groups"),
    min_labels: int = typer.Option(5, "--min-labels", min=1, help="labels enough to judge"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Labels per metric and host group (the series' --group-label label, else all): anomaly
    windows and false alarms, and the groups with too few to judge a model on."""
    workspace = state(ctx).parts()
    rows = label_coverage(
        workspace.store(),
        workspace.verdicts().history(),
        metrics=metric or None,
        group_label=group_label,
        min_labels=min_labels,
    )
    if as_json:
        out.print_json(json.dumps({"coverage": [asdict(r) for r in rows]}))
        return
    if not rows:
        out.print("no series in the store")
        return
    table = Table(
        "metric", "host group", "series", "labelled", "anomaly windows", "false alarms",
        "expected changes", "enough",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r.metric, r.group, str(r.series), str(r.labelled_series), str(r.anomaly_windows),
            str(r.false_alarms), str(r.expected_changes), "yes" if r.enough else "[red]too few[/]",
        )  # fmt: skip
    out.print(table)


def score(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="a model reference, e.g. cpu@production or cpu:3"),
    start: str | None = typer.Option(
        None, "--start", help="first instant; default: just after the version's training data"
    ),
    end: str | None = typer.Option(None, "--end", help="instant after the last; default: all"),
    entity: list[str] | None = typer.Option(None, "--entity", "-e", help="only this host (repeat)"),
) -> None:
    """Backfill: score a window of the store with a version, each series from its own state,
    into the score log that `perfml anomalies` reads."""
    from perfml.anomalies import backfill

    workspace = state(ctx).parts()
    result = backfill(
        workspace.registry(background_delivery=False),
        workspace.store(),
        workspace.scores(),
        model,
        start=None if start is None else parse_instant(start, "--start"),
        end=None if end is None else parse_instant(end, "--end"),
        entities=entity or None,
    )
    if not result.points:
        out.print(f"{model}: no points of {result.metric} to score in that window")
        return
    out.print(
        f"scored {result.points:,} points of {result.metric} on {result.entities} hosts with "
        f"{result.model}:{result.version} (threshold {result.threshold:.3f}): "
        f"{result.anomalous:,} anomalous; `perfml anomalies list` groups them"
    )


def _nothing(ctx: typer.Context, findings: Findings) -> str:
    if not state(ctx).parts().scores().models():
        return (
            "no scores yet: `perfml up` scores the served models' metrics as they arrive; "
            "`perfml score MODEL` backfills a window"
        )
    return f"no incidents: {findings.fleet_size} hosts scored, none over its threshold"


def _iso(ms: int) -> str:
    return (datetime.fromtimestamp(ms / 1000, UTC)).isoformat().replace("+00:00", "Z")


def _incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "entity": incident.entity,
        "start": _iso(incident.start_ms),
        "peak": _iso(incident.peak_ms),
        "end": _iso(incident.end_ms),
        "peak_score": incident.peak_score,
        "points": incident.points,
        "fleet": incident.fleet,
        "metrics": [
            {
                "metric": p.metric,
                "model": p.model,
                "peak_score": p.peak_score,
                "peak": _iso(p.peak_ms),
                "points": p.points,
                "threshold": p.threshold,
            }
            for p in incident.metrics
        ],
    }


def _fleet_json(fleet: FleetIncident) -> dict[str, Any]:
    return {
        "id": fleet.id,
        "start": _iso(fleet.start_ms),
        "end": _iso(fleet.end_ms),
        "entities": fleet.entities,
        "fleet_size": fleet.fleet_size,
        "fraction": fleet.fraction,
        "metrics": list(fleet.metrics),
        "peak_score": fleet.peak_score,
    }
