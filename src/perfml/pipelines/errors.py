"""What can go wrong when defining or running a pipeline, each failure carrying its values."""

from __future__ import annotations

from collections.abc import Sequence

from perfml.errors import PerfmlError, UsageError


class PipelineError(PerfmlError):
    """The root of the pipelines' failures."""


class InvalidStepError(PipelineError, UsageError):
    """A ``@step`` was declared with an option it cannot run with."""

    def __init__(self, step: str, option: str, value: object, rule: str) -> None:
        self.step = step
        self.option = option
        self.value = value
        super().__init__(f"step {step!r}: {option}={value!r} is not valid: {rule}")


class InvalidResourcesError(PipelineError, UsageError):
    def __init__(self, resource: str, value: object, rule: str) -> None:
        self.resource = resource
        self.value = value
        super().__init__(f"resource {resource}={value!r} is not valid: {rule}")


class InvalidPipelineError(PipelineError, UsageError):
    """A pipeline's tasks do not form a runnable graph (duplicate names, unknown inputs...)."""

    def __init__(self, pipeline: str, problem: str) -> None:
        self.pipeline = pipeline
        super().__init__(f"pipeline {pipeline!r}: {problem}")


class CycleError(InvalidPipelineError):
    def __init__(self, pipeline: str, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(pipeline, "its tasks form a cycle: " + " -> ".join(cycle))


class MissingInputError(InvalidPipelineError):
    def __init__(self, pipeline: str, task: str, name: str, problem: str) -> None:
        self.task = task
        self.input = name
        super().__init__(pipeline, f"task {task!r} input {name!r}: {problem}")


class ExceedsCapacityError(PipelineError, UsageError):
    """A task asks for more than the runner has in all: it could never be scheduled."""

    def __init__(self, task: str, resource: str, requested: float, capacity: float) -> None:
        self.task = task
        self.resource = resource
        super().__init__(
            f"task {task!r} requests {resource}={requested:g}, more than the runner's whole "
            f"capacity {capacity:g}: it could never be scheduled"
        )


class RunNotFoundError(PipelineError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"pipeline run {run_id!r} not found")


class RunActiveError(PipelineError, UsageError):
    def __init__(self, run_id: str, state: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"pipeline run {run_id!r} is {state}: cancel it (perfml runs cancel) first"
        )
