"""Anomaly detectors: one interface (:class:`Detector`), a registry, a safe saved form."""

from perfml.detectors.base import Detector, DetectorParams, available, create, load, register

DEFAULT_DETECTOR = "streaming"
"""The detector perfml trains when none is named."""

__all__ = [
    "DEFAULT_DETECTOR",
    "Detector",
    "DetectorParams",
    "available",
    "create",
    "load",
    "register",
]
