"""Imports every built-in detector so that it registers itself."""

from perfml.detectors import iforest, seasonal, streaming  # noqa: F401
