"""Pipelines: steps as plain functions, DAGs of them, and a local runner with a run history.

Define with :func:`~perfml.pipelines.dsl.step` and :class:`~perfml.pipelines.dsl.Pipeline`
(light, importable anywhere); run with :class:`perfml.pipelines.runner.LocalRunner` over a
:class:`perfml.pipelines.history.RunHistory`. Job states and reasons are in
:mod:`perfml.pipelines.states`.
"""

from perfml.pipelines.dsl import (
    Param,
    Pipeline,
    Preconditions,
    Ref,
    Resources,
    StepDefinition,
    Task,
    step,
)
from perfml.pipelines.states import ACTIVE, TERMINAL, JobRecord, JobState, Reason, RunRecord

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "JobRecord",
    "JobState",
    "Param",
    "Pipeline",
    "Preconditions",
    "Reason",
    "Ref",
    "Resources",
    "RunRecord",
    "StepDefinition",
    "Task",
    "step",
]
