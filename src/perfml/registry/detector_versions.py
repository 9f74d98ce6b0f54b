"""Detectors in the registry: register a fitted detector, load a registered one."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from perfml import detectors
from perfml.detectors import Detector
from perfml.registry.names import Ref
from perfml.registry.records import ModelVersion
from perfml.registry.registry import ModelRegistry


def register_detector(
    registry: ModelRegistry,
    model: str,
    detector: Detector,
    *,
    features: Sequence[str],
    entities: Sequence[str] | None = None,
    data_start: datetime | None = None,
    data_end: datetime | None = None,
    pipeline_run: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    description: str = "",
) -> ModelVersion:
    """Save ``detector`` in its safe form and register it as a new version of ``model``.

    ``features`` are the store metrics the model scores: one for a univariate detector (applied
    to each entity's series of it), all of its columns for a multivariate one.
    """
    with tempfile.TemporaryDirectory(prefix="perfml-register-") as scratch:
        path = Path(scratch) / "model.zip"
        detector.save(path)
        return registry.register(
            model,
            path,
            detector=detector.name,
            params=detector.params.model_dump(mode="json"),
            data_start=data_start,
            data_end=data_end,
            features=list(features),
            entities=entities,
            pipeline_run=pipeline_run,
            metrics=metrics,
            tags=tags,
            description=description,
        )


def load_detector(registry: ModelRegistry, ref: str | Ref) -> tuple[ModelVersion, Detector]:
    """The version ``ref`` resolves to, and its detector (artifact digest verified)."""
    version = registry.resolve(ref)
    path = registry.fetch(Ref(version.model, version=version.version))
    return version, detectors.load(path)
