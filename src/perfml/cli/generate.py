"""``perfml generate``: synthetic data sources."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

import typer

from perfml.cli.state import out
from perfml.sources.fleet import generate_fleet, write_fleet
from perfml.timeparse import parse_instant

app = typer.Typer(help="Generate realistic, labelled performance metrics.", no_args_is_help=True)


@app.command("fleet")
def fleet(
    hosts: int = typer.Option(20, "--hosts", min=1, help="number of hosts"),
    months: int = typer.Option(3, "--months", min=1, help="calendar months of data"),
    seed: int = typer.Option(0, "--seed", min=0, help="random seed (same seed, same files)"),
    out_dir: Path = typer.Option(..., "--out", help="folder to write"),
    start: str = typer.Option("2024-01-01", "--start", help="first instant (UTC)"),
    drift_month: list[int] | None = typer.Option(
        None, "--drift-month", help="0-based month of a workload change (repeatable)"
    ),
    fmt: str = typer.Option("nab", "--format", help="nab (CSV per series) or parquet"),
) -> None:
    """A fleet's metrics at 5-minute steps, with labelled anomalies and workload drift."""
    if fmt not in ("nab", "parquet"):
        raise typer.BadParameter(f"{fmt!r} is not one of nab, parquet", param_hint="--format")
    chosen: Literal["nab", "parquet"] = "nab" if fmt == "nab" else "parquet"
    first: datetime = parse_instant(start, "--start")
    plan = generate_fleet(hosts, months, seed, start=first, drift_months=drift_month or None)
    with out.status(f"writing {plan.points:,} points of {hosts} hosts to {out_dir}"):
        write_fleet(plan, out_dir, chosen)
    out.print(
        f"wrote {plan.points:,} points: {hosts} hosts × 6 metrics × {plan.steps:,} steps, "
        f"{len(plan.anomalies)} labelled anomalies, "
        f"{len(plan.drift_events)} workload change(s) → {out_dir}"
    )
