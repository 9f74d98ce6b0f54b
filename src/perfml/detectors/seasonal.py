"""A robust seasonal baseline: what each time of the week usually looks like, and how far off a
point is from it.

Performance metrics follow the working day: 70% CPU is normal at noon and alarming at 3 a.m.
A single threshold cannot tell the two apart; a profile per *slot* of the season can. The
season (a day or a week) is cut into slots (an hour by default: 168 per week); each slot keeps
its recent values, and a point is judged against the median and the MAD (median absolute
deviation) of its own slot over the last ``horizon`` seasons. Both statistics shrug off the odd
anomaly among those values, and old values fall out of the horizon, so the profile follows a
workload change within ``horizon`` seasons (about half of it for the median to move).

Until a slot has ``min_slot_values`` recent values from ``min_slot_seasons`` seasons (in a new
series' first seasons, or after a long gap) a point is judged against the median and MAD of
the series' last ``global_window`` values instead: coarser, but sensible from the first hour.
Before even that, and for a missing (NaN) value, the score is 0 — no evidence of anything.
Missing values are not learnt.

The score grows with the evidence against the baseline: for the robust deviation
``z = |x − median| / (1.4826 · MAD)``, ``s = −log10 P(|N(0,1)| ≥ z)`` is how surprising such
a deviation is under normal noise, and the score is ``s / (s + 3)`` — one half at a tail
probability of 0.001, and never pinned at 1, so a corpus-wide threshold can still tell a
twenty-sigma jump from a six-sigma one (a tail probability in linear terms is 1.0 to the float
from about eight sigmas on). A point ``direction`` ignores (e.g. below the median for
``"up"``) scores 0.

>>> import numpy as np, pandas as pd
>>> from perfml.detectors import create
>>> ts = np.arange(7 * 288, dtype=np.int64) * 300_000  # a week at 5-minute steps
>>> office = (ts // 3_600_000 % 24 >= 9) & (ts // 3_600_000 % 24 < 17)
>>> noise = np.random.default_rng(0).normal(0.0, 2.0, ts.size)
>>> history = pd.DataFrame({"ts": ts, "value": np.where(office, 70.0, 15.0) + noise})
>>> detector = create("seasonal", season="day").fit(history)
>>> day = 7 * 86_400_000
>>> later = pd.DataFrame({"ts": [day + 3 * 3_600_000, day + 12 * 3_600_000], "value": [70.0] * 2})
>>> three_am, noon = detector.score(later)
>>> bool(noon < 0.5), bool(three_am > 0.9)
(True, True)
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field, ValidationInfo, field_validator
from scipy.special import log_ndtr

from perfml.detectors.base import Detector, DetectorParams, State, register
from perfml.detectors.errors import BadInputError
from perfml.detectors.frames import Floats, Millis

_MINUTE_MS = 60_000
_SEASON_MINUTES = {"day": 24 * 60, "week": 7 * 24 * 60}
_MAD_TO_SIGMA = 1.482602218505602
"""``1 / Φ⁻¹(3/4)``: the MAD of normal noise times this is its standard deviation."""
_TINY = 1e-9
"""The smallest scale, relative to the level, so that a flat baseline does not divide by 0."""
_EMPTY = np.iinfo(np.int64).min
"""The time of a slot's empty places (their value is NaN)."""
_CHUNK = 4096
"""Rows scored at once: bounds the memory of the windows (rows × ``global_window``)."""


@register
class SeasonalDetector(Detector):
    """Scores each point against the median and MAD of its slot of the day or week (univariate).

    See the module's description for the model; the parameters are in :class:`Params`.
    """

    name = "seasonal"

    class Params(DetectorParams):
        """The seasonal baseline's parameters (defaults suit 5-minute data)."""

        season: Literal["day", "week"] = "week"
        """The period of the profile: ``"week"`` tells weekdays from weekends."""
        slot_minutes: int = Field(60, ge=1)
        """The width of a slot; must divide the season (60: one slot per hour)."""
        horizon: int = Field(4, ge=1)
        """Seasons a slot remembers: values older than ``horizon`` seasons are forgotten."""
        slot_capacity: int = Field(64, ge=1)
        """At most this many recent values per slot (48 are 4 weeks of 5-minute data in
        hourly slots); with finer data the oldest go first, shortening the horizon."""
        min_slot_values: int = Field(6, ge=1)
        """Recent values a slot needs before it is trusted over the global fallback."""
        min_slot_seasons: int = Field(2, ge=1)
        """Seasons a slot's recent values must come from before it is trusted: one morning's
        values say little about mornings."""
        global_window: int = Field(288, ge=1)
        """Values of the global fallback: the series' last ones (288: a day at 5 minutes)."""
        min_global_values: int = Field(12, ge=1)
        """Values the fallback needs before it scores; until then every score is 0."""
        min_scale: float = Field(0.05, ge=0.0)
        """A slot's scale is at least this fraction of the global one, so that a slot whose
        few values happen to agree does not flag every wiggle."""
        direction: Literal["both", "up", "down"] = "both"
        """Which deviations count: ``"up"`` for latency, say, where only a rise is trouble."""

        @field_validator("slot_minutes")
        @classmethod
        def _divides_the_season(cls, value: int, info: ValidationInfo) -> int:
            season = _SEASON_MINUTES[info.data.get("season", "week")]
            if season % value:
                raise ValueError(f"must divide the season ({season} minutes)")
            return value

        @field_validator("min_slot_values")
        @classmethod
        def _fits_a_slot(cls, value: int, info: ValidationInfo) -> int:
            capacity = info.data.get("slot_capacity", value)
            if value > capacity:
                raise ValueError(f"cannot exceed slot_capacity ({capacity})")
            return value

        @field_validator("min_slot_seasons")
        @classmethod
        def _within_the_horizon(cls, value: int, info: ValidationInfo) -> int:
            horizon = info.data.get("horizon", value)
            if value > horizon:
                raise ValueError(f"cannot exceed horizon ({horizon})")
            return value

        @field_validator("min_global_values")
        @classmethod
        def _fits_the_window(cls, value: int, info: ValidationInfo) -> int:
            window = info.data.get("global_window", value)
            if value > window:
                raise ValueError(f"cannot exceed global_window ({window})")
            return value

    params: Params

    @property
    def slots(self) -> int:
        """Slots per season."""
        return _SEASON_MINUTES[self.params.season] // self.params.slot_minutes

    def reset(self) -> None:
        capacity = self.params.slot_capacity
        self._slot_times: npt.NDArray[np.int64] = np.full((self.slots, capacity), _EMPTY)
        """Each slot's recent values' times, oldest first; empty places first of all."""
        self._slot_values: Floats = np.full((self.slots, capacity), np.nan)
        self._recent: Floats = np.full(self.params.global_window, np.nan)
        """The series' last values, oldest first: the global fallback."""

    def update(self, ts: int, value: float | Floats) -> float:
        point = np.asarray(value, dtype=np.float64)
        if point.size != 1:
            raise BadInputError(self.name, f"one value per point, not {point.size}")
        # One code path for a point and for a frame: their scores are equal to the bit.
        return float(self.score_arrays(np.array([ts], dtype=np.int64), point.reshape(1))[0])

    def learn(self, ts: Millis, values: Floats) -> None:
        self.score_arrays(ts, values)

    def score_arrays(self, ts: Millis, values: Floats) -> Floats:
        if values.ndim != 1:
            raise BadInputError(
                self.name, f"univariate: give it one value column, not {values.shape[1]}"
            )
        scores = [
            self._advance(ts[start : start + _CHUNK], values[start : start + _CHUNK])
            for start in range(0, len(ts), _CHUNK)
        ]
        return np.concatenate(scores) if scores else np.empty(0)

    def get_state(self) -> State:
        arrays = {
            "slot_times": self._slot_times.copy(),
            "slot_values": self._slot_values.copy(),
            "recent_values": self._recent.copy(),
        }
        return {}, arrays

    def set_state(self, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
        shapes = {
            "slot_times": (self._slot_times.shape, np.int64),
            "slot_values": (self._slot_values.shape, np.float64),
            "recent_values": (self._recent.shape, np.float64),
        }
        for name, (shape, dtype) in shapes.items():
            array = arrays[name]
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(
                    f"{name} is {array.dtype}{list(array.shape)}, expected "
                    f"{np.dtype(dtype)}{list(shape)} for these parameters"
                )
        self._slot_times = arrays["slot_times"].copy()
        self._slot_values = arrays["slot_values"].copy()
        self._recent = arrays["recent_values"].copy()

    # -- the model ---------------------------------------------------------------------------

    def _advance(self, ts: Millis, values: Floats) -> Floats:
        """Score rows in order, each against what came before it, and learn them."""
        known = np.isfinite(values)
        # Row i sees the values learnt before it: those before the batch and the known rows of
        # the batch before i. Each row's window is a slice of that sequence.
        recent = np.concatenate([self._recent, values[known]])
        learnt_before = np.cumsum(known) - known
        recent_windows = sliding_window_view(recent, self._recent.size)[learnt_before]
        self._recent = recent[-self._recent.size :].copy()

        capacity = self.params.slot_capacity
        slot_windows = np.empty((len(ts), capacity))
        slot_times = np.empty((len(ts), capacity), dtype=np.int64)
        slots = (ts // (self.params.slot_minutes * _MINUTE_MS)) % self.slots
        for slot in np.unique(slots).tolist():
            rows = np.flatnonzero(slots == slot)
            kept = known[rows]
            times = np.concatenate([self._slot_times[slot], ts[rows][kept]])
            series = np.concatenate([self._slot_values[slot], values[rows][kept]])
            before = np.cumsum(kept) - kept
            slot_times[rows] = sliding_window_view(times, capacity)[before]
            slot_windows[rows] = sliding_window_view(series, capacity)[before]
            self._slot_times[slot] = times[-capacity:]
            self._slot_values[slot] = series[-capacity:]
        season_ms = _SEASON_MINUTES[self.params.season] * _MINUTE_MS
        slot_windows[slot_times <= ts[:, None] - self.params.horizon * season_ms] = np.nan
        seasons = _distinct_seasons(slot_times, ~np.isnan(slot_windows), season_ms)
        return self._scores(values, _robust(slot_windows), seasons, _robust(recent_windows))

    def _scores(
        self,
        values: Floats,
        slot: tuple[Floats, Floats, Millis],
        slot_seasons: Millis,
        fallback: tuple[Floats, Floats, Millis],
    ) -> Floats:
        p = self.params
        slot_median, slot_mad, slot_count = slot
        global_median, global_mad, global_count = fallback
        global_scale = _MAD_TO_SIGMA * global_mad
        by_slot = (slot_count >= p.min_slot_values) & (slot_seasons >= p.min_slot_seasons)
        judged = (by_slot | (global_count >= p.min_global_values)) & np.isfinite(values)
        centre = np.where(by_slot, slot_median, global_median)
        # fmax ignores a NaN (an empty fallback), so the floors apply only where they exist.
        slot_scale = np.fmax(_MAD_TO_SIGMA * slot_mad, p.min_scale * global_scale)
        scale = np.fmax(np.where(by_slot, slot_scale, global_scale), _TINY * (1 + np.abs(centre)))
        centre = np.where(judged, centre, 0.0)
        scale = np.where(judged, scale, 1.0)
        deviation = (np.where(judged, values, 0.0) - centre) / scale
        if p.direction == "up":
            deviation = np.maximum(deviation, 0.0)
        elif p.direction == "down":
            deviation = np.maximum(-deviation, 0.0)
        else:
            deviation = np.abs(deviation)
        surprise = -(_LOG_TWO + log_ndtr(-deviation)) / _LN_TEN
        surprise = np.maximum(surprise, 0.0)
        scores: Floats = surprise / (surprise + _HALF_SCORE_SURPRISE)
        return scores


_MEAN_AD_TO_MAD = math.sqrt(math.pi / 2) / 1.4826
"""Mean absolute deviation → MAD, for normal noise (σ ≈ 1.2533·meanAD ≈ 1.4826·MAD)."""
_LOG_TWO = math.log(2.0)
_LN_TEN = math.log(10.0)
_HALF_SCORE_SURPRISE = 3.0
"""Surprise (−log10 of the tail probability) that scores one half: p = 0.001."""


def _robust(windows: Floats) -> tuple[Floats, Floats, Millis]:
    """Each row's median, MAD and count of its non-NaN values (NaN statistics for none).

    Where more than half the values are equal (a metric that sits at 0 and moves now and
    then), the MAD is 0 and would make any movement infinitely surprising; there the mean
    absolute deviation, rescaled to the MAD's units (both estimate σ under normal noise), takes
    its place. Sorting and picking the middle is exact, so a row's statistics do not depend on
    the rows computed with it: scoring a frame at once equals scoring it point by point.
    """
    counts = np.count_nonzero(~np.isnan(windows), axis=1)
    median = _middle(np.sort(windows, axis=1), counts)
    deviations = np.abs(windows - median[:, None])
    mad = _middle(np.sort(deviations, axis=1), counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_deviation = np.nansum(deviations, axis=1) / counts
    mad = np.where(mad > 0, mad, mean_deviation * _MEAN_AD_TO_MAD)
    return median, mad, counts


def _distinct_seasons(times: Millis, known: npt.NDArray[np.bool_], season_ms: int) -> Millis:
    """How many seasons each row's known times come from (they are in order, oldest first)."""
    season = times // season_ms
    new = known[:, 1:] & known[:, :-1] & (season[:, 1:] != season[:, :-1])
    counts: Millis = np.count_nonzero(new, axis=1) + np.any(known, axis=1)
    return counts


def _middle(ordered: Floats, counts: Millis) -> Floats:
    """The median of each sorted row's first ``count`` values (NaN sorts last)."""
    rows = np.arange(len(ordered))
    low = ordered[rows, np.maximum((counts - 1) // 2, 0)]
    high = ordered[rows, np.maximum(counts // 2, 0)]
    middle: Floats = np.where(counts > 0, (low + high) * 0.5, np.nan)
    return middle
