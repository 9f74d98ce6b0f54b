"""The controller of a workspace, built from ``perfml.yaml``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from perfml.config import Settings
from perfml.controller.decisions import DecisionLog
from perfml.controller.loop import Controller, Policy, Trainer, pipeline_trainer
from perfml.errors import UsageError
from perfml.featurestore import FeatureStore
from perfml.registry.setup import open_registry


class NoModelsError(UsageError):
    def __init__(self) -> None:
        super().__init__(
            "the controller has no model to check: set controller.models or serving.models "
            "in perfml.yaml (e.g. [cpu_util])"
        )


def controlled_models(settings: Settings) -> list[str]:
    """The model names checked: ``controller.models``, else those ``serving.models`` serve."""
    chosen = settings.controller.models or settings.serving.models
    names = [ref.split("@")[0].split(":")[0] for ref in chosen]
    return list(dict.fromkeys(names))


@contextmanager
def open_controller(settings: Settings, trainer: Trainer | None = None) -> Iterator[Controller]:
    """The workspace's controller; its registry and decision log are closed on exit."""
    models = controlled_models(settings)
    if not models:
        raise NoModelsError()
    fs = settings.featurestore
    registry = open_registry(settings, actor="controller", background_delivery=False)
    decisions = DecisionLog(settings.registry_url)
    try:
        yield Controller(
            registry,
            FeatureStore(settings.store_path, fs.memory_limit, fs.threads),
            decisions,
            trainer or pipeline_trainer(settings),
            models,
            Policy.from_settings(settings),
        )
    finally:
        registry.deliver_events()
        decisions.close()
        registry.close()
