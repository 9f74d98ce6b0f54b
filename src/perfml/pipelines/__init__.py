"""Pipelines: steps as plain functions, DAGs of them, and a local runner with a run history.

Define with :func:`~perfml.pipelines.dsl.step` and :class:`~perfml.pipelines.dsl.Pipeline`
(light, importable anywhere: a step's worker imports only these); a step takes the parts of
the workspace it uses through :class:`~perfml.pipelines.dsl.Part` bindings
(:mod:`.parts`); run with :class:`~perfml.pipelines.runner.LocalRunner` over a
:class:`~perfml.pipelines.history.RunHistory`, or compile for Kubeflow (:mod:`.kubeflow`) or
Kubernetes Jobs (:mod:`.kubernetes`). The pipelines by name are :data:`PIPELINES`
(:mod:`.catalog`); the training run hands back a :class:`TrainingOutcome`. Job states and
reasons are in :mod:`.states`. The names past ``dsl`` and ``states`` are imported when first
used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfml.lazy import exports
from perfml.pipelines.dsl import (
    Param,
    Part,
    Pipeline,
    Preconditions,
    Ref,
    Resources,
    StepDefinition,
    Task,
    step,
)
from perfml.pipelines.errors import PipelineError
from perfml.pipelines.states import ACTIVE, TERMINAL, JobRecord, JobState, Reason, RunRecord

if TYPE_CHECKING:
    from perfml.pipelines.catalog import PIPELINES, build, pipeline
    from perfml.pipelines.history import RunHistory
    from perfml.pipelines.local import Training, TrainingRequest, run_training
    from perfml.pipelines.outcomes import GateVerdict, TrainingOutcome
    from perfml.pipelines.parts import PartsSource
    from perfml.pipelines.runner import LocalRunner

_LAZY = {
    "PIPELINES": "perfml.pipelines.catalog",
    "build": "perfml.pipelines.catalog",
    "pipeline": "perfml.pipelines.catalog",
    "RunHistory": "perfml.pipelines.history",
    "Training": "perfml.pipelines.local",
    "TrainingRequest": "perfml.pipelines.local",
    "run_training": "perfml.pipelines.local",
    "GateVerdict": "perfml.pipelines.outcomes",
    "TrainingOutcome": "perfml.pipelines.outcomes",
    "PartsSource": "perfml.pipelines.parts",
    "LocalRunner": "perfml.pipelines.runner",
}
__getattr__ = exports(__name__, _LAZY)

__all__ = [
    "ACTIVE",
    "PIPELINES",
    "TERMINAL",
    "GateVerdict",
    "JobRecord",
    "JobState",
    "LocalRunner",
    "Param",
    "Part",
    "PartsSource",
    "Pipeline",
    "PipelineError",
    "Preconditions",
    "Reason",
    "Ref",
    "Resources",
    "RunHistory",
    "RunRecord",
    "StepDefinition",
    "Task",
    "Training",
    "TrainingOutcome",
    "TrainingRequest",
    "build",
    "pipeline",
    "run_training",
    "step",
]
