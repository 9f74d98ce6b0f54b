"""``perfml up``: serving, the live fleet, monitoring, the controller's schedule and the dashboard,
in one command; ``perfml live``: the live fleet alone.

Runs until interrupted (Ctrl-C or SIGTERM), then stops every part cleanly: requests in flight
are answered, the monitoring records the final state and flushes it to the store.
"""

from __future__ import annotations

import typer

from perfml.alerting.alerts import Alert
from perfml.cli.state import err, out, state, stop_on_signals
from perfml.embedded import EmbeddedSystem, Parts


def up(
    ctx: typer.Context,
    dashboard_port: int = typer.Option(8088, "--dashboard-port", help="the dashboard's port"),
    no_dashboard: bool = typer.Option(False, "--no-dashboard", help="do not serve the dashboard"),
    no_controller: bool = typer.Option(False, "--no-controller", help="do not retrain"),
) -> None:
    """Run perfml on this machine: serving, monitoring, the controller and the dashboard."""
    settings = state(ctx).settings
    parts = Parts(
        controller=not no_controller, dashboard=not no_dashboard, dashboard_port=dashboard_port
    )
    system = EmbeddedSystem(state(ctx).parts(), parts, on_alert=_print_alert)
    with stop_on_signals() as stop, system:
        if system.server is not None:
            out.print(f"inference server  {system.server.url}/v2", highlight=False)
        else:
            err.print(
                "perfml: no model to serve: name some in serving.models, or promote a version "
                "with perfml models promote NAME:VERSION; serving is off",
                highlight=False,
            )
        if system.dashboard is not None:
            out.print(f"dashboard         {system.dashboard.url}/", highlight=False)
        if system.controller is not None:
            every = settings.controller.schedule
            out.print(f"controller        {system.controller.models} every {every}")
        _print_intake(system)
        out.print("monitoring        rules evaluated; Ctrl-C stops everything")
        stop.wait()
        out.print("stopping…")
    out.print("stopped")


def live(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="default: sources.remote_write.host"),
    port: int | None = typer.Option(None, "--port", help="default: sources.remote_write.port"),
) -> None:
    """Score the fleet as it arrives: the remote-write receiver (its /metrics has the scores),
    the scheduled pulls and the live loop, without serving, monitoring or the controller — the
    fleet's scorer on a cluster."""
    workspace = state(ctx).parts()
    settings = workspace.settings
    changed = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    remote_write = settings.sources.remote_write.model_copy(update={"enabled": True, **changed})
    sources = settings.sources.model_copy(update={"remote_write": remote_write})
    workspace.settings = settings.model_copy(update={"sources": sources})
    parts = Parts(serving=False, monitoring=False, controller=False, dashboard=False)
    system = EmbeddedSystem(workspace, parts)
    with stop_on_signals() as stop, system:
        _print_intake(system)
        stop.wait()
        out.print("stopping…")
    out.print("stopped")


def _print_intake(system: EmbeddedSystem) -> None:
    if system.live is not None:
        scored = ", ".join(system.live.models) or "nothing yet"
        out.print(f"live loop         scoring {scored}", highlight=False)
        for ref, why in system.live.waiting.items():
            err.print(f"perfml: not scoring {ref} live yet: {why}", highlight=False)
    if system.receiver is not None:
        out.print(f"remote write      {system.receiver.url}", highlight=False)
    if system.pulls is not None:
        every = system.settings.sources.pull_interval
        queries = ", ".join(q.metric for q in system.pulls.queries)
        out.print(f"pulls             {queries} every {every}", highlight=False)


def _print_alert(alert: Alert) -> None:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname")
    out.print(f"alert {alert.rule} {alert.state.value}: {labels}", highlight=False, markup=False)
