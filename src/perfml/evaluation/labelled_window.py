"""The promotion gate's evaluator: versions judged on the same recent labelled data, each at
a threshold chosen before the rows it is judged on.

A version's model covers store metrics (its ``features``): a univariate model scores each
entity's series of its one metric, a multivariate one each entity's aligned frame of all of
them — each entity from its own state, as it runs live. The evaluator reads the store's
points and labelled windows in ``[start, end)`` once and cuts that window by time into a
**validation slice** (its first ``validation`` share) and a **test slice** (the rest). For each
version it is asked about:

1. each entity's rows are replayed in time order from its own state, learning as they go,
   the validation slice's first, so each series reaches the test slice having learnt every
   row before it;
2. the threshold is chosen on the validation slice alone, by NAB's sweep (standard profile)
   over its series; for a detector with a calibrated default threshold, the one nearest that
   default among those scoring within one false alarm of the best (a few labelled windows
   cannot tell them apart, and the sweep's own pick sits at the plateau's edge). A validation
   slice without a labelled window has nothing to sweep on:
   the threshold is then the one recorded on the version (:attr:`ThresholdRule.RECORDED`), or
   for a version without one the detector's own calibrated default
   (:attr:`~perfml.detectors.Detector.default_threshold`, :attr:`ThresholdRule.DEFAULT`), or
   for a detector without one the score exceeded by :data:`DEFAULT_ALARM_SHARE` of the
   validation rows (:attr:`ThresholdRule.QUANTILE`); the figures' note says which;
3. the figures are measured on the test slice at that threshold — NAB standard (normalised),
   event-wise, point-wise and PA%K F1 — and the scores of validation rows are not judged. A
   test slice without a labelled window leaves the threshold alone (the training pipeline
   still records it) and the gate cannot compare versions (:class:`GateDataError`).

Nothing is swept on the rows the figures judge, so they are what the version would have
shown live with its threshold fixed beforehand; every version sees the same rows, labels and
split. Both slices are scored without NAB's probationary period (every series starts from a
learnt state, with nothing left to learn first); a labelled window across the split counts in
each slice for the rows it holds there.

>>> from datetime import UTC, datetime
>>> april = datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 5, 1, tzinfo=UTC)
>>> f"{LabelledWindowEvaluator(None, store=None, start=april[0], end=april[1]).split:%d %H:%M}"
'16 00:00'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

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

DEFAULT_VALIDATION = 0.5
"""The share of the gate's window, its first part, on which each threshold is chosen."""
DEFAULT_ALARM_SHARE = 0.01
"""Without a labelled window to sweep on, no recorded threshold and no default of the
detector's, a version's threshold is the score its top 1% of validation rows reach."""


class GateDataError(EvaluationError):
    """The store holds nothing the gate could compare versions on."""

    def __init__(self, what: str, start: datetime, end: datetime) -> None:
        super().__init__(
            f"no {what} in the feature store between {start:%Y-%m-%d %H:%M} and "
            f"{end:%Y-%m-%d %H:%M}: the gate cannot compare versions (label anomalies, widen "
            "the gate window, or promote with --force)"
        )


class BadValidationShareError(EvaluationError):
    def __init__(self, share: float) -> None:
        super().__init__(
            f"validation share {share!r}: the validation slice must be a share of the gate's "
            "window strictly between 0 and 1"
        )


class ThresholdRule(StrEnum):
    """How a version's threshold was chosen for the test slice."""

    VALIDATION = "validation"
    """NAB's sweep over the validation slice's series."""
    RECORDED = "recorded"
    """The validation slice has no labelled window: the threshold recorded on the version."""
    DEFAULT = "default"
    """No labelled window and no recorded threshold: the detector's calibrated default."""
    QUANTILE = "quantile"
    """No labelled window, no recorded threshold, no default: the score its top
    :data:`DEFAULT_ALARM_SHARE` of validation rows reach."""


@dataclass(frozen=True)
class WindowFigures:
    """One version's figures on the test slice, and how its threshold was chosen."""

    figures: dict[str, float]
    """``nab_standard``, ``event_f1``, ``point_f1``, ``pa_k_f1`` on the test slice (when it
    holds a labelled window), the ``threshold`` they were measured at, and the labelled
    windows of each slice (``validation_windows``, ``test_windows``)."""
    rule: ThresholdRule
    note: str
    """One sentence: where the threshold came from and which rows the figures judge."""

    @property
    def judged(self) -> bool:
        """Whether the test slice held a labelled window to judge the version on."""
        return self.figures["test_windows"] > 0


@dataclass(frozen=True)
class _Series:
    """One entity's rows over the whole window and its labelled windows in each slice."""

    entity: str
    frame: pa.Table
    cut: int
    """Rows before the split: the validation slice."""
    validation: list[WindowRows]
    test: list[WindowRows]
    """Counted from the test slice's first row."""


@dataclass
class LabelledWindowEvaluator:
    """``evaluator(version) -> figures`` for :meth:`ModelRegistry.promote` (see the module's
    docstring); :attr:`notes` keeps, by version, how each threshold was chosen."""

    registry: ModelRegistry | None
    store: FeatureStore
    start: datetime
    end: datetime
    step: str = "5m"
    validation: float = DEFAULT_VALIDATION
    judged: dict[str, SeriesStates] = field(default_factory=dict)
    """States to judge for a version (by ref) instead of its artifact's: a training run's
    candidate is judged as it was before it learnt this window."""
    notes: dict[str, str] = field(default_factory=dict)
    _frames: dict[tuple[str, ...], list[_Series]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.validation < 1.0:
            raise BadValidationShareError(self.validation)

    @classmethod
    def recent(
        cls,
        registry: ModelRegistry,
        store: FeatureStore,
        window: str | timedelta,
        validation: float = DEFAULT_VALIDATION,
        after: datetime | None = None,
    ) -> LabelledWindowEvaluator:
        """The last ``window`` of data in the store, none of it before ``after`` (the end of
        the candidate's training data: a version is never judged on rows it learnt)."""
        last = store.summary().last
        if last is None:
            raise EvaluationError("the feature store is empty: the gate has nothing to compare")
        end = last + timedelta(milliseconds=1)
        start = end - parse_duration(window, "gate window")
        if after is not None and after > start:
            if after >= end:
                raise GateDataError("data after the candidate's training window", after, end)
            start = after
        return cls(registry, store, start, end, validation=validation)

    @property
    def split(self) -> datetime:
        """Where the validation slice ends and the test slice begins (whole seconds)."""
        return (self.start + (self.end - self.start) * self.validation).replace(microsecond=0)

    def __call__(self, version: ModelVersion) -> dict[str, float]:
        if self.registry is None:
            raise EvaluationError("this evaluator has no registry to load versions from")
        detector = self.judged.get(version.ref)
        if detector is None:
            _, detector = load_detector(self.registry, version.ref)
        if not version.features:
            raise EvaluationError(f"{version.ref} records no features: which data does it score?")
        measured = self.measure(detector, version.features, version.threshold)
        self.notes[version.ref] = measured.note
        if not measured.judged:
            raise GateDataError("labelled anomaly windows in the test slice", self.split, self.end)
        return measured.figures

    def figures(self, model: SeriesStates | Detector, features: Sequence[str]) -> dict[str, float]:
        """The gate's figures of ``model`` scoring ``features`` (see :meth:`measure`); a test
        slice without a labelled window is a :class:`GateDataError`."""
        measured = self.measure(model, features)
        if not measured.judged:
            raise GateDataError("labelled anomaly windows in the test slice", self.split, self.end)
        return measured.figures

    def measure(
        self,
        model: SeriesStates | Detector,
        features: Sequence[str],
        recorded_threshold: float | None = None,
    ) -> WindowFigures:
        """The figures of ``model`` scoring ``features`` on the test slice at the threshold
        chosen on the validation slice: each entity from its own state (the fleet prior's if
        the model never saw it), learning as it goes, as it would run live. A model not
        registered yet — the training pipeline's candidate — is judged the same way; one
        detector is the prior of no series. ``recorded_threshold`` is the fallback when the
        validation slice has no labelled window.

        A test slice without a labelled window leaves only the threshold (and the windows
        counted); a window without any is a :class:`GateDataError`."""
        states = model if isinstance(model, SeriesStates) else SeriesStates.empty(model)
        series = self._series(tuple(features), states.detector.multivariate)
        validation_windows = sum(len(s.validation) for s in series)
        test_windows = sum(len(s.test) for s in series)
        if not validation_windows and not test_windows:
            raise GateDataError("labelled anomaly windows", self.start, self.end)
        columns = states.detector.columns
        arrays = [as_arrays(s.frame, states.detector.name, columns)[:2] for s in series]
        replayed = states.replay([s.entity for s in series], arrays)
        tuning: dict[str, tuple[Floats, list[WindowRows]]] = {}
        test: dict[str, tuple[Floats, list[WindowRows]]] = {}
        for one, scores in zip(series, replayed, strict=True):
            tuning[one.entity] = (scores[: one.cut], one.validation)
            test[one.entity] = (scores[one.cut :], one.test)
        threshold, rule = self._threshold(
            tuning, validation_windows, recorded_threshold, states.detector.default_threshold
        )
        figures = {
            "threshold": threshold,
            "validation_windows": float(validation_windows),
            "test_windows": float(test_windows),
        }
        if test_windows:
            nab = score_corpus(test, PROFILES["standard"], threshold, probation=0)
            detected = DetectionMetrics.combine(
                detection_metrics(values, threshold, windows) for values, windows in test.values()
            )
            summary = detected.summary()
            figures |= {
                "nab_standard": nab.score,
                "event_f1": summary.event_f1,
                "point_f1": summary.point_f1,
                "pa_k_f1": summary.pa_k_f1,
            }
        note = self._note(rule, threshold, validation_windows, test_windows)
        return WindowFigures(figures, rule, note)

    def learnt(self, model: SeriesStates, features: Sequence[str]) -> SeriesStates:
        """A copy of ``model`` that has learnt every row of the window in time order — each
        entity from its own state, one never seen from the prior's — as the live loop would
        have by the window's end; its prior then summarises them all."""
        series = self._series(tuple(features), model.detector.multivariate)
        current = model.subset(model.entities)
        columns = model.detector.columns
        arrays = [as_arrays(s.frame, model.detector.name, columns)[:2] for s in series]
        rows = current.rows([s.entity for s in series], add=True)
        current.learn(
            np.concatenate(
                [np.full(len(ts), row) for row, (ts, _) in zip(rows, arrays, strict=True)]
            ),
            np.concatenate([np.asarray(ts, np.int64) for ts, _ in arrays]),
            np.concatenate([np.asarray(values, np.float64) for _, values in arrays]),
        )
        current.refresh_prior()
        current.prior.columns = columns
        return current

    def _threshold(
        self,
        tuning: dict[str, tuple[Floats, list[WindowRows]]],
        windows: int,
        recorded: float | None,
        default: float | None,
    ) -> tuple[float, ThresholdRule]:
        if windows:
            standard = PROFILES["standard"]
            swept = score_corpus(tuning, standard, probation=0, prior=default).threshold
            return swept, ThresholdRule.VALIDATION
        if recorded is not None and math.isfinite(recorded):
            return recorded, ThresholdRule.RECORDED
        if default is not None:
            return default, ThresholdRule.DEFAULT
        scores = np.concatenate([values for values, _ in tuning.values()] or [np.zeros(0)])
        scores = scores[np.isfinite(scores)]
        if not len(scores):
            raise GateDataError("scored rows in the validation slice", self.start, self.split)
        return float(np.quantile(scores, 1.0 - DEFAULT_ALARM_SHARE)), ThresholdRule.QUANTILE

    def _note(self, rule: ThresholdRule, threshold: float, validation: int, test: int) -> str:
        first = f"{self.start:%Y-%m-%d %H:%M}–{self.split:%Y-%m-%d %H:%M}"
        second = f"{self.split:%Y-%m-%d %H:%M}–{self.end:%Y-%m-%d %H:%M}"
        if rule is ThresholdRule.VALIDATION:
            chosen = (
                f"threshold {threshold:.4g} swept on the validation slice {first} "
                f"({_windows(validation)})"
            )
        else:
            where = {
                ThresholdRule.RECORDED: "recorded on the version",
                ThresholdRule.DEFAULT: "the detector's calibrated default",
            }.get(rule, f"reached by the top {DEFAULT_ALARM_SHARE:.0%} of its scores")
            chosen = (
                f"the validation slice {first} has no labelled window: threshold "
                f"{threshold:.4g} {where}, not swept"
            )
        if not test:
            return f"{chosen}; the test slice {second} has no labelled window: no figures"
        return f"{chosen}; figures on the test slice {second} ({_windows(test)})"

    def _series(self, features: tuple[str, ...], multivariate: bool) -> list[_Series]:
        key = (*features, str(multivariate))
        if key not in self._frames:
            self._frames[key] = self._read(features, multivariate)
        return self._frames[key]

    def _read(self, features: tuple[str, ...], multivariate: bool) -> list[_Series]:
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
        lo, split, hi = to_epoch_ms(self.start), to_epoch_ms(self.split), to_epoch_ms(self.end)
        found = []
        for entity, frame in sorted(groups.items()):
            spans = [
                (w.start, w.end)
                for w in self.store.windows(metrics, [entity])
                if w.end >= lo and w.start < hi
            ]
            ts = frame.column("ts").cast(pa.int64()).to_numpy()
            cut = int(np.searchsorted(ts, split, side="left"))
            before = [(max(s, lo), min(e, split - 1)) for s, e in spans if s < split]
            after = [(max(s, split), min(e, hi - 1)) for s, e in spans if e >= split]
            found.append(
                _Series(
                    entity,
                    frame,
                    cut,
                    merge_windows(window_rows(ts[:cut], before)),
                    merge_windows(window_rows(ts[cut:], after)),
                )
            )
        return found


def _windows(count: int) -> str:
    return f"{count} labelled window{'' if count == 1 else 's'}"


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
