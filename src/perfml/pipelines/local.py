"""Running the training pipeline on this machine, as ``perfml train`` and the demo do.

The pipeline runs on the :class:`~perfml.pipelines.runner.LocalRunner` over the workspace
(runs under ``<workspace>/runs``), its history in the workspace's metadata database, within
the capacity of ``pipelines`` in the settings.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from perfml.config import Settings
from perfml.detectors import create
from perfml.errors import PerfmlError
from perfml.pipelines.dsl import Resources
from perfml.pipelines.history import RunHistory
from perfml.pipelines.runner import LocalRunner
from perfml.pipelines.states import JobState, RunRecord
from perfml.pipelines.training import build_training_pipeline, split_instant
from perfml.timeparse import parse_duration


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
