"""``perfml store``: what the feature store holds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.table import Table

from perfml.cli.render import print_summary
from perfml.cli.state import out, state

app = typer.Typer(help="Inspect the feature store.", no_args_is_help=True)


@app.command("summary")
def summary(ctx: typer.Context) -> None:
    """Series, points, months and labelled anomalies."""
    store = state(ctx).store()
    kinds = Counter(w.kind for w in store.windows())
    print_summary(store.summary(), dict(kinds))


@app.command("series")
def series(
    ctx: typer.Context, metric: str | None = typer.Option(None, "--metric", help="only this metric")
) -> None:
    """Every series with its labels."""
    table = Table("metric", "entity", "labels")
    for name, entity, labels in state(ctx).store().series():
        if metric is None or name == metric:
            table.add_row(name, entity, ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
    out.print(table)


@app.command("read")
def read(
    ctx: typer.Context,
    metric: list[str] | None = typer.Option(None, "--metric", help="metric (repeatable)"),
    entity: list[str] | None = typer.Option(None, "--entity", help="entity (repeatable)"),
    start: str | None = typer.Option(None, "--start", help="first instant (included)"),
    end: str | None = typer.Option(None, "--end", help="last instant (excluded)"),
    as_of: str | None = typer.Option(None, "--as-of", help="return nothing later than this"),
    step: str | None = typer.Option(None, "--step", help="resample to this step"),
    agg: str = typer.Option("mean", "--agg", help="aggregation when resampling"),
    output: Path | None = typer.Option(None, "--out", "-o", help=".csv or .parquet file"),
) -> None:
    """Points as CSV on stdout, or into a CSV or Parquet file."""
    store = state(ctx).store()
    if step is None:
        table = store.read(metric or None, entity or None, start, end, as_of)
    else:
        table = store.resample(step, agg, metric or None, entity or None, start, end, as_of)
    if output is not None and output.suffix == ".parquet":
        pq.write_table(table, output)
    elif output is not None:
        pacsv.write_csv(table, output)
    else:
        sink = typer.get_binary_stream("stdout")
        pacsv.write_csv(table, sink)
