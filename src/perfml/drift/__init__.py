"""Drift: how far each window's data has moved from what the production model learnt.

Per-feature histograms over calendar windows (monthly by default), bin edges fixed from the
reference window, measured with KL divergence (plus PSI, Jensen–Shannon and Wasserstein);
histograms are made per feature-store partition in one DuckDB scan and merged, so the work
shards by entity. Model-quality drift comes from the labelled feedback the server stores.
"""

from perfml.drift.collector import DriftCollector
from perfml.drift.entities import EntityDrift, EntityFigure, entity_drift
from perfml.drift.errors import (
    BadDriftRequestError,
    DriftError,
    EdgesMismatchError,
    EmptyReferenceError,
    NoReferenceError,
    NoThresholdError,
    UnknownMeasureError,
)
from perfml.drift.histograms import DEFAULT_BINS, BinEdges, Histogram
from perfml.drift.measures import (
    MEASURES,
    SMOOTHING,
    Measure,
    MeasureRegistry,
    measure_registry,
    smoothed_shares,
)
from perfml.drift.quality import QualityRecord, QualityReport, quality_report
from perfml.drift.reference import model_reference, training_window
from perfml.drift.report import (
    DEFAULT_METHODS,
    DEFAULT_THRESHOLDS,
    DriftRecord,
    DriftReport,
    compare,
    drift_report,
)
from perfml.drift.scan import partition_histograms, reference_edges, window_histograms
from perfml.drift.windows import Window, between, calendar_windows, parse_span, window_of

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_METHODS",
    "DEFAULT_THRESHOLDS",
    "MEASURES",
    "SMOOTHING",
    "BadDriftRequestError",
    "BinEdges",
    "DriftCollector",
    "DriftError",
    "DriftRecord",
    "DriftReport",
    "EdgesMismatchError",
    "EmptyReferenceError",
    "EntityDrift",
    "EntityFigure",
    "Histogram",
    "Measure",
    "MeasureRegistry",
    "NoReferenceError",
    "NoThresholdError",
    "QualityRecord",
    "QualityReport",
    "UnknownMeasureError",
    "Window",
    "between",
    "calendar_windows",
    "compare",
    "drift_report",
    "entity_drift",
    "measure_registry",
    "model_reference",
    "parse_span",
    "partition_histograms",
    "quality_report",
    "reference_edges",
    "smoothed_shares",
    "training_window",
    "window_histograms",
    "window_of",
]
