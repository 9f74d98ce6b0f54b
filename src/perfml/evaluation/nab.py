"""The Numenta Anomaly Benchmark's scoring, exactly as NAB computes it.

A detector's output for one series is an anomaly score per row; NAB turns it into detections
with one threshold (``score >= threshold``), and rewards each labelled window by how early its
first detection came, on a scaled sigmoid, while every detection outside a window costs a
little — less the closer it follows a window. The first 15% of a series (at most 750 rows) is
a probationary period in which detectors learn and nothing is scored.

Three cost profiles weigh true positives, false positives and false negatives differently.
Over a corpus, one threshold is chosen per detector and profile — the one that maximises the
sum of raw scores — and the sum is normalised so that a detector that never fires scores 0 and
a perfect one, firing once at the start of every window, scores 100.

>>> profile = PROFILES["standard"]
>>> windows = [(60, 79)]  # rows 60..79 form one window
>>> scores = np.zeros(100); scores[62] = 1.0
>>> result = score_file(scores, windows, profile, threshold=0.5)
>>> round(result.score, 4), result.tp, result.fp, result.fn, result.tn
(0.9913, 1, 0, 19, 65)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from perfml.errors import PerfmlError

Floats = npt.NDArray[np.float64]
WindowRows = tuple[int, int]
"""A labelled window as the first and last row it covers (both included)."""

PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 0.15 * 5000


class EvaluationError(PerfmlError):
    """The root of the evaluation's failures."""


class UnknownProfileError(EvaluationError):
    def __init__(self, name: str) -> None:
        super().__init__(f"cost profile {name!r} is not one of {', '.join(PROFILES)}")


class ScoreShapeError(EvaluationError):
    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class CostProfile:
    """NAB's weights of a true positive, a false positive and a false negative."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: dict[str, CostProfile] = {
    "standard": CostProfile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}
"""NAB's three cost profiles, as its ``config/profiles.json`` defines them."""

PROFILE_ALIASES = {"low_fp": "reward_low_FP_rate", "low_fn": "reward_low_FN_rate"}


def profile(name: str) -> CostProfile:
    """A profile by NAB's name or the short one (``standard``, ``low_fp``, ``low_fn``)."""
    found = PROFILES.get(PROFILE_ALIASES.get(name, name))
    if found is None:
        raise UnknownProfileError(name)
    return found


def probation_rows(rows: int) -> int:
    """Rows at the start of a series that NAB leaves out of scoring."""
    return int(min(math.floor(PROBATION_FRACTION * rows), PROBATION_MAX_ROWS))


def scaled_sigmoid(x: float | Floats) -> Floats:
    """NAB's ``2 / (1 + e^(5x)) - 1``, and ``-1`` beyond ``x > 3``."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    result: Floats = np.where(x > 3.0, -1.0, value)
    return result


@dataclass(frozen=True)
class Weights:
    """What a detection at each row is worth for one series and profile.

    ``row_weight[i]`` is the reward (inside a window) or the cost (outside) of a detection at
    row ``i``; ``window_of[i]`` is the index of the window holding row ``i``, or -1. Only rows
    from ``probation`` on, and only the windows in ``scored_windows``, count.
    """

    row_weight: Floats
    window_of: npt.NDArray[np.int64]
    probation: int
    scored_windows: tuple[int, ...]
    profile: CostProfile


def weights(
    rows: int, windows: Sequence[WindowRows], cost: CostProfile, probation: int | None = None
) -> Weights:
    """NAB's weight of a detection at every row of a series of ``rows`` rows; ``probation``
    rows at its start are not scored (None: NAB's :func:`probation_rows`)."""
    index = np.arange(rows, dtype=np.float64)
    weight = np.full(rows, -cost.fp_weight)  # before the first window
    window_of = np.full(rows, -1, dtype=np.int64)
    ordered = sorted(windows)
    for number, (first, last) in enumerate(ordered):
        if first < 0 or last >= rows or last < first:
            raise ScoreShapeError("window", f"rows {first}..{last} outside 0..{rows - 1}")
        width = last - first + 1
        inside = slice(first, last + 1)
        position = -(last - index[inside] + 1) / width
        weight[inside] = scaled_sigmoid(position) * cost.tp_weight / scaled_sigmoid(-1.0)
        window_of[inside] = number
        following_end = ordered[number + 1][0] if number + 1 < len(ordered) else rows
        after = slice(last + 1, following_end)
        if width > 1:
            distance = np.abs(last - index[after]) / (width - 1)
            weight[after] = scaled_sigmoid(distance) * cost.fp_weight
        else:  # a one-row window leaves no scale: NAB's division by zero, read as the limit
            weight[after] = -cost.fp_weight
    if probation is None:
        probation = probation_rows(rows)
    scored = tuple(n for n, (_, last) in enumerate(ordered) if last >= probation)
    return Weights(weight, window_of, probation, scored, cost)


@dataclass(frozen=True)
class FileScore:
    """NAB's result for one series at one threshold."""

    score: float
    tp: int
    fp: int
    fn: int
    tn: int
    total: int
    windows: int


def score_file(
    scores: Sequence[float] | Floats,
    windows: Sequence[WindowRows],
    cost: CostProfile,
    threshold: float,
) -> FileScore:
    """Score one series' anomaly scores against its windows at ``threshold``."""
    values = np.asarray(scores, dtype=np.float64)
    w = weights(len(values), windows, cost)
    return _score_with(values, w, threshold)


def _score_with(values: Floats, w: Weights, threshold: float) -> FileScore:
    detected = values >= threshold
    detected[: w.probation] = False
    counted = np.zeros(len(values), dtype=bool)
    counted[w.probation :] = True
    in_window = w.window_of >= 0
    raw = float(np.sum(w.row_weight[detected & ~in_window]))
    for number in w.scored_windows:
        hits = detected & (w.window_of == number)
        raw += float(np.max(w.row_weight[hits])) if hits.any() else -w.profile.fn_weight
    return FileScore(
        score=raw,
        tp=int(np.sum(detected & in_window)),
        fp=int(np.sum(detected & ~in_window)),
        fn=int(np.sum(counted & ~detected & in_window)),
        tn=int(np.sum(counted & ~detected & ~in_window)),
        total=len(values),
        windows=len(w.scored_windows),
    )


@dataclass(frozen=True)
class CorpusScore:
    """A detector's NAB result over a corpus for one profile."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    files: dict[str, FileScore] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """``100 * (raw - null) / (perfect - null)``: 0 never fires, 100 is perfect."""
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def normalised(files: Iterable[FileScore], cost: CostProfile) -> float | None:
    """NAB's normalised score of ``files`` taken together (a metric's series, a category):
    ``100 * (raw - null) / (perfect - null)`` with null missing every window and perfect
    catching each; None if they hold no window.

    >>> one = FileScore(score=0.5, tp=1, fp=0, fn=1, tn=10, total=12, windows=2)
    >>> normalised([one], CostProfile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0))
    62.5
    """
    chosen = list(files)
    windows = sum(f.windows for f in chosen)
    span = (cost.tp_weight + cost.fn_weight) * windows
    if not span:
        return None
    return 100.0 * (sum(f.score for f in chosen) + cost.fn_weight * windows) / span


def score_corpus(
    series: Mapping[str, tuple[Sequence[float] | Floats, Sequence[WindowRows]]],
    cost: CostProfile,
    threshold: float | None = None,
    *,
    probation: int | None = None,
    prior: float | None = None,
) -> CorpusScore:
    """Score every series; at ``threshold``, or at the corpus-wide best (NAB's sweep) — with a
    ``prior``, the threshold nearest it that scores within one false positive of the best
    (:func:`threshold_near`).

    ``probation``: rows at the start of each series left out (None: NAB's probationary
    period; 0 for series scored from learnt states, which have nothing left to learn first).
    """
    prepared = {
        name: (_finite(name, values), weights(len(values), windows, cost, probation))
        for name, (values, windows) in series.items()
    }
    if threshold is None:
        threshold = (
            best_threshold(prepared.values())
            if prior is None
            else threshold_near(prepared.values(), prior, cost.fp_weight)
        )
    files = {name: _score_with(values, w, threshold) for name, (values, w) in prepared.items()}
    windows = sum(f.windows for f in files.values())
    return CorpusScore(
        profile=cost.name,
        threshold=threshold,
        raw=sum(f.score for f in files.values()),
        null=-cost.fn_weight * windows,
        perfect=cost.tp_weight * windows,
        files=files,
    )


def _finite(name: str, values: Sequence[float] | Floats) -> Floats:
    """The anomaly scores of series ``name``, refused if any is NaN or infinite (a threshold
    cannot be swept over them, and a detection at one means nothing)."""
    array = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ScoreShapeError(
            f"series {name!r}",
            f"{int(bad.sum())} anomaly scores are not finite (row {first}: {float(array[first])})",
        )
    return array


def best_threshold(prepared: Iterable[tuple[Floats, Weights]]) -> float:
    """The threshold maximising the corpus raw score, over every distinct anomaly score (NAB's
    sweep, :func:`sweep`); ties go to the higher threshold (fewer detections)."""
    thresholds, raws = sweep(prepared)
    return float(thresholds[int(np.argmax(raws))])  # the first maximum: the highest


def threshold_near(
    prepared: Iterable[tuple[Floats, Weights]], prior: float, tolerance: float
) -> float:
    """Of the thresholds whose corpus raw score is within ``tolerance`` of the best (one false
    positive's cost, say: what a few labels cannot tell apart), the one nearest ``prior`` —
    ``prior`` itself when it detects what one of them detects.

    A sweep over a few labelled windows finds a plateau of thresholds that score alike, and
    NAB's tie rule (the highest) sits at its edge, where one more window on the data judged
    next falls out; a detector's calibrated default is a better pick within it.
    """
    thresholds, raws = sweep(prepared)
    close = np.flatnonzero(raws >= raws.max() - tolerance - 1e-9)
    # Threshold k detects the rows scoring at least thresholds[k]: so does anything in
    # (thresholds[k + 1], thresholds[k]].
    lower = np.append(thresholds[1:], -np.inf)
    if np.any((lower[close] < prior) & (prior <= thresholds[close])):
        return prior
    return float(thresholds[close[int(np.argmin(np.abs(thresholds[close] - prior)))]])


def sweep(prepared: Iterable[tuple[Floats, Weights]]) -> tuple[Floats, Floats]:
    """Every candidate threshold, highest first — above the highest score, then each distinct
    score — and the corpus raw score at it.

    Lowering the threshold past a score adds the detections at that score: a false positive
    adds its weight; a row in a window raises the window's score to the row's weight if that
    is more. Sorting every scored row once and walking down gives every candidate's raw score
    in ``O(n log n)``.
    """
    values_parts, weight_parts, window_parts = [], [], []
    base = 0.0
    window_offset = 0
    window_fn: list[float] = []
    for values, w in prepared:
        scored = slice(w.probation, None)
        values_parts.append(values[scored])
        weight_parts.append(w.row_weight[scored])
        ids = w.window_of[scored].copy()
        keep = np.isin(ids, w.scored_windows)
        ids = np.where(keep, ids + window_offset, -1)
        ids = np.where(w.window_of[scored] >= 0, np.where(keep, ids, -2), -1)
        window_parts.append(ids)
        count = int(w.window_of.max()) + 1 if len(w.window_of) else 0
        window_fn += [-w.profile.fn_weight] * count
        for number in range(count):
            if number in w.scored_windows:
                base -= w.profile.fn_weight
        window_offset += count
    values = np.concatenate(values_parts) if values_parts else np.zeros(0)
    if not len(values):
        return np.array([1.0]), np.array([base])
    weight = np.concatenate(weight_parts)
    window = np.concatenate(window_parts)
    order = np.argsort(-values, kind="stable")
    values, weight, window = values[order], weight[order], window[order]
    thresholds, raws = [float(values[0]) + 1e-9], [base]
    current = base
    window_best = np.array(window_fn, dtype=np.float64)
    i = 0
    n = len(values)
    while i < n:
        j = i
        while True:  # every row scoring values[i] (at least row i: a NaN equals nothing)
            row_window = window[j]
            if row_window == -1:
                current += weight[j]
            elif row_window >= 0 and weight[j] > window_best[row_window]:
                current += weight[j] - window_best[row_window]
                window_best[row_window] = weight[j]
            j += 1
            if j == n or values[j] != values[i]:
                break
        thresholds.append(float(values[i]))
        raws.append(current)
        i = j
    return np.array(thresholds), np.array(raws)


def window_rows(
    timestamps_ms: Sequence[int] | npt.NDArray[np.int64], windows: Sequence[tuple[int, int]]
) -> list[WindowRows]:
    """Labelled windows (first and last instant, epoch ms) as the rows of a series they cover.

    A window covers the rows whose timestamps lie within it, both ends included; a window that
    covers no row is dropped.
    """
    ts = np.asarray(timestamps_ms, dtype=np.int64)
    rows = []
    for start, end in windows:
        first = int(np.searchsorted(ts, start, side="left"))
        last = int(np.searchsorted(ts, end, side="right")) - 1
        if last >= first:
            rows.append((first, last))
    return rows
