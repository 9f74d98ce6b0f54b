"""Detectors in the registry: register fitted per-series states (or one detector), load a
registered version's states."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from perfml.detectors import Detector
from perfml.detectors.series import SeriesStates, load_series
from perfml.registry.names import Ref
from perfml.registry.records import ModelVersion
from perfml.registry.registry import ModelRegistry


def register_detector(
    registry: ModelRegistry,
    model: str,
    detector: Detector | SeriesStates,
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
    """Save ``detector`` (per-series states, or one detector) in its safe form and register
    it as a new version of ``model``.

    ``features`` are the store metrics the model scores: one for a univariate detector (applied
    to each entity's series of it), all of its columns for a multivariate one.
    """
    with tempfile.TemporaryDirectory(prefix="perfml-register-") as scratch:
        path = Path(scratch) / "model.zip"
        detector.save(path)
        kind = detector.detector if isinstance(detector, SeriesStates) else detector
        if isinstance(detector, SeriesStates) and entities is None:
            entities = detector.entities
        return registry.register(
            model,
            path,
            detector=kind.name,
            params=kind.params.model_dump(mode="json"),
            data_start=data_start,
            data_end=data_end,
            features=list(features),
            entities=entities,
            pipeline_run=pipeline_run,
            metrics=metrics,
            tags=tags,
            description=description,
        )


def load_detector(
    registry: ModelRegistry, ref: str | Ref, mmap: bool = False
) -> tuple[ModelVersion, SeriesStates]:
    """The version ``ref`` resolves to, and its per-series states (artifact digest verified;
    a version of one detector has no series and that detector as its prior). With ``mmap``
    a large bank is memory-mapped from the artifact, copy-on-write."""
    version = registry.resolve(ref)
    path = registry.fetch(Ref(version.model, version=version.version))
    return version, load_series(path, mmap=mmap, verified=True)  # fetch checked its digest
