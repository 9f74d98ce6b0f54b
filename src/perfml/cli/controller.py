"""``perfml controller``: the retraining loop, once or on schedule, and what it decided."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.table import Table

from perfml.cli.state import out, state, stop_on_signals
from perfml.controller import Decision
from perfml.timeparse import parse_duration, parse_instant

app = typer.Typer(help="Retrain served models when their data drifts, behind the gate.")


def decisions_table(found: list[Decision]) -> Table:
    table = Table(title="controller decisions")
    for column in ("model", "window", "action", "production", "candidate", "why"):
        table.add_column(column, overflow="fold")
    for d in found:
        table.add_row(
            d.model, d.window, d.action.value, d.production or "", d.candidate or "",
            "; ".join(d.reasons),
        )  # fmt: skip
    return table


def _print(found: list[Decision], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps([d.to_json() for d in found]))
    else:
        out.print(decisions_table(found))


@app.command("run-once")
def run_once(
    ctx: typer.Context,
    at: str | None = typer.Option(
        None, "--at", help="check the windows complete at this instant (default: now)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Check each served model's latest complete window once; retrain if it drifted."""
    moment = parse_instant(at, "--at") if at else datetime.now(UTC)
    _print(state(ctx).parts().controller().run_once(moment), as_json)


@app.command("run")
def run(ctx: typer.Context) -> None:
    """Check on the schedule of ``controller.schedule`` until interrupted."""
    parts = state(ctx).parts()
    interval = parse_duration(parts.settings.controller.schedule).total_seconds()
    controller = parts.controller()
    out.print(f"controller: checking {controller.models} every {interval:g} s", highlight=False)
    with stop_on_signals() as stop:
        controller.run(interval, stop)


@app.command("history")
def history(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", help="only this model"),
    limit: int = typer.Option(100, "--limit", min=1, help="the latest N decisions"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """The controller's decisions, oldest first, with their reasons."""
    _print(state(ctx).parts().decisions().history(model, limit), as_json)
