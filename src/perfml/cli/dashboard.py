"""``perfml dashboard`` (the web page on uvicorn) and ``perfml export grafana``.

The dashboard reads the workspace: perfml's recorded metrics from the feature store, the run
history and the registry from the metadata database. The library's app does the rest.
"""

from __future__ import annotations

from pathlib import Path

import typer

from perfml.cli.state import err, out, state
from perfml.dashboard.app import create_app
from perfml.dashboard.grafana import write_grafana_dashboards
from perfml.dashboard.panels import default_dashboard
from perfml.serving.server import check_listen

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8088


def dashboard(
    ctx: typer.Context,
    host: str = typer.Option(DEFAULT_HOST, "--host", help="address to listen on"),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="port to listen on"),
    refresh: float = typer.Option(30.0, "--refresh", min=0, help="seconds between redraws"),
) -> None:
    """Serve the dashboard: jobs, inference, drift, models and alerts."""
    import uvicorn

    check_listen(host, port, "dashboard", "--port")
    sources = state(ctx).parts().dashboard_sources()
    app = create_app(sources, default_dashboard(), refresh_seconds=refresh)
    err.print(f"perfml: dashboard on http://{host}:{port}", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def export_grafana_command(
    ctx: typer.Context,
    out_dir: Path = typer.Option(..., "--output", "-o", help="folder to write the JSON files to"),
) -> None:
    """Write one Grafana dashboard JSON per page (datasource input ``DS_PROMETHEUS``)."""
    for path in write_grafana_dashboards(out_dir, default_dashboard()):
        out.print(str(path), highlight=False)
