"""``perfml init`` and ``perfml demo``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from perfml.cli.state import out, state
from perfml.config import CONFIG_NAME, DEFAULT_CONFIG, load_settings
from perfml.demo import DEMO_METRIC, DemoOutcome, run_demo
from perfml.errors import UsageError


class ConfigExistsError(UsageError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} exists already; pass --force to overwrite it")


def init(
    path: Path = typer.Argument(Path(CONFIG_NAME), help="where to write"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write a perfml.yaml with every setting at its default, commented, and create the
    workspace folder it names."""
    if path.exists() and not force:
        raise ConfigExistsError(path)
    path.write_text(DEFAULT_CONFIG, encoding="utf-8")
    workspace = load_settings(path).workspace
    workspace.mkdir(parents=True, exist_ok=True)
    out.print(f"wrote {path}; workspace {workspace}", highlight=False)


def demo(ctx: typer.Context) -> None:
    """Six months of a fleet: train v1, serve it, watch drift, retrain and promote v2 when the
    workload changes, fire and resolve alerts; ends with a summary and an HTML report."""
    settings = state(ctx).settings
    out.rule("perfml demo")
    outcome = run_demo(settings, lambda line: out.print(line, highlight=False, markup=False))
    out.rule("summary")
    out.print(months_table(outcome))
    out.print(gates_table(outcome))
    out.print(alerts_table(outcome))
    out.print(
        f"production: {outcome.production} · report: {outcome.report} · {outcome.seconds:.0f} s",
        highlight=False,
    )


def months_table(outcome: DemoOutcome) -> Table:
    table = Table(title="month by month")
    columns = ("month", "scored", "served by", "incidents (hosts)", "found", "precision",
               "detect", "KL (latency)", "controller", "why")  # fmt: skip
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in outcome.months:
        decision = row.decision
        drift = None if decision is None else decision.figures.get("drift", {}).get(DEMO_METRIC)
        found = row.found
        delay = None if found is None else found.median_delay_minutes
        table.add_row(
            row.month,
            f"{row.scored_rows:,}",
            ", ".join(row.served_by),
            f"{row.incidents} ({row.hosts})",
            "" if found is None else f"{found.found}/{found.windows}",
            "" if found is None else f"{found.precision:.2f}",
            "" if delay is None else f"{delay:.0f} min",
            "" if drift is None else f"{drift:.3f}",
            "" if decision is None else decision.action.value,
            "" if decision is None else decision.reasons[-1],
        )
    return table


def gates_table(outcome: DemoOutcome) -> Table:
    """Each decision of the gate: the candidate's and the holder's figures on the test slice."""
    table = Table(title="the gate's decisions (figures on the test slice)")
    for column in ("when", "version", "", "NAB", "event F1", "point F1", "threshold"):
        table.add_column(column)
    table.add_column("windows val/test")
    table.add_column("gate", overflow="fold")
    for gate in outcome.gates:
        rows = [(gate.candidate, "candidate", gate.verdict.candidate)]
        if gate.holder is not None and gate.verdict.baseline is not None:
            rows.append((gate.holder, "holder", gate.verdict.baseline))
        verdict = "passed" if gate.verdict.passed else f"refused: {gate.verdict.reason}"
        for number, (ref, role, found) in enumerate(rows):
            table.add_row(
                gate.when if number == 0 else "",
                ref,
                role,
                _figure(found, "nab_standard", ".1f"),
                _figure(found, "event_f1", ".2f"),
                _figure(found, "point_f1", ".2f"),
                _figure(found, "threshold", ".3g"),
                f"{_figure(found, 'validation_windows', '.0f')} / "
                f"{_figure(found, 'test_windows', '.0f')}",
                verdict if number == 0 else "",
            )
    return table


def _figure(found: dict[str, float], name: str, spec: str) -> str:
    value = found.get(name)
    return "" if value is None else format(value, spec)


def alerts_table(outcome: DemoOutcome) -> Table:
    table = Table(title="alerts")
    for column in ("alert", "on", "state", "at"):
        table.add_column(column)
    for entry in outcome.alerts:
        if entry.to_state not in ("firing", "resolved"):
            continue
        labels = entry.labels
        on = labels.get("job_name") or labels.get("pod") or labels.get("feature") or ""
        at = datetime.fromtimestamp(entry.at_ms / 1000, tz=UTC)
        table.add_row(entry.rule, on, entry.to_state, f"{at:%H:%M:%S}")
    return table
