"""``perfml alerts``: current alerts, their history, silences and the effective rules."""

from __future__ import annotations

import getpass
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from rich.table import Table

from perfml.alerting.alerts import AlertState, format_labels
from perfml.alerting.store import AlertStore, finite_or_none
from perfml.alerting.templates import go_float
from perfml.cli.state import out, state
from perfml.errors import UsageError
from perfml.timeparse import format_duration, parse_duration

app = typer.Typer(help="Alerts: current, history, silences, rules.", no_args_is_help=True)

JSON_HELP = "print JSON instead of a table"


class NoMatchersError(UsageError):
    def __init__(self) -> None:
        super().__init__("give at least one MATCHER (e.g. alertname=JobFailed), or --list")


def open_store(ctx: typer.Context) -> AlertStore:
    """The alert store in the workspace's metadata database."""
    return state(ctx).parts().alerts()


def _now_ms() -> int:
    return round(time.time() * 1000)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M:%S}"


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def _labels(labels: dict[str, str]) -> str:
    return format_labels({k: v for k, v in labels.items() if k != "alertname"})


@app.command("list")
def list_alerts(
    ctx: typer.Context,
    only: AlertState | None = typer.Option(None, "--state", help="firing or pending only"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The current alerts (as the rule engine last stored them), firing first."""
    found = [a for a in open_store(ctx).current_alerts() if a.state.is_active]
    if only is not None:
        found = [a for a in found if a.state is only]
    found.sort(key=lambda a: (a.state is not AlertState.FIRING, a.rule, a.active_at_ms))
    if as_json:
        _emit([{**a.to_dict(), "value": finite_or_none(a.value)} for a in found])
        return
    table = Table("alert", "state", "labels", "active since", "value", "summary")
    for a in found:
        table.add_row(a.rule, a.state.value, _labels(dict(a.labels)), _when(a.active_at_ms),
                      go_float(a.value), a.annotations.get("summary", ""))  # fmt: skip
    out.print(table)


@app.command("history")
def history(
    ctx: typer.Context,
    since: str = typer.Option("1d", "--since", help="how far back, e.g. 30m, 1d, 2w"),
    rule: str | None = typer.Option(None, "--rule", help="only this rule"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """State changes of alerts, oldest first."""
    since_ms = _now_ms() - round(parse_duration(since, "--since").total_seconds() * 1000)
    entries = open_store(ctx).history(since_ms=since_ms, rule=rule)
    if as_json:
        _emit([{"rule": e.rule, "fingerprint": e.fingerprint, "labels": e.labels,
                "from": e.from_state, "to": e.to_state, "at": _when(e.at_ms), "at_ms": e.at_ms,
                "value": finite_or_none(e.value)} for e in entries])  # fmt: skip
        return
    table = Table("at", "alert", "labels", "from", "to", "value")
    for e in entries:
        table.add_row(_when(e.at_ms), e.rule, _labels(e.labels), e.from_state or "-",
                      e.to_state, go_float(e.value))  # fmt: skip
    out.print(table)


@app.command("silence")
def silence(
    ctx: typer.Context,
    matchers: list[str] | None = typer.Argument(
        None, metavar="MATCHER...", help="name=value, name!=value, name=~regex, name!~regex"
    ),
    duration: str = typer.Option("2h", "--for", help="how long, e.g. 30m, 2h, 1d"),
    comment: str = typer.Option("", "--comment", help="why"),
    author: str | None = typer.Option(None, "--author", help="who (default: the user)"),
    show: bool = typer.Option(False, "--list", help="list the silences instead"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Mute notifications of the alerts matching every MATCHER for a while; prints its id."""
    store = open_store(ctx)
    now = _now_ms()
    if show:
        found = store.silences()
        rows: list[dict[str, Any]] = [{"id": s.id, "matchers": [str(m) for m in s.matchers],
                 "starts_at": _when(s.starts_at_ms), "ends_at": _when(s.ends_at_ms),
                 "active": s.is_active(now), "created_by": s.created_by, "comment": s.comment}
                for s in found]  # fmt: skip
        if as_json:
            _emit(rows)
            return
        table = Table("id", "matchers", "starts", "ends", "active", "by", "comment")
        for r in rows:
            active = "yes" if r["active"] else "no"
            table.add_row(r["id"], " ".join(r["matchers"]), r["starts_at"], r["ends_at"],
                          active, r["created_by"], r["comment"])  # fmt: skip
        out.print(table)
        return
    if not matchers:
        raise NoMatchersError()
    length = round(parse_duration(duration, "--for").total_seconds() * 1000)
    made = store.add_silence(matchers, now, now + length, author or getpass.getuser(), comment)
    typer.echo(made.id)


@app.command("unsilence")
def unsilence(
    ctx: typer.Context, silence_id: str = typer.Argument(..., metavar="ID", help="silence id")
) -> None:
    """End a silence now."""
    open_store(ctx).expire_silence(silence_id, _now_ms())
    out.print(f"silence {silence_id} expired", highlight=False)


@app.command("rules")
def rules(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)
) -> None:
    """The effective alert rules (shipped, changed and added by perfml.yaml) and their PromQL."""
    from perfml.alerting.rules import rules_from_settings

    found = rules_from_settings(state(ctx).settings, include_disabled=True)
    if as_json:
        _emit([{"name": r.name, "kind": r.kind.name, "expr": r.expr, "for_seconds": r.for_,
                "keep_firing_for_seconds": r.keep_firing_for, "labels": dict(r.labels),
                "annotations": dict(r.annotations), "enabled": r.enabled}
               for r in found])  # fmt: skip
        return
    table = Table("rule", "kind", "severity", "for", "enabled", "expr")
    for r in found:
        held = format_duration(timedelta(seconds=r.for_))
        table.add_row(r.name, r.kind.name, r.labels.get("severity", "-"),
                      held if r.for_ else "0s", "yes" if r.enabled else "no", r.expr)  # fmt: skip
    out.print(table)
