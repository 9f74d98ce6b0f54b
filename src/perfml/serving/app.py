"""The inference server's app, assembled from its parts: the registry, the feature store (for
feedback), the models to serve and ``serving:``'s settings."""

from __future__ import annotations

import os
from collections.abc import Sequence

from fastapi import FastAPI

from perfml.config import ServingSettings
from perfml.featurestore import FeatureStore
from perfml.registry import ModelRegistry
from perfml.registry.names import parse_ref
from perfml.serving.dataplane import DataPlane
from perfml.serving.errors import UnknownServedModelError
from perfml.serving.repository import ModelRepository
from perfml.serving.rest import build_app
from perfml.serving.telemetry import ServingMetrics
from perfml.timeparse import parse_duration


def check_served(registry: ModelRegistry, refs: Sequence[str]) -> None:
    """Fail (:class:`UnknownServedModelError`) if a reference names a model the registry does
    not have: a server of it would only answer 404. A missing alias is waited for."""
    known = [model.name for model in registry.models()]
    for ref in refs:
        name = parse_ref(ref).model
        if name not in known:
            raise UnknownServedModelError(name, known)


def inference_app(
    registry: ModelRegistry,
    store: FeatureStore,
    refs: Sequence[str],
    serving: ServingSettings,
    metrics: ServingMetrics | None = None,
) -> FastAPI:
    """The server for ``refs``: the model repository following their aliases in ``registry``
    (polled every ``serving.poll_interval`` besides the registry's events), ``store`` for
    feedback, the metrics (:meth:`ServingMetrics.from_environment` unless given), the bearer
    token from the environment variable ``serving.token_env`` (none if unset). One per worker
    process."""
    meter = metrics or ServingMetrics.from_environment()
    repository = ModelRepository(
        registry,
        refs,
        poll_interval=parse_duration(serving.poll_interval).total_seconds(),
        on_loaded=meter.model_loaded,
        on_load_failed=lambda m, v, _: meter.model_load_failed(m, "" if v is None else v),
    )
    return build_app(
        DataPlane(repository, store),
        metrics=meter,
        token=os.environ.get(serving.token_env) or None,
        max_body_bytes=serving.max_body_bytes,
    )
