"""``perfml train``: run the built-in training pipeline on the workspace with the local runner."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import typer

from perfml.cli.runs import jobs_table, run_json
from perfml.cli.state import out, state
from perfml.config import Settings
from perfml.detectors import DEFAULT_DETECTOR, create
from perfml.errors import PerfmlError, UsageError
from perfml.pipelines.dsl import Resources
from perfml.pipelines.history import RunHistory
from perfml.pipelines.runner import LocalRunner
from perfml.pipelines.states import JobState, RunRecord
from perfml.pipelines.training import build_training_pipeline, split_instant
from perfml.timeparse import parse_duration, parse_instant


class BadWindowError(UsageError):
    def __init__(self, text: str) -> None:
        super().__init__(f"--window {text!r} is not START:END (e.g. 2024-01-01:2024-03-01)")


class TrainingFailedError(PerfmlError):
    """The run ended without a registered version; names the step and why."""

    def __init__(self, run: RunRecord) -> None:
        self.run = run
        failed = next(
            (j for j in run.jobs.values() if j.state is JobState.FAILED),
            next((j for j in run.jobs.values() if j.state is not JobState.SUCCEEDED), None),
        )
        if failed is None:
            super().__init__(f"training run {run.run_id} {run.state.value}: {run.message}")
            return
        reason = failed.reason.value if failed.reason else failed.state.value
        lines = [line.strip() for line in failed.message.splitlines() if line.strip()]
        detail = lines[-1] if lines else ""
        super().__init__(
            f"training run {run.run_id} {run.state.value} at step {failed.task!r} ({reason}): "
            f"{detail}"
        )


def parse_window(text: str) -> tuple[datetime, datetime]:
    """``START:END``; each side an instant (ISO dates and times may contain colons)."""
    for at, char in enumerate(text):
        if char != ":":
            continue
        try:
            return parse_instant(text[:at], "start"), parse_instant(text[at + 1 :], "end")
        except UsageError:
            continue
    raise BadWindowError(text)


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that reads as JSON (numbers, true, lists) is taken as such."""
    found: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        try:
            found[key] = json.loads(value)
        except json.JSONDecodeError:
            found[key] = value
    return found


def runner_capacity(settings: Settings) -> Resources:
    """The runner's capacity: ``pipelines`` in the settings, this machine's by default."""
    capacity = settings.pipelines
    return Resources(
        cpu=capacity.cpu or psutil.cpu_count() or 1,
        memory=capacity.memory or psutil.virtual_memory().total,
    )


def runner_for(settings: Settings, history: RunHistory) -> LocalRunner:
    """The local runner on the workspace (runs under ``<workspace>/runs``)."""
    return LocalRunner(history, settings.workspace.absolute(), runner_capacity(settings))


@dataclass(frozen=True)
class Training:
    """What ``perfml train`` and the demo run: the run's record and the register step's value."""

    run: RunRecord
    registered: dict[str, Any]


def run_training(
    settings: Settings,
    *,
    detector: str,
    metrics: Sequence[str],
    start: datetime,
    end: datetime,
    entities: Sequence[str] | None = None,
    model: str | None = None,
    params: dict[str, Any] | None = None,
    holdout: float = 0.2,
    promote: bool = False,
    alias: str = "production",
) -> Training:
    """Run the training pipeline; raises :class:`TrainingFailedError` if it did not succeed."""
    create(detector, **(params or {}))  # refuse an unknown detector or parameter before running
    split_instant(start.isoformat(), end.isoformat(), holdout)
    pipelines = settings.pipelines
    timeout = None
    if pipelines.step_timeout is not None:
        timeout = parse_duration(pipelines.step_timeout).total_seconds()
    pipeline = build_training_pipeline(timeout=timeout, retries=pipelines.step_retries)
    run_id = f"training-{uuid.uuid4().hex[:12]}"
    values = {
        "store": str(settings.store_path.absolute()),
        "registry_url": settings.registry_url,
        "workspace": str(settings.workspace.absolute()),
        "artifacts": settings.registry.artifacts or str(settings.artifacts_path.absolute()),
        "metrics": list(metrics),
        "entities": list(entities) if entities else None,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "holdout": holdout,
        "detector": detector,
        "detector_params": params or {},
        "model": model or "-".join(metrics),
        "promote": promote,
        "alias": alias,
        "gate": [t.model_dump() for t in settings.registry.gate],
        "run_id": run_id,
    }
    history = RunHistory(settings.registry_url)
    try:
        with runner_for(settings, history) as runner:
            run = runner.run(pipeline, values, run_id=run_id)
    finally:
        history.close()
    if run.state is not JobState.SUCCEEDED:
        raise TrainingFailedError(run)
    result = Path(run.workspace) / "register" / "result.json"
    return Training(run, json.loads(result.read_text())["value"])


def print_training(done: Training) -> None:
    out.print(jobs_table(done.run))
    registered = done.registered
    line = f"registered {registered['ref']}"
    if registered.get("promoted"):
        line += f", promoted to {registered['promoted']}"
    elif registered.get("gate"):
        line += f", not promoted: {registered['gate']}"
    out.print(line, highlight=False, markup=False)


def train(
    ctx: typer.Context,
    data: str = typer.Option(..., "--data", help="METRIC[,METRIC...] to train on"),
    window: str = typer.Option(..., "--window", help="START:END of the data (end exclusive)"),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help="detector kind"),
    entity: list[str] | None = typer.Option(None, "--entity", help="only these (repeatable)"),
    model: str | None = typer.Option(None, "--model", help="model name (default: the metrics)"),
    param: list[str] | None = typer.Option(None, "--param", help="detector k=v (repeatable)"),
    holdout: float = typer.Option(
        0.2, "--holdout", help="share of the window held out to evaluate"
    ),
    promote: bool = typer.Option(False, "--promote", help="promote through the gate"),
    alias: str = typer.Option("production", "--alias", help="alias --promote moves"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Train a detector through the training pipeline, evaluate it, register it."""
    metrics = [m.strip() for m in data.split(",") if m.strip()]
    if not metrics:
        raise typer.BadParameter("name at least one metric", param_hint="--data")
    start, end = parse_window(window)
    done = run_training(
        state(ctx).settings, detector=detector, metrics=metrics, start=start, end=end,
        entities=entity, model=model, params=parse_params(param or []), holdout=holdout,
        promote=promote, alias=alias,
    )  # fmt: skip
    if as_json:
        document = {"run": run_json(done.run), "registered": done.registered}
        typer.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    print_training(done)
