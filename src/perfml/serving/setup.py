"""The inference server of a workspace, assembled from ``perfml.yaml``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from fastapi import FastAPI

from perfml.config import Settings
from perfml.featurestore import FeatureStore
from perfml.registry.setup import open_registry
from perfml.serving.dataplane import DataPlane
from perfml.serving.repository import ModelRepository
from perfml.serving.rest import build_app
from perfml.serving.telemetry import ServingMetrics
from perfml.timeparse import parse_duration


def serving_app(
    settings: Settings, refs: Sequence[str], metrics: ServingMetrics | None = None
) -> FastAPI:
    """The server for ``refs`` as ``settings`` describe it: the registry, the model repository
    following the aliases, the feature store for feedback, the metrics, the bearer token from
    the environment variable ``serving.token_env`` (none if unset). One per worker process."""
    serving = settings.serving
    meter = metrics or ServingMetrics.from_environment()
    repository = ModelRepository(
        open_registry(settings),
        refs,
        poll_interval=parse_duration(serving.poll_interval).total_seconds(),
        on_loaded=meter.model_loaded,
        on_load_failed=lambda m, v, _: meter.model_load_failed(m, "" if v is None else v),
    )
    fs = settings.featurestore
    store = FeatureStore(settings.store_path, fs.memory_limit, fs.threads)
    return build_app(
        DataPlane(repository, store),
        metrics=meter,
        token=os.environ.get(serving.token_env) or None,
        max_body_bytes=serving.max_body_bytes,
    )
