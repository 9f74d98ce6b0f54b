"""``perfml report``: the workspace's lifecycle as one self-contained HTML file.

It reads what the dashboard reads (see :func:`perfml.dashboard.setup.open_sources`) and the
controller's decisions, and writes :func:`perfml.dashboard.report.write_report`'s file: it
opens offline, from disk, and can be mailed or archived as it is.
"""

from __future__ import annotations

from pathlib import Path

import typer

from perfml.cli.state import out, state
from perfml.controller.decisions import DecisionLog
from perfml.dashboard.data import TimeRange
from perfml.dashboard.panels import default_dashboard
from perfml.dashboard.report import write_report
from perfml.dashboard.setup import close_sources, open_sources

REPORT_NAME = "report.html"
MAX_DECISIONS = 10_000


def report(
    ctx: typer.Context,
    output: Path | None = typer.Option(
        None, "--output", "-o", help=f"file to write (default: <workspace>/{REPORT_NAME})"
    ),
    since: str = typer.Option("30d", "--since", help="the time range: this long up to now"),
    title: str = typer.Option("perfml report", "--title", help="the report's title"),
) -> None:
    """Write a self-contained HTML report: drift, jobs, latency, alerts, models, decisions."""
    settings = state(ctx).settings
    window = TimeRange.last(since)
    controller = settings.controller
    dashboard = default_dashboard(
        drift_method=controller.method, drift_threshold=controller.threshold
    )
    target = output or settings.workspace / REPORT_NAME
    sources = open_sources(settings)
    decisions = DecisionLog(settings.registry_url)
    try:
        written = write_report(
            target,
            sources,
            window,
            decisions=decisions.history(limit=MAX_DECISIONS),
            title=title,
            dashboard=dashboard,
        )
    finally:
        decisions.close()
        close_sources(sources)
    out.print(str(written), highlight=False, soft_wrap=True)
