"""Anomaly detectors: one interface (:class:`Detector`), a registry, a safe saved form.

Detectors are plugins in :data:`DETECTORS` (:func:`register` adds one; the built-ins of
:mod:`.builtin` on first use); :mod:`.checks` is the conformance suite a plugin's author runs.
"""

from perfml.detectors.base import (
    DETECTORS,
    Detector,
    DetectorParams,
    available,
    create,
    load,
    register,
)
from perfml.detectors.errors import (
    ArtifactError,
    BadInputError,
    BadParamsError,
    DetectorError,
    DetectorNameTakenError,
    NotFittedError,
    UnknownDetectorError,
)

DEFAULT_DETECTOR = "streaming"
"""The detector perfml trains when none is named."""

__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "ArtifactError",
    "BadInputError",
    "BadParamsError",
    "Detector",
    "DetectorError",
    "DetectorNameTakenError",
    "DetectorParams",
    "NotFittedError",
    "UnknownDetectorError",
    "available",
    "create",
    "load",
    "register",
]
