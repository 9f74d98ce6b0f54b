"""Running the training pipeline on this machine, as ``perfml train``, the controller and the
demo do.

The pipeline runs on a :class:`~perfml.pipelines.runner.LocalRunner` (a workspace gives one
with its run history, capacity and parts: :meth:`perfml.workspace.Workspace.runner`); the
request says what to train and whether to promote; the outcome is the register step's
:class:`~perfml.pipelines.outcomes.TrainingOutcome`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psutil

from perfml.config import PipelinesSettings
from perfml.detectors import create
from perfml.errors import PerfmlError
from perfml.pipelines.dsl import Resources
from perfml.pipelines.outcomes import TrainingOutcome
from perfml.pipelines.runner import LocalRunner
from perfml.pipelines.states import JobState, RunRecord
from perfml.pipelines.training import build_training_pipeline, split_instant
from perfml.registry.gate import MetricThreshold
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


def runner_capacity(pipelines: PipelinesSettings) -> Resources:
    """The runner's capacity: ``pipelines`` in the settings, this machine's by default."""
    return Resources(
        cpu=pipelines.cpu or psutil.cpu_count() or 1,
        memory=pipelines.memory or psutil.virtual_memory().total,
    )


@dataclass(frozen=True)
class TrainingRequest:
    """What to train: a ``detector`` (with ``params``) on ``metrics`` over ``[start, end)``, the
    last ``holdout`` share held out to evaluate, registered as ``model`` (the metrics' names
    joined by default) and, with ``promote``, moved to ``alias`` through the ``gate``."""

    detector: str
    metrics: Sequence[str]
    start: datetime
    end: datetime
    entities: Sequence[str] | None = None
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    holdout: float = 0.2
    promote: bool = False
    alias: str = "production"
    gate: Sequence[MetricThreshold] | None = None
    """The gate's thresholds; None: the workspace's (``registry.gate``)."""
    validation: float | None = None
    """The share of the held-out window that chooses each version's threshold, the rest
    judging it; None: the workspace's (``registry.gate_validation``)."""
    keep_from: str | None = None
    """A version (``name:version``) whose states the candidate keeps for its entities not in
    ``refresh``, byte for byte; None: every state is the one just learnt."""
    refresh: Sequence[str] | None = None
    """With ``keep_from``, the entities whose states are learnt afresh."""

    def check(self) -> None:
        """Refuse an unknown detector or parameter, or a bad window, before anything runs."""
        create(self.detector, **self.params)
        split_instant(self.start.isoformat(), self.end.isoformat(), self.holdout)

    def run_params(self, run_id: str) -> dict[str, Any]:
        """The training pipeline's run parameters."""
        return {
            "metrics": list(self.metrics),
            "entities": list(self.entities) if self.entities else None,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "holdout": self.holdout,
            "detector": self.detector,
            "detector_params": dict(self.params),
            "model": self.model or "-".join(self.metrics),
            "promote": self.promote,
            "alias": self.alias,
            "gate": [threshold.__dict__.copy() for threshold in self.gate or ()],
            **({} if self.validation is None else {"validation": self.validation}),
            "keep_from": self.keep_from,
            "refresh": None if self.refresh is None else list(self.refresh),
            "run_id": run_id,
        }


@dataclass(frozen=True)
class Training:
    """A finished training run: its record and what it registered."""

    run: RunRecord
    outcome: TrainingOutcome


def run_training(
    runner: LocalRunner, request: TrainingRequest, pipelines: PipelinesSettings | None = None
) -> Training:
    """Run the training pipeline for ``request`` on ``runner`` (each step's timeout and retries
    as ``pipelines`` set them); raises :class:`TrainingFailedError` if it did not succeed."""
    request.check()
    chosen = pipelines or PipelinesSettings()
    timeout = None
    if chosen.step_timeout is not None:
        timeout = parse_duration(chosen.step_timeout).total_seconds()
    pipeline = build_training_pipeline(timeout=timeout, retries=chosen.step_retries)
    run_id = f"training-{uuid.uuid4().hex[:12]}"
    run = runner.run(pipeline, request.run_params(run_id), run_id=run_id)
    if run.state is not JobState.SUCCEEDED:
        raise TrainingFailedError(run)
    return Training(run, TrainingOutcome.model_validate(runner.task_value(run, "register")))
