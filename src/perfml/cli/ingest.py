"""``perfml ingest``: bring points into the feature store, all or nothing per command."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from perfml.cli.render import print_report
from perfml.cli.state import progress, state
from perfml.sources import nab
from perfml.sources.ingestion import PrometheusPull, ingest_corpus, ingest_files, ingest_prometheus
from perfml.timeparse import parse_duration, parse_instant

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


@app.command("prometheus")
def ingest_prometheus_command(
    ctx: typer.Context,
    query: str = typer.Option(..., "--query", "-q", help="PromQL expression"),
    start: str = typer.Option(..., "--start", help="first instant (RFC 3339 or Unix seconds)"),
    end: str = typer.Option(..., "--end", help="last instant"),
    url: str | None = typer.Option(None, "--url", help="Prometheus base URL (or in perfml.yaml)"),
    step: str | None = typer.Option(None, "--step", help="resolution, e.g. 15s, 5m"),
    metric: str | None = typer.Option(
        None, "--metric", help="metric name (required when the query drops __name__)"
    ),
    entity_label: str | None = typer.Option(
        None, "--entity-label", help="label naming the entity (default: instance)"
    ),
    user: str | None = typer.Option(
        None, "--user", help="basic-auth user; the password comes from PERFML_PROMETHEUS_PASSWORD"
    ),
    drop_nonfinite: bool = typer.Option(False, "--drop-nonfinite", help=DROP_HELP),
) -> None:
    """Pull a range query from the Prometheus HTTP API, in chunks, with retries."""
    settings = state(ctx).settings.sources.prometheus
    base = url or settings.url
    if base is None:
        raise typer.BadParameter("give --url or sources.prometheus.url", param_hint="--url")
    username = user or settings.username
    password = os.environ.get(settings.password_env, "")
    pull = PrometheusPull(
        url=base,
        query=query,
        start=parse_instant(start, "--start"),
        end=parse_instant(end, "--end"),
        step=parse_duration(step or settings.step, "--step"),
        metric=metric,
        entity_label=entity_label or settings.entity_label,
        bearer_token=os.environ.get(settings.token_env) or None,
        basic_auth=(username, password) if username else None,
        timeout=parse_duration(settings.timeout, "timeout"),
        attempts=settings.attempts,
        max_points_per_series=settings.max_points_per_series,
    )
    with progress() as bar:
        task = bar.add_task("pulling windows", total=None)
        report = ingest_prometheus(
            state(ctx).store(), pull, drop_nonfinite, lambda: bar.advance(task)
        )
    print_report(report)
