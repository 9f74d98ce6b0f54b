"""Drift and model quality as Prometheus gauges, from the latest reports.

- ``perfml_feature_drift{feature,method}``: each fleet-wide feature's value of each measure in
  the latest window of the latest :class:`~perfml.drift.report.DriftReport` (a feature with no
  point in that window is left out rather than exported as NaN);
- ``perfml_model_quality{model,version,metric}``: the production model's ``precision``,
  ``recall`` and ``f1`` in the latest window of the latest
  :class:`~perfml.drift.quality.QualityReport` (a figure without labels to judge it is left out).

The rules ``FeatureDriftHigh`` (``max by (feature) (perfml_feature_drift{method="kl"}) > 0.1``)
and ``ModelQualityDegraded`` (``perfml_model_quality{metric="f1"} < 0.5``) read them. The
collector holds the reports it was last given (:meth:`DriftCollector.update`) and reads nothing
itself, so a scrape costs nothing::

    registry = CollectorRegistry()
    collector = DriftCollector()
    registry.register(collector)
    collector.update(drift=drift_report(store, reference))
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from perfml.drift.quality import QUALITY_METRICS, QualityReport
from perfml.drift.report import DriftReport

FEATURE_DRIFT = "perfml_feature_drift"
MODEL_QUALITY = "perfml_model_quality"


class DriftCollector(Collector):
    """A prometheus_client collector of the latest drift and quality reports."""

    def __init__(
        self, drift: DriftReport | None = None, quality: QualityReport | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._drift = drift
        self._quality = quality

    def update(
        self, *, drift: DriftReport | None = None, quality: QualityReport | None = None
    ) -> None:
        """Replace the reports given (the other stays as it was)."""
        with self._lock:
            if drift is not None:
                self._drift = drift
            if quality is not None:
                self._quality = quality

    def describe(self) -> Iterator[Metric]:
        yield from _families()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            drift, quality = self._drift, self._quality
        feature_drift, model_quality = _families()
        if drift is not None:
            for method in drift.methods:
                for feature, value in sorted(drift.latest(method).items()):
                    if not math.isnan(value):
                        feature_drift.add_metric([feature, method], value)
        latest = None if quality is None else quality.latest()
        if quality is not None and latest is not None:
            for metric in QUALITY_METRICS:
                value = latest.figure(metric)
                if not math.isnan(value):
                    model_quality.add_metric([quality.model, str(quality.version), metric], value)
        yield feature_drift
        yield model_quality


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            FEATURE_DRIFT,
            "Drift of a feature in the latest window against the reference window, by measure.",
            labels=["feature", "method"],
        ),
        GaugeMetricFamily(
            MODEL_QUALITY,
            "Quality of the production model on the labelled feedback of the latest window.",
            labels=["model", "version", "metric"],
        ),
    )
