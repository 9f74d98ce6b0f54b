"""``perfml report``: the workspace's lifecycle as one self-contained HTML file.

It reads what the dashboard reads (:meth:`perfml.workspace.Workspace.dashboard_sources`) and the
controller's decisions, and writes :func:`perfml.dashboard.report.write_report`'s file: it
opens offline, from disk, and can be mailed or archived as it is.
"""

from __future__ import annotations

from pathlib import Path

import typer

from perfml.cli.state import out, state
from perfml.dashboard.data import TimeRange
from perfml.dashboard.panels import default_dashboard
from perfml.dashboard.report import write_report

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
    parts = state(ctx).parts()
    settings = parts.settings
    window = TimeRange.last(since)
    controller = settings.controller
    dashboard = default_dashboard(
        drift_method=controller.method, drift_threshold=controller.threshold
    )
    target = output or settings.workspace / REPORT_NAME
    written = write_report(
        target,
        parts.dashboard_sources(),
        window,
        decisions=parts.decisions().history(limit=MAX_DECISIONS),
        title=title,
        dashboard=dashboard,
    )
    out.print(str(written), highlight=False, soft_wrap=True)
