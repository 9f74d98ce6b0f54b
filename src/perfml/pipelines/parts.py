"""How a job's process opens the parts of the workspace its steps are handed.

A step input bound to :class:`~perfml.pipelines.dsl.Part` (``Part("store")``) is an object, not
a value: the feature store, the registry. A job runs in a process of its own, so the runner
cannot hand it its objects; it hands it a :class:`PartsSource` instead — which function opens
the parts (``factory``, ``module:qualname``) and with what (``config``, JSON) — and the worker
calls it once per attempt, hands each bound input ``provider.part(name)`` and closes the
provider when the step returns. perfml's own source is
:func:`perfml.workspace.open_job_workspace` with the workspace's settings, so a job sees the
same store and registry as the process that started it; the pipelines part names no other
part for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from perfml.pipelines import worker
from perfml.pipelines.dsl import Part, Pipeline, Task
from perfml.pipelines.errors import PipelineError


class PartsProvider(Protocol):
    """What a :class:`PartsSource`'s factory opens: the parts, by name."""

    def part(self, name: str) -> Any: ...


class PartsSource(BaseModel):
    """Where a job's parts come from: ``factory(config)`` returns a context manager whose value
    is a :class:`PartsProvider`. JSON, so it travels in a job's spec."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    factory: str
    """``module:qualname`` of the function that opens the parts."""
    config: dict[str, Any] = {}
    """Its one argument: what to open (for perfml, the workspace's settings)."""


class BadPartsSourceError(PipelineError):
    def __init__(self, factory: str, problem: str) -> None:
        self.factory = factory
        super().__init__(f"the parts factory {factory!r} {problem}")


class NoPartsSourceError(PipelineError):
    """A task takes a part of the workspace, but the runner was given no source of parts."""

    permanent = True

    def __init__(self, pipeline: str, task: str, name: str) -> None:
        super().__init__(
            f"pipeline {pipeline!r}: task {task!r} takes the part {name!r} of the workspace, "
            "but the runner has no parts source (run it from a perfml workspace)"
        )


def part_inputs(task: Task) -> dict[str, str]:
    """``task``'s inputs bound to a :class:`~perfml.pipelines.dsl.Part`: input → part name."""
    return {name: b.name for name, b in task.inputs.items() if isinstance(b, Part)}


def check_parts(pipeline: Pipeline, source: PartsSource | None) -> None:
    """Refuse ``pipeline`` if a task takes a part and there is no ``source`` to open it from."""
    if source is not None:
        return
    for task in pipeline.tasks.values():
        for part in part_inputs(task).values():
            raise NoPartsSourceError(pipeline.name, task.name, part)


def parts_spec(source: PartsSource | None, task: Task) -> dict[str, Any] | None:
    """The ``parts`` entry of a job's spec for ``task`` (None: it takes no part)."""
    inputs = part_inputs(task)
    if not inputs or source is None:
        return None
    return {"source": source.model_dump(), "inputs": inputs}


@contextmanager
def opened_parts(source: Mapping[str, Any], inputs: Mapping[str, str]) -> Iterator[dict[str, Any]]:
    """The objects for ``inputs`` (step input → part name), opened from ``source`` (a
    :class:`PartsSource` as JSON) and closed on exit. Called by the worker."""
    chosen = PartsSource.model_validate(source)
    module, _, qualname = chosen.factory.partition(":")
    if not module or not qualname:
        raise BadPartsSourceError(chosen.factory, "is not module:qualname")
    try:
        factory = worker.resolve(module, qualname)
    except (ImportError, AttributeError) as error:
        raise BadPartsSourceError(chosen.factory, f"cannot be imported ({error})") from None
    opened: AbstractContextManager[PartsProvider] = factory(chosen.config)
    with opened as provider:
        yield {name: provider.part(part) for name, part in inputs.items()}
