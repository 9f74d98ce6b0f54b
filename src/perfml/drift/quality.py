"""Model-quality drift: how the production model does on the labelled feedback, window by window.

The server stores the true labels users send back (``/v2/models/<name>/feedback``) as labelled
anomaly windows in the feature store (:class:`~perfml.featurestore.LabelWindow`). For each
window after the reference, the series that carry labels are scored with the model (its
detector from the registry, its anomaly threshold from the version: tag or metric
``threshold``, as the server uses it), and the flagged points are judged against the labels
point by point: precision, recall and F1 (:mod:`perfml.evaluation.scores`, micro-averaged
over the series). Each series is scored from the start of the window, as a freshly loaded
model would.

The model's *score distribution* drifts too before its F1 does: the scores of the same series
in the reference window fix the bin edges, and every later window's scores are measured
against them (``score_drift``, by the measures asked for, ``kl`` by default).

Only univariate models (one feature) are judged here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from perfml.detectors.series import SeriesStates
from perfml.drift.errors import BadDriftRequestError, NoThresholdError
from perfml.drift.histograms import DEFAULT_BINS, BinEdges
from perfml.drift.measures import MEASURES, MeasureRegistry
from perfml.drift.reference import DEFAULT_ALIAS, resolve_name, training_window
from perfml.drift.report import windows_after
from perfml.drift.windows import DEFAULT_EVERY, Window
from perfml.evaluation.nab import window_rows
from perfml.evaluation.scores import DetectionMetrics, detection_metrics, merge_windows
from perfml.featurestore import FeatureStore
from perfml.registry.detector_versions import load_detector
from perfml.registry.records import ModelVersion
from perfml.registry.registry import ModelRegistry
from perfml.timeparse import to_epoch_ms

QUALITY_METRICS = ("precision", "recall", "f1")
"""The figures exported as ``perfml_model_quality{metric}``."""


@dataclass(frozen=True)
class QualityRecord:
    """The model's figures on the labelled series of one window."""

    model: str
    version: int
    window: str
    start: datetime
    end: datetime
    precision: float
    recall: float
    f1: float
    points: int
    series: int
    labelled_windows: int
    score_drift: dict[str, float] = field(default_factory=dict)

    def figure(self, metric: str) -> float:
        return float(getattr(self, metric))

    def to_json(self) -> dict[str, Any]:
        found = asdict(self)
        found.update(start=self.start.isoformat(), end=self.end.isoformat())
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in found.items()
        }


@dataclass(frozen=True)
class QualityReport:
    """The production model's quality in every window after its reference."""

    model: str
    version: int
    feature: str
    threshold: float
    reference: Window
    records: tuple[QualityRecord, ...]

    def latest(self) -> QualityRecord | None:
        return self.records[-1] if self.records else None

    def to_arrow(self) -> pa.Table:
        rows = []
        for r in self.records:
            row = asdict(r)
            drift = row.pop("score_drift")
            rows.append(row | {f"score_{name}": value for name, value in drift.items()})
        return pa.Table.from_pylist(rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "feature": self.feature,
            "threshold": self.threshold,
            "reference": self.reference.label,
            "records": [r.to_json() for r in self.records],
        }


def quality_report(
    store: FeatureStore,
    registry: ModelRegistry,
    model: str,
    *,
    alias: str = DEFAULT_ALIAS,
    every: str = DEFAULT_EVERY,
    reference: Window | None = None,
    end: datetime | None = None,
    threshold: float | None = None,
    methods: Sequence[str] = ("kl",),
    bins: int = DEFAULT_BINS,
    measures: MeasureRegistry = MEASURES,
) -> QualityReport:
    """The quality of ``model`` (``name`` → ``name@alias``, or a full reference) per window."""
    version, detector = load_detector(registry, resolve_name(model, alias))
    if detector.detector.multivariate or len(version.features) != 1:
        raise BadDriftRequestError(
            "model", version.ref, "a univariate model (one feature) for quality drift"
        )
    limit = _threshold(version) if threshold is None else float(threshold)
    base = training_window(version) if reference is None else reference
    metric = version.features[0]
    labelled = store.windows([metric])
    entities = sorted({w.entity for w in labelled})
    windows = windows_after(store, base, every, end, [metric])
    chosen = [measures.get(name) for name in methods]
    base_scores, _ = _score(store, detector, metric, entities, base, labelled, limit)
    edges = BinEdges.from_reference(base_scores, bins) if base_scores.size else None
    records = []
    for window in windows:
        scores, found = _score(store, detector, metric, entities, window, labelled, limit)
        summary = found.summary()
        drift = {
            m.name: m.between(edges.histogram(base_scores), edges.histogram(scores))
            if edges is not None and scores.size
            else math.nan
            for m in chosen
        }
        records.append(
            QualityRecord(
                model=version.model,
                version=version.version,
                window=window.label,
                start=window.start_time,
                end=window.end_time,
                precision=summary.point_precision if found.point.tp + found.point.fp else math.nan,
                recall=summary.point_recall if found.event.windows else math.nan,
                f1=summary.point_f1 if found.event.windows else math.nan,
                points=int(scores.size),
                series=len(entities),
                labelled_windows=found.event.windows,
                score_drift=drift,
            )
        )
    return QualityReport(version.model, version.version, metric, limit, base, tuple(records))


def _threshold(version: ModelVersion) -> float:
    found = version.threshold
    if found is None:
        raise NoThresholdError(version.ref)
    return found


def _score(
    store: FeatureStore,
    states: SeriesStates,
    metric: str,
    entities: list[str],
    window: Window,
    labelled: Sequence[Any],
    threshold: float,
) -> tuple[np.ndarray, DetectionMetrics]:
    """All scores of the labelled series in ``window`` (each from its own state, learning as
    it goes), and their detection figures."""
    if not entities:
        return np.zeros(0), DetectionMetrics.combine([])
    points = store.read([metric], entities, start=window.start_time, end=window.end_time)
    names = np.asarray(points.column("entity").to_pylist(), dtype=object)
    ts = points.column("ts").cast(pa.int64()).to_numpy()
    values = points.column("value").to_numpy()
    cuts = np.flatnonzero(names[1:] != names[:-1]) + 1 if names.size else np.zeros(0, int)
    lo, hi = to_epoch_ms(window.start_time), to_epoch_ms(window.end_time)
    names_found, pieces = [], []
    for first, last in zip([0, *cuts], [*cuts, names.size], strict=True):
        if last > first:
            names_found.append(str(names[first]))
            pieces.append(slice(int(first), int(last)))
    replayed = states.replay(names_found, [(ts[rows], values[rows]) for rows in pieces])
    scores, parts = [], []
    for entity, rows, found in zip(names_found, pieces, replayed, strict=True):
        spans = [
            (max(w.start, lo), min(w.end, hi - 1))
            for w in labelled
            if w.entity == entity and w.end >= lo and w.start < hi
        ]
        parts.append(
            detection_metrics(found, threshold, merge_windows(window_rows(ts[rows], spans)))
        )
        scores.append(found)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    return all_scores, DetectionMetrics.combine(parts)
