"""The classic detection metrics, beside NAB's score: point-wise, event-wise, point-adjusted.

Everything starts from a series' anomaly scores, a threshold (a row is *flagged* when its
score is at or above it, as in NAB) and the labelled windows as row ranges (first and last
row, both included). Rows before ``start`` are left out of every figure — the runner passes
NAB's probationary period, so these metrics and NAB's score judge the same rows; a window
reaching into them is clipped to its scored rows, and one wholly inside them is dropped.

- **Point-wise**: every scored row is a sample; a flagged row inside a window is a true
  positive, outside one a false positive.
- **Event-wise**: a window is *detected* if any of its rows is flagged (recall = detected
  windows / windows). Detections are counted as *runs*, maximal stretches of consecutive
  flagged rows, so that a detector holding an alarm for an hour raises one alarm, not twelve;
  a run that overlaps a window is a true alarm (precision = true runs / runs).
- **Point-adjusted** (Xu et al., WWW 2018): a window with any flagged row counts as flagged
  throughout, then point-wise figures. It flatters: one lucky row buys a whole window.
- **PA%K** (Kim et al., AAAI 2022): a window is adjusted only when at least ``K``% of its rows
  are flagged (and at least one is), so ``K = 0`` is the point adjustment and ``K = 100`` the
  point-wise figures. Kim et al. write the condition as "more than ``K``%"; the two differ only
  when a window's share is exactly ``K``%. The default ``K`` is 20. As the figures are step
  functions of ``K``, the area under F1 over ``K`` in ``[0, 100]`` (scaled to ``[0, 1]``) is
  computed exactly, which is what Kim et al. recommend reporting.
- **Time to detect**: from a window's first (scored) row to its first flagged row, over the
  detected windows, in rows and — given the timestamps — in seconds.

Precision, recall and F1 are 0 when their denominator is (no detection, no window). Results
hold counts, not ratios, so a corpus's figures are its series' results added up
(:meth:`DetectionMetrics.combine`), i.e. micro-averaged.

>>> scores = np.array([0, 0, 0.9, 0, 0, 0, 0.8, 0.9, 0.2, 0.0, 0.7, 0])
>>> found = detection_metrics(scores, 0.5, [(5, 9)])
>>> found.point  # rows 6, 7 in the window; rows 2 and 10 outside
Counts(tp=2, fp=2, fn=3, tn=5)
>>> found.event  # one window, detected; runs [2], [6, 7], [10]: one of three is true
EventCounts(windows=1, detected=1, runs=3, true_runs=1)
>>> found.point_adjusted()
Counts(tp=5, fp=2, fn=0, tn=5)
>>> found.pa_k(50)  # 2 of 5 rows (40%) is short of 50%: not adjusted
Counts(tp=2, fp=2, fn=3, tn=5)
>>> found.mean_delay_rows
1.0
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from perfml.evaluation.nab import Floats, ScoreShapeError, WindowRows

DEFAULT_K = 20.0
"""PA%K's default ``K``: a window counts as detected once 20% of its rows are flagged."""


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2.0 * precision * recall / total if total else 0.0


@dataclass(frozen=True)
class Counts:
    """A confusion matrix over rows."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )


@dataclass(frozen=True)
class EventCounts:
    """Windows and detected windows (recall), runs of detections and true ones (precision)."""

    windows: int
    detected: int
    runs: int
    true_runs: int

    @property
    def precision(self) -> float:
        return _ratio(self.true_runs, self.runs)

    @property
    def recall(self) -> float:
        return _ratio(self.detected, self.windows)

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(
            self.windows + other.windows,
            self.detected + other.detected,
            self.runs + other.runs,
            self.true_runs + other.true_runs,
        )


@dataclass(frozen=True)
class WindowOutcome:
    """How one window fared: its scored rows, how many were flagged and how late the first.

    ``delay_rows`` and ``delay_ms`` are ``None`` for a missed window; ``delay_ms`` also when
    the timestamps were not given.
    """

    width: int
    hits: int
    delay_rows: int | None
    delay_ms: int | None


@dataclass(frozen=True)
class MetricsSummary:
    """The figures of a :class:`DetectionMetrics` as plain numbers, for tables and JSON."""

    point_precision: float
    point_recall: float
    point_f1: float
    event_precision: float
    event_recall: float
    event_f1: float
    pa_f1: float
    pa_k: float
    pa_k_f1: float
    pa_k_auc_f1: float
    windows: int
    detected_windows: int
    mean_delay_rows: float | None
    mean_delay_seconds: float | None


@dataclass(frozen=True)
class DetectionMetrics:
    """Point-wise and event-wise results of one series (or, combined, of a corpus)."""

    point: Counts
    event: EventCounts
    windows: tuple[WindowOutcome, ...]

    @classmethod
    def combine(cls, parts: Iterable[DetectionMetrics]) -> DetectionMetrics:
        """The results of several series as one (counts added, windows pooled)."""
        point, event = Counts(0, 0, 0, 0), EventCounts(0, 0, 0, 0)
        windows: list[WindowOutcome] = []
        for part in parts:
            point, event = point + part.point, event + part.event
            windows.extend(part.windows)
        return cls(point, event, tuple(windows))

    def point_adjusted(self) -> Counts:
        """Xu et al.'s point adjustment: every detected window counts as wholly flagged."""
        return self.pa_k(0.0)

    def pa_k(self, k: float = DEFAULT_K) -> Counts:
        """Kim et al.'s PA%K: windows with at least ``k``% of rows flagged count as wholly so."""
        if not 0.0 <= k <= 100.0:
            raise ScoreShapeError("PA%K", f"K = {k} is not a percentage in [0, 100]")
        gained = sum(
            w.width - w.hits for w in self.windows if w.hits and w.hits * 100.0 >= k * w.width
        )
        p = self.point
        return Counts(p.tp + gained, p.fp, p.fn - gained, p.tn)

    def pa_k_auc(self) -> float:
        """The area under PA%K's F1 over ``K`` in ``[0, 100]``, scaled to ``[0, 1]``.

        F1 only changes where ``K`` crosses a window's flagged share, so the area is a sum of
        rectangles between those shares.
        """
        detected = [w for w in self.windows if w.hits]
        shares = np.array([w.hits / w.width for w in detected])
        gains = np.array([w.width - w.hits for w in detected], dtype=np.int64)
        p = self.point
        area, previous = 0.0, 0.0
        for share in np.unique(shares):  # K/100 in (previous, share]: windows >= share adjust
            gained = int(gains[shares >= share].sum())
            f1 = Counts(p.tp + gained, p.fp, p.fn - gained, p.tn).f1
            area += (float(share) - previous) * f1
            previous = float(share)
        return area + (1.0 - previous) * p.f1

    @property
    def mean_delay_rows(self) -> float | None:
        """Mean rows from a detected window's first row to its first flagged row."""
        delays = [w.delay_rows for w in self.windows if w.delay_rows is not None]
        return float(np.mean(delays)) if delays else None

    @property
    def mean_delay_seconds(self) -> float | None:
        """The same delay in seconds (``None`` without timestamps or detected windows)."""
        delays = [w.delay_ms for w in self.windows if w.delay_ms is not None]
        return float(np.mean(delays)) / 1000.0 if delays else None

    def summary(self, k: float = DEFAULT_K) -> MetricsSummary:
        """Every figure, with PA%K at ``k``."""
        return MetricsSummary(
            point_precision=self.point.precision,
            point_recall=self.point.recall,
            point_f1=self.point.f1,
            event_precision=self.event.precision,
            event_recall=self.event.recall,
            event_f1=self.event.f1,
            pa_f1=self.point_adjusted().f1,
            pa_k=k,
            pa_k_f1=self.pa_k(k).f1,
            pa_k_auc_f1=self.pa_k_auc(),
            windows=self.event.windows,
            detected_windows=self.event.detected,
            mean_delay_rows=self.mean_delay_rows,
            mean_delay_seconds=self.mean_delay_seconds,
        )


def merge_windows(windows: Iterable[WindowRows]) -> list[WindowRows]:
    """The union of row ranges as disjoint, sorted ranges (overlapping ones merged).

    >>> merge_windows([(10, 20), (0, 4), (15, 30), (10, 20)])
    [(0, 4), (10, 30)]
    """
    merged: list[WindowRows] = []
    for first, last in sorted(windows):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def detection_metrics(
    scores: Sequence[float] | Floats,
    threshold: float,
    windows: Sequence[WindowRows],
    *,
    timestamps_ms: Sequence[int] | npt.NDArray[np.int64] | None = None,
    start: int = 0,
) -> DetectionMetrics:
    """Flag rows with ``scores >= threshold`` and judge them against ``windows``.

    ``windows`` must not overlap (see :func:`merge_windows`); rows before ``start`` are not
    judged (see the module's docstring).
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ScoreShapeError("scores", f"expected one score per row, got shape {values.shape}")
    n = len(values)
    ts = None if timestamps_ms is None else np.asarray(timestamps_ms, dtype=np.int64)
    if ts is not None and len(ts) != n:
        raise ScoreShapeError("timestamps", f"{len(ts)} timestamps for {n} scores")
    start = max(0, min(start, n))
    spans = _scored_spans(windows, n, start)

    flagged = values >= threshold
    flagged[:start] = False
    labelled = np.zeros(n, dtype=bool)
    for first, last in spans:
        labelled[first : last + 1] = True
    scored = np.zeros(n, dtype=bool)
    scored[start:] = True
    point = Counts(
        tp=int(np.sum(flagged & labelled)),
        fp=int(np.sum(flagged & ~labelled)),
        fn=int(np.sum(~flagged & labelled)),
        tn=int(np.sum(scored & ~flagged & ~labelled)),
    )

    hits_before = np.concatenate([[0], np.cumsum(flagged)])
    labelled_before = np.concatenate([[0], np.cumsum(labelled)])
    positions = np.flatnonzero(flagged)
    outcomes = []
    for first, last in spans:
        hits = int(hits_before[last + 1] - hits_before[first])
        delay_rows = delay_ms = None
        if hits:
            first_hit = int(positions[np.searchsorted(positions, first)])
            delay_rows = first_hit - first
            delay_ms = None if ts is None else int(ts[first_hit] - ts[first])
        outcomes.append(WindowOutcome(last - first + 1, hits, delay_rows, delay_ms))

    edges = np.diff(np.concatenate([[0], flagged.astype(np.int8), [0]]))
    run_first, run_end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    true_runs = int(np.sum(labelled_before[run_end] - labelled_before[run_first] > 0))
    event = EventCounts(
        windows=len(spans),
        detected=sum(1 for o in outcomes if o.hits),
        runs=len(run_first),
        true_runs=true_runs,
    )
    return DetectionMetrics(point, event, tuple(outcomes))


def _scored_spans(windows: Sequence[WindowRows], rows: int, start: int) -> list[WindowRows]:
    """The windows clipped to the scored rows, checked to lie in the series and not overlap."""
    spans: list[WindowRows] = []
    for first, last in sorted(windows):
        if first < 0 or last >= rows or last < first:
            raise ScoreShapeError("window", f"rows {first}..{last} outside 0..{rows - 1}")
        if spans and first <= spans[-1][1]:
            raise ScoreShapeError(
                "window", f"rows {first}..{last} overlap rows {spans[-1][0]}..{spans[-1][1]}"
            )
        spans.append((first, last))
    return [(max(first, start), last) for first, last in spans if last >= start]
