"""The promotion gate's evaluator: both versions scored on the same recent labelled data.

A version's model covers store metrics (its ``features``): a univariate model scores each
entity's series of its one metric, a multivariate one each entity's aligned frame of all of
them — each entity from its own state, as it runs live. The evaluator reads the store's
points and labelled windows in ``[start, end)`` once, scores them with each version it is
asked about, and reports the figures the gate compares: the NAB standard score (normalised,
at the best threshold over the window's series) and the point-wise and event-wise F1 at that
threshold. Every version sees the same rows and labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from perfml.detectors import Detector
from perfml.detectors.frames import Floats, as_arrays
from perfml.detectors.series import SeriesStates
from perfml.evaluation.nab import PROFILES, EvaluationError, WindowRows, score_corpus, window_rows
from perfml.evaluation.scores import DetectionMetrics, detection_metrics, merge_windows
from perfml.featurestore import FeatureStore
from perfml.registry.detector_versions import load_detector
from perfml.registry.records import ModelVersion
from perfml.registry.registry import ModelRegistry
from perfml.timeparse import parse_duration, to_epoch_ms


class GateDataError(EvaluationError):
    """The store holds nothing the gate could compare versions on."""

    def __init__(self, what: str, start: datetime, end: datetime) -> None:
        super().__init__(
            f"no {what} in the feature store between {start:%Y-%m-%d %H:%M} and "
            f"{end:%Y-%m-%d %H:%M}: the gate cannot compare versions (label anomalies, widen "
            "the gate window, or promote with --force)"
        )


@dataclass
class LabelledWindowEvaluator:
    """``evaluator(version) -> figures`` for :meth:`ModelRegistry.promote`."""

    registry: ModelRegistry | None
    store: FeatureStore
    start: datetime
    end: datetime
    step: str = "5m"
    _frames: dict[tuple[str, ...], list[tuple[str, pa.Table, list[WindowRows]]]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def recent(
        cls, registry: ModelRegistry, store: FeatureStore, window: str | timedelta
    ) -> LabelledWindowEvaluator:
        """The last ``window`` of data in the store."""
        last = store.summary().last
        if last is None:
            raise EvaluationError("the feature store is empty: the gate has nothing to compare")
        end = last + timedelta(milliseconds=1)
        return cls(registry, store, end - parse_duration(window, "gate window"), end)

    def __call__(self, version: ModelVersion) -> dict[str, float]:
        if self.registry is None:
            raise EvaluationError("this evaluator has no registry to load versions from")
        _, detector = load_detector(self.registry, version.ref)
        if not version.features:
            raise EvaluationError(f"{version.ref} records no features: which data does it score?")
        return self.figures(detector, version.features)

    def figures(self, model: SeriesStates | Detector, features: Sequence[str]) -> dict[str, float]:
        """The gate's figures of ``model`` scoring ``features`` over the window: each entity
        from its own state (the fleet prior's if the model never saw it), learning as it goes,
        as it would run live (a model not registered yet — the training pipeline's candidate
        — is judged the same way; one detector is the prior of no series)."""
        states = model if isinstance(model, SeriesStates) else SeriesStates.empty(model)
        series = self._series(tuple(features), states.detector.multivariate)
        columns = states.detector.columns
        arrays = [as_arrays(frame, states.detector.name, columns)[:2] for _, frame, _ in series]
        replayed = states.replay([entity for entity, _, _ in series], arrays)
        scored: dict[str, tuple[Floats, list[WindowRows]]] = {}
        for (entity, _, windows), scores in zip(series, replayed, strict=True):
            scored[entity] = (scores, windows)
        if not any(windows for _, windows in scored.values()):
            raise GateDataError("labelled anomaly windows", self.start, self.end)
        nab = score_corpus(scored, PROFILES["standard"])
        detected = DetectionMetrics.combine(
            detection_metrics(values, nab.threshold, windows) for values, windows in scored.values()
        )
        summary = detected.summary()
        return {
            "nab_standard": nab.score,
            "event_f1": summary.event_f1,
            "point_f1": summary.point_f1,
            "pa_k_f1": summary.pa_k_f1,
            "threshold": nab.threshold,
        }

    def _series(
        self, features: tuple[str, ...], multivariate: bool
    ) -> list[tuple[str, pa.Table, list[WindowRows]]]:
        key = (*features, str(multivariate))
        if key not in self._frames:
            self._frames[key] = self._read(features, multivariate)
        return self._frames[key]

    def _read(
        self, features: tuple[str, ...], multivariate: bool
    ) -> list[tuple[str, pa.Table, list[WindowRows]]]:
        metrics = list(features) if multivariate else [features[0]]
        if multivariate:
            wide = self.store.align(metrics, self.step, start=self.start, end=self.end)
            groups = _split(wide)
        else:
            long = self.store.read(metrics, start=self.start, end=self.end)
            groups = {
                entity: table.select(["ts", "value"]) for entity, table in _split(long).items()
            }
        if not groups:
            raise GateDataError(f"points of {', '.join(metrics)}", self.start, self.end)
        lo, hi = to_epoch_ms(self.start), to_epoch_ms(self.end)
        found = []
        for entity, frame in sorted(groups.items()):
            spans = [
                (max(w.start, lo), min(w.end, hi))
                for w in self.store.windows(metrics, [entity])
                if w.end >= lo and w.start < hi
            ]
            ts = frame.column("ts").cast(pa.int64()).to_numpy()
            found.append((entity, frame, merge_windows(window_rows(ts, spans))))
        return found


def _split(table: pa.Table) -> dict[str, pa.Table]:
    """Rows per entity (the table is sorted by entity)."""
    if table.num_rows == 0:
        return {}
    entities = np.asarray(table.column("entity").to_pylist(), dtype=object)
    change = np.flatnonzero(entities[1:] != entities[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(entities)]))
    return {
        str(entities[s]): table.slice(int(s), int(e - s)).drop(["entity"])
        for s, e in zip(starts, ends, strict=True)
    }
