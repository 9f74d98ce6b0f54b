"""``perfml drift``: how far each window's data has moved from the reference window."""

from __future__ import annotations

import json
import math

import typer
from rich.table import Table

from perfml.cli.state import out, state
from perfml.drift import DEFAULT_METHODS, DriftReport, drift_report, parse_span
from perfml.drift.reference import model_reference
from perfml.drift.windows import DEFAULT_EVERY, check_every
from perfml.errors import UsageError

app = typer.Typer(help="Drift of the features against the reference window.", no_args_is_help=True)


@app.command("report")
def report(
    ctx: typer.Context,
    window: str = typer.Option(
        DEFAULT_EVERY, "--window", help="windows to measure: monthly, weekly, daily or Nd (7d)"
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="reference window START..END (e.g. 2024-01-01..2024-04-01)"
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="reference: the training window of this model version (NAME@production)",
    ),
    method: str = typer.Option(
        ",".join(DEFAULT_METHODS), "--method", help="measures, comma-separated"
    ),
    metric: list[str] | None = typer.Option(None, "--metric", help="metric (repeatable)"),
    per_entity: bool = typer.Option(False, "--per-entity", help="one feature per entity"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Measure every feature in each window after the reference; mark cells over threshold."""
    check_every(window)
    if (reference is None) == (model is None):
        raise UsageError("give exactly one of --reference START..END and --model NAME@ALIAS")
    methods = [m.strip() for m in method.split(",") if m.strip()]
    cli = state(ctx)
    version_ref = None
    if reference is not None:
        base = parse_span(reference)
    else:
        registry = cli.parts().registry(background_delivery=False)
        version, base = model_reference(registry, str(model))
        version_ref = version.ref
    found = drift_report(
        cli.store(),
        base,
        every=window,
        methods=methods,
        metrics=metric or None,
        per_entity=per_entity,
        model=version_ref,
    )
    if as_json:
        out.print_json(json.dumps(found.to_json()))
    else:
        print_report(found)


def print_report(found: DriftReport) -> None:
    """Features × windows, one table per measure; ``!`` marks a value over its threshold."""
    features = list(dict.fromkeys((r.feature, r.entity) for r in found.records))
    source = f" ({found.model})" if found.model else ""
    for method in found.methods:
        cells = {(r.feature, r.entity, r.window): r for r in found.records if r.method == method}
        limit = next((r.threshold for r in cells.values()), None)
        shown = "" if limit is None else f", threshold {limit:g}"
        table = Table(
            title=f"{method} against {found.reference.label}{source}{shown} (! over threshold)"
        )
        table.add_column("feature")
        for window in found.windows:
            table.add_column(window.label, justify="right")
        for feature, entity in features:
            row = [feature if entity is None else f"{feature}/{entity}"]
            for window in found.windows:
                record = cells.get((feature, entity, window.label))
                if record is None or math.isnan(record.value):
                    row.append("-")
                else:
                    row.append(f"{record.value:.4f}{' !' if record.drifted else ''}")
            table.add_row(*row)
        out.print(table)
    if not found.windows:
        out.print(f"no window after the reference {found.reference.label} holds data")
