"""perfml's built-in detectors: importing this module registers them in the default registry."""

from __future__ import annotations

from perfml.detectors.base import Detector
from perfml.detectors.iforest import IsolationForestDetector
from perfml.detectors.streaming import StreamingDetector
from perfml.plugins import Registry

BUILTIN: tuple[type[Detector], ...] = (StreamingDetector, IsolationForestDetector)
"""Every detector perfml provides."""


def builtin_detectors() -> Registry[type[Detector]]:
    """A fresh registry of perfml's built-in detectors only (what the conformance suite checks
    perfml against, whatever plugins the default registry holds besides)."""
    from perfml.detectors.errors import DetectorNameTakenError, UnknownDetectorError

    fresh: Registry[type[Detector]] = Registry(
        "detector", unknown=UnknownDetectorError, taken=DetectorNameTakenError
    )
    for cls in BUILTIN:
        fresh.register(cls)
    return fresh
