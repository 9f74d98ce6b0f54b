"""``perfml monitor``: perfml's own Prometheus — scrape, record, evaluate the alert rules.

The library's :class:`~perfml.recording.service.MonitoringService` does the work; this
command runs it until SIGINT or SIGTERM (then it stops cleanly: the rounds under way end and
what was recorded is flushed) and prints each alert transition as it happens. ``--once``
scrapes once, evaluates once and prints the alerts.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import typer
from rich.table import Table

from perfml.alerting.alerts import Alert, AlertState, format_labels
from perfml.alerting.templates import go_float
from perfml.cli.state import err, out, state, stop_on_signals

_STYLES = {
    AlertState.PENDING: "yellow",
    AlertState.FIRING: "red",
    AlertState.RESOLVED: "green",
    AlertState.INACTIVE: "dim",
}


def _labels(alert: Alert) -> str:
    return format_labels({k: v for k, v in alert.labels.items() if k != "alertname"})


def transition_line(alert: Alert) -> str:
    """One line for an alert that changed state: when, the rule, the new state, its labels.

    >>> alert = Alert("JobFailed", {"alertname": "JobFailed", "pod": "p-1"}, {},
    ...               AlertState.FIRING, 0, last_evaluated_ms=1_700_000_000_000, value=1.0)
    >>> transition_line(alert)
    '2023-11-14 22:13:20  JobFailed firing {pod="p-1"} value=1'
    """
    when = datetime.fromtimestamp(alert.last_evaluated_ms / 1000, tz=UTC)
    return (
        f"{when:%Y-%m-%d %H:%M:%S}  {alert.rule} {alert.state.value} {_labels(alert)} "
        f"value={go_float(alert.value)}"
    )


def _print_transition(alert: Alert) -> None:
    out.print(transition_line(alert), style=_STYLES[alert.state], highlight=False)


def _print_alerts(alerts: list[Alert]) -> None:
    if not alerts:
        out.print("no alert is pending or firing", highlight=False)
        return
    table = Table("alert", "state", "labels", "value", "summary")
    for a in sorted(alerts, key=lambda a: (a.state is not AlertState.FIRING, a.rule)):
        table.add_row(a.rule, a.state.value, _labels(a), go_float(a.value),
                      a.annotations.get("summary", ""))  # fmt: skip
    out.print(table)


def monitor(
    ctx: typer.Context,
    once: bool = typer.Option(
        False, "--once", help="scrape once, evaluate once, print the alerts and exit"
    ),
) -> None:
    """Scrape perfml's metrics endpoints and evaluate the alert rules until interrupted,
    printing alerts as they change (the embedded mode's Prometheus)."""
    parts = state(ctx).parts()
    if once:
        service = parts.monitoring()
        try:
            for result in service.scrape_now():
                if result.error:
                    err.print(f"perfml: {result.job} ({result.instance}) is down: {result.error}",
                              highlight=False)  # fmt: skip
            service.evaluate_now()
            _print_alerts(service.alerts())
        finally:
            service.stop()
        return
    stop = threading.Event()
    with stop_on_signals(stop):
        service = parts.monitoring(on_transition=_print_transition)
        try:
            service.start()
            monitoring = parts.settings.monitoring
            err.print(
                f"perfml: monitoring {len(service.targets)} targets every "
                f"{monitoring.scrape_interval}, {len(service.engine.rules)} rules every "
                f"{monitoring.evaluation_interval}; Ctrl-C stops",
                highlight=False,
            )
            while not stop.wait(1.0):
                pass
        finally:
            service.stop()
    err.print("perfml: monitoring stopped; recorded metrics flushed", highlight=False)
