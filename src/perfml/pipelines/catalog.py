"""The pipelines perfml knows by name: the built-in ones (training, batch scoring, backfill)
and any a plugin registers, each a function that builds the
:class:`~perfml.pipelines.dsl.Pipeline`.

>>> sorted(PIPELINES.names())
['backfill', 'batch-scoring', 'training']
>>> build("training").order
('query', 'preprocess', 'train', 'evaluate', 'register')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from perfml.pipelines.dsl import Pipeline
from perfml.pipelines.errors import PipelineError
from perfml.plugins import PluginTakenError, Registry, UnknownPluginError

PipelineFactory = Callable[..., Pipeline]
"""Builds a pipeline; every argument has a default."""
F = TypeVar("F", bound=PipelineFactory)


class UnknownPipelineError(PipelineError, UnknownPluginError):
    """No pipeline of that name is registered."""


class PipelineTakenError(PipelineError, PluginTakenError):
    """Two pipelines were registered under one name."""


PIPELINES: Registry[PipelineFactory] = Registry(
    "pipeline",
    unknown=UnknownPipelineError,
    taken=PipelineTakenError,
    builtins="perfml.pipelines.builtin",
)
"""The default registry: the built-in pipelines (registered on first use) and any a plugin
adds with :func:`pipeline`."""


def pipeline(name: str, registry: Registry[PipelineFactory] | None = None) -> Callable[[F], F]:
    """Decorator: register the function building the pipeline ``name``."""

    def add(factory: F) -> F:
        (PIPELINES if registry is None else registry).add(name, factory)
        return factory

    return add


def build(name: str, registry: Registry[PipelineFactory] | None = None, **options: Any) -> Pipeline:
    """The pipeline ``name``, built with ``options``."""
    return (PIPELINES if registry is None else registry).get(name)(**options)
