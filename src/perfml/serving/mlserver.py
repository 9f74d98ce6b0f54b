"""An MLServer runtime that serves a perfml model version: the same artifact on Seldon or KServe.

Install the optional extra (``pip install 'perfml[mlserver]'``) and point a
``model-settings.json`` at :class:`PerfmlRuntime` (``perfml serve export`` writes one)::

    {
      "name": "cpu",
      "implementation": "perfml.serving.mlserver.PerfmlRuntime",
      "parameters": {
        "uri": "./model.zip",
        "version": "3",
        "extra": {"sha256": "…", "record": {…the registry's version record…}}
      }
    }

``uri`` is the saved detector (the registry's artifact), relative to the settings file or
absolute; ``extra.sha256`` is checked against it before it is read. Without a file, the
registry coordinates load it instead: ``uri`` ``perfml:NAME:VERSION`` and ``extra.config``, the
path of a ``perfml.yaml`` whose registry holds it (the digest is checked there too).

Requests are decoded and answers encoded by perfml's own data plane
(:func:`~perfml.serving.dataplane.decode`, :func:`~perfml.serving.dataplane.encode`), so
MLServer answers exactly what ``perfml serve`` answers: ``anomaly_score`` (FP64) and, when the
version records a threshold, ``is_anomaly`` (BOOL).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest as MLServerRequest
from mlserver.types import InferenceResponse as MLServerResponse
from mlserver.utils import get_model_uri

from perfml.detectors.errors import BadInputError, NotFittedError
from perfml.detectors.series import SeriesStates, load_series
from perfml.errors import PerfmlError
from perfml.registry.artifacts import verify
from perfml.registry.errors import ArtifactIntegrityError
from perfml.registry.names import parse_ref
from perfml.registry.records import ModelVersion
from perfml.serving.dataplane import decode, encode, score_rows
from perfml.serving.errors import (
    InferenceFailedError,
    ServingError,
    UnprocessableInputError,
)
from perfml.serving.repository import LoadedModel
from perfml.serving.types import InferenceRequest

REGISTRY_SCHEME = "perfml:"
"""``uri`` prefix of registry coordinates: ``perfml:NAME:VERSION``."""


class RuntimeSettingsError(PerfmlError):
    """The model settings do not say which perfml model version to load, or say it wrongly."""

    def __init__(self, model: str, problem: str) -> None:
        self.model = model
        super().__init__(f"model-settings.json of {model!r}: {problem}")


class PerfmlRuntime(MLModel):  # type: ignore[misc]  # mlserver ships no type information
    """Serve one perfml model version under MLServer, answering as perfml's own data plane."""

    async def load(self) -> bool:
        parameters = self.settings.parameters
        if parameters is None or not parameters.uri:
            raise RuntimeSettingsError(self.name, "parameters.uri is required")
        extra: dict[str, Any] = dict(parameters.extra or {})
        uri: str = parameters.uri
        if uri.startswith(REGISTRY_SCHEME):
            version, detector = self._load_from_registry(uri, extra)
        else:
            version, detector = await self._load_from_file(extra)
        self._loaded = LoadedModel(self.name, version.ref, version, detector, time.time())
        return True

    async def _load_from_file(self, extra: dict[str, Any]) -> tuple[ModelVersion, SeriesStates]:
        path = await get_model_uri(self.settings)
        expected = extra.get("sha256")
        if not isinstance(expected, str) or not expected:
            raise RuntimeSettingsError(self.name, "parameters.extra.sha256 is required")
        verify(Path(path), expected, f"{path} (pinned by the model settings)")
        record = extra.get("record")
        if not isinstance(record, dict):
            raise RuntimeSettingsError(self.name, "parameters.extra.record is required")
        return _version_from_record(record), load_series(path)

    def _load_from_registry(
        self, uri: str, extra: dict[str, Any]
    ) -> tuple[ModelVersion, SeriesStates]:
        from perfml.registry.detector_versions import load_detector
        from perfml.workspace import Workspace  # MLServer's entry point: it builds its parts

        ref = parse_ref(uri.removeprefix(REGISTRY_SCHEME))
        if ref.version is None:
            raise RuntimeSettingsError(self.name, f"{uri!r} does not pin a version (NAME:VERSION)")
        config = extra.get("config")
        with Workspace.load(Path(config) if isinstance(config, str) else None) as workspace:
            registry = workspace.registry(background_delivery=False)
            version, detector = load_detector(registry, ref)  # the registry checks the digest
        expected = extra.get("sha256")
        if isinstance(expected, str) and expected != version.digest:
            raise ArtifactIntegrityError(uri, expected, version.digest)
        return version, detector

    async def predict(self, payload: MLServerRequest) -> MLServerResponse:
        model = self._loaded
        try:
            request = InferenceRequest.model_validate(payload.model_dump(exclude_none=True))
            ts, values, entities = decode(request, list(model.detector.columns or ["value"]))
            try:
                scores = score_rows(model, ts, values, entities)
            except BadInputError as exc:
                raise UnprocessableInputError(str(exc)) from None
            except NotFittedError as exc:
                raise InferenceFailedError(model.name, model.version.version, str(exc)) from None
            response = encode(model, request, np.asarray(scores, dtype=np.float64))
        except ServingError as exc:
            raise MLServerError(str(exc), status_code=exc.status_code) from None
        return MLServerResponse.model_validate(response.model_dump(exclude_none=True))


def _version_from_record(record: dict[str, Any]) -> ModelVersion:
    """The :class:`ModelVersion` a ``ModelVersion.to_json()`` record describes."""
    fields = dict(record)
    for key in ("data_start", "data_end", "created_at"):
        raw = fields.get(key)
        fields[key] = None if raw is None else datetime.fromisoformat(raw)
    fields["aliases"] = tuple(fields.get("aliases", ()))
    if fields.get("entities") is not None:
        fields["entities"] = tuple(fields["entities"])
    return ModelVersion(**fields)
