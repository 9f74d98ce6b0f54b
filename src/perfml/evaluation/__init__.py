"""Offline evaluation of anomaly detectors: NAB scoring and the classic detection metrics."""
