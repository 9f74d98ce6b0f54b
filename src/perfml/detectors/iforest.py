"""An isolation forest over causal window features of every metric of a host (multivariate).

Some incidents show only in combination: latency up while CPU is normal means a slow
dependency, not load. A univariate baseline of each metric sees a latency that has been seen
before; an isolation forest over all of a host's metrics together sees a combination that has
not. First the metrics are put on a log scale (``sign(x)·log(1 + |x|)``, so that a change
counts relative to the level) and turned to their principal axes on the history: what moves
with the load then moves along one axis, and a metric leaving the others moves along an axis
that is quiet in normal times. Each row of those series becomes, per series, its value, its
change since the previous row, and for every window ``w`` of
:attr:`IsolationForestDetector.Params.windows` the mean and standard deviation of the last
``w`` values and the value's deviation from that mean — computed from that row and the ones
before it only. ``fit`` trains scikit-learn's ``IsolationForest`` on the history's features;
the forest then stays fixed, and ``update`` only moves the window of recent rows on.

The trees are kept as plain arrays (:class:`IsolationTrees`) and always scored by NumPy code,
so a saved model needs neither pickle nor scikit-learn, and a loaded model scores exactly as
the fitted one did; the path lengths are scikit-learn's. A row's score is the fraction of the
training rows that were less anomalous (the empirical CDF of the forest's anomaly score on the
history, interpolated on 1001 quantiles): about uniform on normal rows, 1 beyond the most
anomalous training row. A missing value (NaN) is carried forward from the row before, or is
the metric's training median before any.

>>> import numpy as np, pandas as pd
>>> from perfml.detectors import create
>>> from perfml.sources.fleet import generate_fleet
>>> fleet = generate_fleet(hosts=1, months=1, seed=5)
>>> metrics = fleet.host_values("host-0000", anomalies=False)
>>> frame = pd.DataFrame({"ts": fleet.timestamps(), **metrics})
>>> detector = create("iforest").fit(frame[: 10 * 288])  # ten days of 5-minute rows
>>> later = frame[10 * 288 : 12 * 288].reset_index(drop=True)
>>> later.loc[300:311, "request_latency_ms"] *= 3  # an hour's latency storm; CPU stays normal
>>> scores = detector.score(later)
>>> bool(scores[300:312].mean() > np.percentile(scores[:300], 95))
True

A single metric's trouble is better left to a univariate detector such as ``"streaming"``: the
forest spreads its splits over the features of every metric, and a value beyond the training
range isolates no faster than the most extreme training row. Run both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from perfml.detectors.base import Detector, DetectorParams, State, register
from perfml.detectors.errors import BadInputError, NotFittedError
from perfml.detectors.frames import Floats, Frame, Millis, as_arrays
from perfml.detectors.isolation_trees import TREE_ARRAYS, IsolationTrees

_QUANTILES = 1001
"""Points of the training scores' distribution kept to map a raw score to ``[0, 1]``."""
_CHUNK = 4096
"""Rows scored at once: bounds the memory of the traversal (rows × trees)."""


def window_features(raw: Floats, first: int, windows: Sequence[int]) -> Floats:
    """The features of rows ``first:`` of ``raw`` (rows × metrics, no NaN), each computed from
    that row and the ``max(windows) - 1`` rows before it (``first`` must leave room for them).

    Columns, each block one column per metric: value, change since the previous row, then per
    window its mean, standard deviation and the value's deviation from the mean. Sums run lag
    by lag, so a row's features do not depend on the rows computed with it.
    """
    end = raw.shape[0]
    current = raw[first:]
    blocks = [current, current - raw[first - 1 : end - 1]]
    for width in windows:
        total = current
        for lag in range(1, width):
            total = total + raw[first - lag : end - lag]
        mean = total / width
        spread = np.zeros_like(mean)
        for lag in range(width):
            spread = spread + (raw[first - lag : end - lag] - mean) ** 2
        blocks += [mean, np.sqrt(spread / width), current - mean]
    return np.concatenate(blocks, axis=1)


@register
class IsolationForestDetector(Detector):
    """Scores each row of a host's metrics by how easily an isolation forest isolates it.

    See the module's description; the parameters are in :class:`Params`.
    """

    name = "iforest"
    multivariate = True

    class Params(DetectorParams):
        """The forest's and the features' parameters (defaults suit 5-minute data)."""

        windows: tuple[int, ...] = (6, 36)
        """Rows of the rolling windows (6 and 36: half an hour and three hours at 5 minutes)."""
        n_estimators: int = Field(100, ge=1, le=10_000)
        """Trees of the forest."""
        max_samples: int = Field(256, ge=2)
        """Training rows drawn for each tree (fewer if the history is shorter)."""
        max_features: float = Field(1.0, gt=0.0, le=1.0)
        """Fraction of the features each tree is trained on."""
        random_state: int = Field(0, ge=0)
        """Seed of the forest: the same history and seed give the same trees."""
        log_scale: bool = True
        """Compute the features of ``sign(x)·log(1 + |x|)``: changes then count relative to
        the level, as latency and traffic change (a tripled latency is as far at night as at
        noon), and heavy upper tails no longer crowd out the rest."""
        decorrelate: bool = True
        """Compute the features of the metrics' principal components on the history rather
        than of the metrics: what moves with the load moves along one axis, so a busy hour
        is not rare in six ways at once, while a metric leaving the others (latency up, CPU
        not) moves along an axis that is quiet in normal times, where the forest sees it."""

        @field_validator("windows")
        @classmethod
        def _usable_windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
            if not 1 <= len(value) <= 8 or min(value) < 2 or max(value) > 10_000:
                raise ValueError("must be 1 to 8 window lengths, each of 2 to 10000 rows")
            return value

    params: Params

    @property
    def context(self) -> int:
        """Rows of raw history the features of a row need, that row included."""
        return max(*self.params.windows, 2)

    def reset(self) -> None:
        self._trees: IsolationTrees | None = None
        self._calibration: Floats = np.empty(0)
        """Quantiles of the anomaly scores of the training rows, for the empirical CDF."""
        self._medians: Floats = np.empty(0)
        """Each metric's training median: the value of a metric missing from the start."""
        self._center: Floats = np.empty(0)
        self._axes: Floats = np.empty((0, 0))
        """The history's mean and principal axes (columns), of the scaled metrics."""
        self._recent: Floats = np.empty((0, 0))
        """The last :attr:`context` rows, missing values filled: the features' causal past."""

    def fit(self, history: Frame) -> Self:
        """Train the forest on the features of ``history``'s rows (from scratch)."""
        from sklearn.ensemble import IsolationForest

        self.reset()
        _, values, self.columns = as_arrays(history, self.name)
        values = _as_rows(values)
        if len(values) < 4:
            raise BadInputError(self.name, f"needs at least 4 rows to fit, got {len(values)}")
        self._medians = np.array([_median(column) for column in values.T])
        filled = _carried_forward(self._medians, values)
        # The first rows have no past: pretend the first row had always been there, but train
        # only on rows whose windows are real when the history is long enough to afford it.
        raw = np.concatenate([np.repeat(filled[:1], self.context, axis=0), filled])
        self._center, self._axes = self._principal_axes(self._scaled(filled))
        features = self._features(raw)
        features = features[min(self.context - 1, len(features) // 2) :]
        columns = features.shape[1]
        model = IsolationForest(
            n_estimators=self.params.n_estimators,
            max_samples=min(self.params.max_samples, len(features)),
            max_features=max(1, int(self.params.max_features * columns)),
            random_state=self.params.random_state,
        ).fit(features)
        self._trees = IsolationTrees.from_sklearn(model)
        levels = np.linspace(0.0, 1.0, min(_QUANTILES, len(features)))
        self._calibration = np.quantile(self._trees.anomaly_scores(features), levels)
        self._recent = raw[-self.context :].copy()
        return self

    def update(self, ts: int, value: float | Floats) -> float:
        row = np.asarray(value, dtype=np.float64).reshape(1, -1)
        # One code path for a row and for a frame: their scores are equal to the bit.
        return float(self.score_arrays(np.array([ts], dtype=np.int64), row)[0])

    def learn(self, ts: Millis, values: Floats) -> None:
        """Move the window of recent rows on; the forest stays as ``fit`` trained it."""
        _, rows = self._checked(values)
        filled = _carried_forward(self._recent[-1], rows)
        self._recent = np.concatenate([self._recent, filled])[-self.context :].copy()

    def score_arrays(self, ts: Millis, values: Floats) -> Floats:
        trees, rows = self._checked(values)
        scores = [
            self._advance(trees, rows[start : start + _CHUNK])
            for start in range(0, len(rows), _CHUNK)
        ]
        return np.concatenate(scores) if scores else np.empty(0)

    def get_state(self) -> State:
        if self._trees is None:
            return {"fitted": False}, {}
        meta = {
            "fitted": True,
            "max_samples": self._trees.max_samples,
            "features": self._trees.features,
        }
        arrays = {
            **{name: array.copy() for name, array in self._trees.arrays.items()},
            "calibration": self._calibration.copy(),
            "medians": self._medians.copy(),
            "recent": self._recent.copy(),
            "center": self._center.copy(),
            "axes": self._axes.copy(),
        }
        return meta, arrays

    def set_state(self, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.reset()
        if not meta["fitted"]:
            return
        medians, recent, calibration = arrays["medians"], arrays["recent"], arrays["calibration"]
        center, axes = arrays["center"], arrays["axes"]
        metrics = medians.size
        features = metrics * (2 + 3 * len(self.params.windows))
        if medians.ndim != 1 or recent.shape != (self.context, metrics):
            raise ValueError(f"recent rows {recent.shape} do not fit {metrics} metrics")
        if center.shape != (metrics,) or axes.shape != (metrics, metrics):
            raise ValueError(f"center {center.shape} or axes {axes.shape} misfit {metrics} metrics")
        if meta["features"] != features or not np.all(np.isfinite(medians)):
            raise ValueError(f"{meta['features']} features or medians do not fit {metrics} metrics")
        if not (
            calibration.ndim == 1 and calibration.size >= 2 and np.all(np.diff(calibration) >= 0)
        ):
            raise ValueError("the calibration is not an increasing sequence of quantiles")
        self._trees = IsolationTrees(
            {name: arrays[name] for name in TREE_ARRAYS}, int(meta["max_samples"]), features
        )
        self._calibration = calibration.astype(np.float64)
        self._medians = medians.astype(np.float64)
        self._recent = recent.astype(np.float64)
        self._center = center.astype(np.float64)
        self._axes = axes.astype(np.float64)

    # -- the model ---------------------------------------------------------------------------

    def _checked(self, values: Floats) -> tuple[IsolationTrees, Floats]:
        """The forest, and ``values`` as rows of as many metrics as it was fitted on."""
        if self._trees is None:
            raise NotFittedError(self.name)
        rows = _as_rows(values)
        if rows.shape[1] != self._medians.size:
            raise BadInputError(
                self.name, f"rows of {rows.shape[1]} values; it was fitted on {self._medians.size}"
            )
        return self._trees, rows

    def _advance(self, trees: IsolationTrees, values: Floats) -> Floats:
        """Score rows in order, each with the rows before it as its past, and keep them."""
        raw = np.concatenate([self._recent, _carried_forward(self._recent[-1], values)])
        features = self._features(raw)
        self._recent = raw[-self.context :].copy()
        return self._probability(trees.anomaly_scores(features))

    def _features(self, raw: Floats) -> Floats:
        """The features of the rows of ``raw`` after the first :attr:`context`."""
        series = self._scaled(raw)
        if self.params.decorrelate:
            # Column by column, so that a row's projection does not depend on the other rows
            # (a matrix product may sum in another order for another number of rows).
            centred = series - self._center
            series = np.zeros_like(centred)
            for metric, axis_weights in enumerate(self._axes):
                series = series + centred[:, metric : metric + 1] * axis_weights
        return window_features(series, self.context, self.params.windows)

    def _scaled(self, raw: Floats) -> Floats:
        scaled: Floats = np.sign(raw) * np.log1p(np.abs(raw)) if self.params.log_scale else raw
        return scaled

    def _principal_axes(self, series: Floats) -> tuple[Floats, Floats]:
        """The mean of ``series`` and its covariance's eigenvectors (columns), largest first."""
        center: Floats = series.mean(axis=0)
        centred = series - center
        # Pairwise sums rather than a BLAS product: the same history gives the same axes.
        covariance = np.array([[np.sum(a * b) for b in centred.T] for a in centred.T])
        _, axes = np.linalg.eigh(covariance / len(series))
        return center, np.ascontiguousarray(axes[:, ::-1])

    def _probability(self, raw: Floats) -> Floats:
        """The interpolated empirical CDF of the training scores at ``raw``."""
        grid = self._calibration
        cell = np.clip(np.searchsorted(grid, raw, side="right") - 1, 0, grid.size - 2)
        low, width = grid[cell], grid[cell + 1] - grid[cell]
        within = np.clip((raw - low) / np.where(width > 0, width, 1.0), 0.0, 1.0)
        within = np.where(width > 0, within, 1.0)
        probability: Floats = np.clip((cell + within) / (grid.size - 1), 0.0, 1.0)
        return probability


def _as_rows(values: Floats) -> Floats:
    """``values`` as rows × metrics (a frame of one value column gives a 1-D array)."""
    return values if values.ndim == 2 else values.reshape(-1, 1)


def _carried_forward(previous: Floats, values: Floats) -> Floats:
    """``values`` with each missing value carried forward, from ``previous`` at first."""
    rows = np.concatenate([previous[None, :], values])
    source = np.where(np.isfinite(rows), np.arange(len(rows))[:, None], 0)
    np.maximum.accumulate(source, axis=0, out=source)
    filled: Floats = rows[source, np.arange(rows.shape[1])][1:]
    return filled


def _median(column: Floats) -> float:
    known = column[np.isfinite(column)]
    return float(np.median(known)) if known.size else 0.0
