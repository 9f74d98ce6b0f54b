"""``perfml ingest``: bring points into the feature store, all or nothing per command."""

from __future__ import annotations

from pathlib import Path

import typer

from perfml.cli.render import print_report
from perfml.cli.state import progress, state
from perfml.ingest import ingest_corpus, ingest_files
from perfml.sources import nab

app = typer.Typer(help="Ingest points into the feature store.", no_args_is_help=True)

DROP_HELP = "drop NaN and infinite values and count them, instead of refusing the input"


@app.command("file")
def ingest_file(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="long-format CSV or Parquet files"),
    drop_nonfinite: bool = typer.Option(False, "--drop-nonfinite", help=DROP_HELP),
) -> None:
    """Files with columns metric, entity, ts, value (one point per row)."""
    store = state(ctx).store()
    with progress() as bar:
        task = bar.add_task("ingesting files", total=len(paths))
        report = ingest_files(store, paths, drop_nonfinite, lambda: bar.advance(task))
    print_report(report)


@app.command("nab")
def ingest_nab(
    ctx: typer.Context,
    corpus: Path = typer.Argument(..., help="a NAB corpus: data/<category>/*.csv and labels/"),
    metric: str | None = typer.Option(None, "--metric", help="metric name (default: category)"),
) -> None:
    """A NAB corpus (or a generated fleet): each CSV a series, its windows as labels."""
    store = state(ctx).store()
    total = sum(1 for _ in nab.iter_corpus(corpus))
    with progress() as bar:
        task = bar.add_task("ingesting series", total=total)
        report = ingest_corpus(store, corpus, metric, lambda: bar.advance(task))
    print_report(report)
