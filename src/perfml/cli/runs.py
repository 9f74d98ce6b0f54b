"""``perfml runs``: pipeline runs and their jobs, states, reasons, durations and logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from perfml.cli.state import out, state, stop_on_signals
from perfml.errors import UsageError
from perfml.pipelines.history import RunHistory
from perfml.pipelines.states import JobRecord, JobState, RunRecord

app = typer.Typer(help="Pipeline runs: jobs, states, reasons, logs.", no_args_is_help=True)

JSON_HELP = "print JSON instead of a table"


class RunFinishedError(UsageError):
    def __init__(self, run_id: str, run_state: JobState) -> None:
        super().__init__(f"run {run_id!r} is {run_state.value} already: nothing to cancel")


class NoSuchJobError(UsageError):
    def __init__(self, run_id: str, task: str, tasks: list[str]) -> None:
        super().__init__(f"run {run_id!r} has no step {task!r} (it has {', '.join(tasks)})")


def open_history(ctx: typer.Context) -> RunHistory:
    """The run history in the workspace's metadata database."""
    return state(ctx).parts().history()


# -- figures and rendering, shared with ``perfml train`` -------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _bytes(count: int) -> str:
    return f"{count / 2**20:,.0f} MiB" if count else "-"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return f"{datetime.fromtimestamp(epoch, tz=UTC):%Y-%m-%d %H:%M:%S}"


def _first_line(message: str, width: int = 100) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def jobs_table(run: RunRecord) -> Table:
    """One row per job: state, reason, attempts, time Pending and Running, CPU, memory."""
    table = Table(
        "step", "state", "reason", "attempts", "pending", "duration", "CPU s", "peak memory",
        "message", title=f"run {run.run_id}: {run.state.value}",
    )  # fmt: skip
    for job in run.jobs.values():
        waited = job.seconds_in_state(run.finished_at).get(JobState.PENDING.value, 0.0)
        table.add_row(
            job.task, job.state.value, job.reason.value if job.reason else "-", str(job.attempt),
            _duration(waited), _duration(job.running_seconds(run.finished_at)),
            f"{job.usage.cpu_seconds:.2f}", _bytes(job.usage.peak_memory_bytes),
            _first_line(job.message),
        )  # fmt: skip
    return table


def job_json(job: JobRecord, until: float | None = None) -> dict[str, Any]:
    return {
        "step": job.task,
        "state": job.state.value,
        "reason": job.reason.value if job.reason else None,
        "message": job.message,
        "attempts": job.attempt,
        "exit_code": job.exit_code,
        "duration_seconds": job.running_seconds(until),
        "seconds_in_state": job.seconds_in_state(until),
        "cpu_seconds": job.usage.cpu_seconds,
        "peak_memory_bytes": job.usage.peak_memory_bytes,
        "io_read_bytes": job.usage.io_read_bytes,
        "io_write_bytes": job.usage.io_write_bytes,
        "log": job.log_path,
    }


def run_json(run: RunRecord, with_jobs: bool = True) -> dict[str, Any]:
    found: dict[str, Any] = {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "state": run.state.value,
        "reason": run.reason.value if run.reason else None,
        "message": run.message,
        "created_at": _when(run.created_at),
        "finished_at": _when(run.finished_at),
        "duration_seconds": run.seconds(),
        "params": run.params,
    }
    if with_jobs:
        found["jobs"] = [job_json(j, run.finished_at) for j in run.jobs.values()]
    return found


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


# -- the commands ------------------------------------------------------------------------------


@app.command("list")
def list_runs(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, help="most recent runs to show"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The most recent runs first (runs of runners that died are marked Failed first)."""
    history = open_history(ctx)
    history.recover_orphans()
    found = history.list_runs(limit)
    if as_json:
        _emit([run_json(r, with_jobs=False) for r in found])
        return
    table = Table("run", "pipeline", "state", "reason", "created", "duration", "jobs", "message")
    for run in found:
        done = sum(j.state is JobState.SUCCEEDED for j in run.jobs.values())
        table.add_row(
            run.run_id, run.pipeline, run.state.value, run.reason.value if run.reason else "-",
            _when(run.created_at), _duration(run.seconds()),
            f"{done}/{len(run.jobs)} succeeded", _first_line(run.message, 80),
        )  # fmt: skip
    out.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN", help="run id"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A run's jobs: states, reasons, attempts, durations, CPU and memory."""
    history = open_history(ctx)
    history.recover_orphans()
    run = history.get_run(run_id)
    if as_json:
        _emit(run_json(run))
        return
    out.print(
        f"{run.pipeline} run {run.run_id}: {run.state.value}"
        + (f" ({run.reason.value})" if run.reason else "")
        + f", created {_when(run.created_at)}, {_duration(run.seconds())}",
        highlight=False,
    )
    if run.message:
        out.print(_first_line(run.message, 200), highlight=False, markup=False)
    out.print(jobs_table(run))


@app.command("logs")
def logs(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN", help="run id"),
    task: str = typer.Argument(..., metavar="STEP", help="step (task) name"),
    tail: int | None = typer.Option(None, "--tail", min=1, help="only the last N lines"),
) -> None:
    """The log of one job (every attempt's output, in order)."""
    run = open_history(ctx).get_run(run_id)
    job = run.jobs.get(task)
    if job is None:
        raise NoSuchJobError(run_id, task, list(run.jobs))
    path = Path(job.log_path)
    text = path.read_text(errors="replace") if path.is_file() else ""
    lines = text.splitlines()
    for line in lines[-tail:] if tail else lines:
        typer.echo(line)


@app.command("cancel")
def cancel(
    ctx: typer.Context, run_id: str = typer.Argument(..., metavar="RUN", help="run id")
) -> None:
    """Ask the runner of a run to cancel it: running jobs are killed, pending ones never start."""
    history = open_history(ctx)
    run = history.get_run(run_id)
    if run.state.is_terminal:
        raise RunFinishedError(run_id, run.state)
    history.request_cancel(run_id)
    out.print(f"cancel requested for run {run_id}; its runner stops it at its next heartbeat")


@app.command("delete")
def delete(
    ctx: typer.Context, run_id: str = typer.Argument(..., metavar="RUN", help="run id")
) -> None:
    """Delete an ended run: its history and its folder; its job metrics and their alerts go."""
    state(ctx).parts().delete_run(run_id)
    out.print(f"deleted run {run_id}", highlight=False)


@app.command("serve-metrics")
def serve_metrics_command(
    ctx: typer.Context,
    port: int = typer.Option(9102, "--port", min=0, max=65535, help="port to listen on"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
) -> None:
    """Serve the jobs' metrics at /metrics, named as kube-state-metrics and cAdvisor name them,
    and the controller's (its decisions and the latest drift it measured).

    Runs until interrupted; point Prometheus at it to alert on stuck, failing or slow jobs, and
    on drift.
    """
    from prometheus_client import CollectorRegistry

    from perfml.controller import ControllerCollector
    from perfml.pipelines.metrics_server import MetricsServer

    parts = state(ctx).parts()
    registry = CollectorRegistry()
    registry.register(parts.job_metrics())
    registry.register(ControllerCollector(parts.decisions(), drift=True))
    with stop_on_signals() as stop, MetricsServer(registry, port, host) as server:
        out.print(f"serving job metrics at {server.url}", highlight=False)
        stop.wait()
