"""The default detector: how surprising is this value, and this change, given every similar
moment seen before?

A point is scored by the probability that the metric lands where it did, estimated without a
model of its shape: the share of the remembered mass within a tolerance of it (``±5%`` of the
range seen, the tolerance of NAB's spatial check). It is looked at in two *views*, each with
memories of its own: the **level** (the value itself) and the **change** (the value minus the
series' previous one), so that a value in its usual range reached as it never was (a cycle
that skips, a sensor that starts to flap) is seen as well as a value never seen. A change is
only taken between consecutive samples: a point after a gap of more than three of the
series' usual steps (or scored against a state learnt long before, as a served version's
is) is judged on its value alone. In each view,
experts estimate the probability from different memories, and a Bayesian mixture weighs them
by how well each has predicted so far:

- **global**: the long-run history (decayed over ``history`` points). A value never seen
  before gets the Good–Turing probability of novelty (how often past points were new), so a
  metric that keeps producing new values is not alarmed by yet another one, and a regular one
  is, loudly;
- **phase**: the points seen at the same time of day (the daily cycle of performance metrics),
  by the half hour for the level and by the hour for the change;
- **recent** (the level only): the last day (decayed over ``recent_hours``), which absorbs a
  new regime once it has become the norm.

The contextual experts shrink toward the global estimate (one pseudo-observation of it), so a
value is surprising only if no expert expects it; the mixture's weights follow each expert's
predictive likelihood with a fixed share (Herbster–Warmuth), so every series settles on what
explains it. A view's level is ``-log10`` of its mixed probability over ``full_scale`` (10: a
one-in-10^10 event scores 1), NAB's log-likelihood scale. An alarm no stronger than the level
of the view's recent alarms (decaying over ``rearm_hours``) is reported at ``rearm_factor`` of
its strength, so that a long episode is announced once. The point's score is the larger of the
level's and ``change_weight`` times the change's. The score of a row uses that row and the rows
before it; the row is then learnt. Missing values score 0 and are not learnt.

**The memory is a sketch, not the points**: decayed counts in 60 bins over the series' range
(level: global and recent) and in 40 bins over the range of its changes, and in 20 bins for
each half hour (level) or hour (change) of the day, on grids that widen when a value falls
outside them — 4,032 bytes per series whatever its length (the time-of-day counts in half
precision). Every series is a row of the same arrays, and :meth:`StreamingDetector.step_rows`
scores (and learns) points of many series in one compiled pass
(:mod:`perfml.detectors.sketch_kernel`) that reads and writes only each point's own row; the
per-series path is the same code on one row, so both give the same scores.

Design record — NAB, the 51 files of six categories scored as one corpus (one threshold):
standard 75.2, cross-validated 73.8 (threshold chosen on half the files, 50 random splits);
artificialWithAnomaly 59.6, realAWSCloudwatch 77.0, realAdExchange 69.1, realTraffic 90.2,
realTweets 72.6 (Numenta HTM: 73.0, 71.2; 70.2, 73.4, 76.9, 82.5, 68.0). The level view alone
scored 70.6 (69.0). Tried on the 51 files: the change's phases by the half hour with 10 or
12 bins (71.4, 72.0: its 20 bins matter more than the finer hours), without neighbouring hours
(74.6), with a recent expert (73.8), one alarm level for both views (73.4: an alarm on one
view should not silence the other), views combined by their mean or norm instead of the
larger (66.4–66.5); changes over 3 or 12 points, or a smoothed level, as a third view (72.0–
72.6); Gaussian time-of-day statistics instead of histograms (66.4); the level's score as a
tail probability among the series' own past scores (62.8–69.8: the largest surprises so far
all look alike). Before the change view, with the level alone: grid margins of 0, 3, 25, 50%
(70.3, 68.4, 67.4, 66.2 against 69.6 at 10% before the phase window held a whole bin), 96
phases 69.9, 24 or 16 phases 68.1, 66.7, 15 or 12 phase bins 65.3, 64.0, 120 / 240 bins 70.0 /
70.9, recent memory 12 / 48 h 67.7 / 69.5, history 4,032 69.4, fixed share 0.02 69.0,
re-arming over 48 h 70.0.

>>> import numpy as np
>>> ts = np.arange(3000, dtype=np.int64) * 300_000
>>> values = 50 + 10 * np.sin(np.arange(3000) * 2 * np.pi / 288)
>>> values[2500] = 90.0
>>> scores = StreamingDetector().score_arrays(ts, values)
>>> int(np.argmax(scores)), bool(scores[2500] > 0.5), bool(scores[1000:2500].max() < 0.3)
(2500, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field

from perfml.detectors.base import Detector, DetectorParams, State, register
from perfml.detectors.binned import rebin
from perfml.detectors.errors import BadInputError
from perfml.detectors.frames import Floats, Millis

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
GRID_MARGIN = 0.1
"""A widened grid reaches past the new value by this share of the range seen."""
RENORMALISE = 1e-4
"""Stored counts are rescaled when their lazy decay factor falls below this."""
NOVEL_BELOW = 0.5
PRIOR_CHUNK = 20_000
"""Series merged at a time into the fleet prior."""
"""A point is new when less remembered mass than this lies within the tolerance of it."""

# The numbers every series keeps once, one column each of ``memory``...
SCALE, LAST_TS, SEEN, RECENT_AT, RECENT_TOTAL, LAST_VALUE, PHASE_SCALE, STEP = range(8)
SHARED = 8
# ... and those it keeps per view, from the view's first column.
SPAN_LO, SPAN_HI, GRID_LO, GRID_HI, TOTAL, NOVEL, W_GLOBAL, W_PHASE, W_RECENT, ALARM = range(10)
FIELDS = 10


@dataclass(frozen=True)
class View:
    """One way of looking at a series' points, with memories of its own: the value itself
    (``level``) or its change since the series' previous point (``change``)."""

    name: str
    first: int
    """Its first column in ``memory``."""
    bins: int
    """Bins of its long-run histogram (and of the recent one)."""
    phases: int
    """Its time-of-day histograms, one per ``24 / phases`` hours."""
    phase_bins: int
    """Bins of each time-of-day histogram."""
    neighbours: int
    """Phases either side that count with a point's own."""
    recent: bool
    """Whether it has a recent expert."""

    def column(self, field: int) -> int:
        return self.first + field

    @property
    def experts(self) -> list[int]:
        return [self.column(W_GLOBAL), self.column(W_PHASE), self.column(W_RECENT)]


LEVEL = View("level", SHARED, bins=60, phases=48, phase_bins=20, neighbours=1, recent=True)
CHANGE = View(
    "change", SHARED + FIELDS, bins=40, phases=24, phase_bins=20, neighbours=1, recent=False
)
VIEWS = (LEVEL, CHANGE)
MEMORY = SHARED + FIELDS * len(VIEWS)

Bank = dict[str, npt.NDArray[Any]]
"""The states of many series: ``memory`` (rows × 28 float64); per view, the long-run
histogram ``<view>_counts`` (rows × 60 float32) and the time-of-day histograms
``<view>_phase`` (rows × phases × 20 float16) with their totals ``<view>_phase_total``
(rows × phases float32); and the level's recent histogram ``level_recent``."""


@register
class StreamingDetector(Detector):
    """Scores each point by how improbable its value, and its change, are under mixtures of
    remembered contexts."""

    name = "streaming"
    state_version = 3
    vectorised: ClassVar[bool] = True
    max_state_bytes = 4096
    default_threshold = 0.35
    """NAB's threshold over the 51 files of six categories (standard profile): 0.354."""

    class Params(DetectorParams):
        resolution: float = Field(
            0.05, gt=0.0, le=0.25, description="tolerance: a fraction of the range of the history"
        )
        history: int = Field(
            8064,
            ge=32,
            le=16_128,
            description="points of long-run memory (4 weeks of 5-minute samples; at most 8 "
            "weeks, as the time-of-day counts are kept in half precision)",
        )
        recent_hours: float = Field(24.0, gt=0.0, description="the recent expert's memory")
        share: float = Field(0.05, gt=0.0, lt=1.0, description="fixed share of the mixture")
        rearm_hours: float = Field(96.0, gt=0.0, description="decay of the alarm level")
        rearm_factor: float = Field(
            0.5, ge=0.0, le=1.0, description="weight of an alarm below the alarm level"
        )
        change_weight: float = Field(
            0.9, ge=0.0, le=1.0, description="weight of the change's score beside the value's"
        )
        full_scale: float = Field(10.0, gt=0.0, description="-log10 probability scoring 1")
        warmup: int = Field(10, ge=1, description="points learnt before the first score")

    params: Params

    def reset(self) -> None:
        self.bank = self.new_bank(1)
        p = self.params
        self._kernel_params = np.array(
            [p.resolution, p.history, p.recent_hours, p.share, p.rearm_hours, p.rearm_factor,
             p.change_weight, p.full_scale, p.warmup],
            np.float64,
        )  # fmt: skip
        """The parameters as the compiled kernel takes them (its ``P_*`` positions)."""

    # -- many series -------------------------------------------------------------------------

    def new_bank(self, rows: int) -> Bank:
        """The states of ``rows`` series that have seen nothing."""
        memory = np.zeros((rows, MEMORY))
        memory[:, SCALE] = memory[:, PHASE_SCALE] = 1.0
        memory[:, LAST_TS] = memory[:, LAST_VALUE] = np.nan
        bank = {"memory": memory}
        for view in VIEWS:
            memory[:, view.experts] = 1.0 / (3.0 if view.recent else 2.0)
            if not view.recent:
                memory[:, view.column(W_RECENT)] = 0.0
            bank[f"{view.name}_counts"] = np.zeros((rows, view.bins), np.float32)
            if view.recent:
                bank[f"{view.name}_recent"] = np.zeros((rows, view.bins), np.float32)
            bank[f"{view.name}_phase"] = np.zeros((rows, view.phases, view.phase_bins), np.float16)
            bank[f"{view.name}_phase_total"] = np.zeros((rows, view.phases), np.float32)
        return bank

    def step_rows(
        self, bank: Bank, rows: npt.NDArray[np.intp], ts: Millis, values: Floats, learn: bool
    ) -> Floats:
        """Score each point ``(rows[i], ts[i], values[i])`` of the series of ``bank`` in the
        order given (a series' points must not go back in time); with ``learn``, learn each
        before the next (``bank`` is changed in place). A series scores the same bits alone
        or among others, whatever the order of the others' points."""
        from perfml.detectors.sketch_kernel import step

        scores: Floats = step(
            bank["memory"], bank["level_counts"], bank["level_recent"],
            bank["level_phase"].view(np.uint16), bank["level_phase_total"],
            bank["change_counts"], bank["change_phase"].view(np.uint16),
            bank["change_phase_total"], np.ascontiguousarray(rows, np.int64),
            np.ascontiguousarray(ts, np.int64), np.ascontiguousarray(values, np.float64), learn,
            self._kernel_params, LEVEL.first, CHANGE.first, LEVEL.neighbours, CHANGE.neighbours,
        )  # fmt: skip
        return scores

    def prior(self, bank: Bank) -> Bank:
        """One state that summarises every series of ``bank``: the fleet prior a series never
        seen starts from. Each view's counts are put on one grid (the union of theirs) and
        averaged; the mixtures' weights are averaged; the alarm levels start at zero. The
        series are read :data:`PRIOR_CHUNK` at a time, so a bank of millions merges in
        bounded memory."""
        memory = bank["memory"]
        seen = np.flatnonzero(memory[:, SEEN] > 0)
        merged = self.new_bank(1)
        if not len(seen):
            return merged
        into = merged["memory"][0]
        latest = memory[seen, RECENT_AT].max()
        tau = self.params.recent_hours * HOUR_MS
        for view in VIEWS:
            c = view.column
            has = seen[memory[seen, c(GRID_HI)] > memory[seen, c(GRID_LO)]]  # the view learnt
            if not len(has):
                continue
            lo, hi = memory[has, c(GRID_LO)].min(), memory[has, c(GRID_HI)].max()
            sums = {name: np.zeros(merged[name].shape[1:]) for name in _histograms(view)}
            totals = np.zeros(view.phases)
            for part in np.array_split(has, max(1, len(has) // PRIOR_CHUNK)):
                own = memory[part]
                # What each kind of stored count is divided by (or relative to), per series.
                stored = {
                    "counts": own[:, SCALE],
                    "phase": own[:, PHASE_SCALE],
                    "recent": np.exp(-(latest - own[:, RECENT_AT]) / tau),
                }
                low, high = own[:, c(GRID_LO)], own[:, c(GRID_HI)]
                for name in _histograms(view):
                    factor = stored[name.rsplit("_", 1)[1]]
                    moved = rebin(bank[name][part], low, high, np.full_like(low, lo),
                                  np.full_like(high, hi)).astype(np.float64)  # fmt: skip
                    sums[name] += (moved * factor.reshape(-1, *[1] * (moved.ndim - 1))).sum(0)
                totals += (bank[f"{view.name}_phase_total"][part] * stored["phase"][:, None]).sum(0)
            for name, total in sums.items():
                merged[name][0] = (total / len(has)).astype(merged[name].dtype)
            merged[f"{view.name}_phase_total"][0] = totals / len(has)
            own = memory[has]
            into[c(SPAN_LO)], into[c(SPAN_HI)] = own[:, c(SPAN_LO)].min(), own[:, c(SPAN_HI)].max()
            into[c(GRID_LO)], into[c(GRID_HI)] = lo, hi
            into[c(TOTAL)] = np.mean(own[:, c(TOTAL)] * own[:, SCALE])
            into[c(NOVEL)] = np.mean(own[:, c(NOVEL)] * own[:, SCALE])
            weights = own[:, view.experts].mean(axis=0)
            into[view.experts] = weights / weights.sum()
        shown = memory[seen]
        into[SCALE] = into[PHASE_SCALE] = 1.0
        into[RECENT_AT] = latest
        into[RECENT_TOTAL] = np.mean(
            shown[:, RECENT_TOTAL] * np.exp(-(latest - shown[:, RECENT_AT]) / tau)
        )
        into[LAST_TS] = shown[:, LAST_TS].max()
        into[LAST_VALUE] = np.nan  # a new series' first point has no change
        into[STEP] = np.median(shown[:, STEP])
        into[SEEN] = shown[:, SEEN].max()
        return merged

    # -- one series --------------------------------------------------------------------------

    _ROW = np.zeros(1, np.intp)

    def update(self, ts: int, value: float | Floats) -> float:
        x = np.array([_scalar(value, self.name)])
        return float(self.step_rows(self.bank, self._ROW, np.array([ts], np.int64), x, True)[0])

    def score_arrays(self, ts: Millis, values: Floats) -> Floats:
        column = _column(values, self.name)
        return self.step_rows(self.bank, np.zeros(len(column), np.intp), ts, column, True)

    def learn(self, ts: Millis, values: Floats) -> None:
        self.score_arrays(ts, values)

    def score_values(self, ts: Millis, values: Floats) -> Floats:
        """Scores of the rows; the detector is left unchanged.

        One row (the common online request) is scored in place, as nothing is learnt before
        it; more rows are scored by a :meth:`copy`, which learns each before the next.
        """
        if len(ts) != 1:
            return self.copy().score_arrays(ts, values)
        column = _column(values, self.name)
        return self.step_rows(self.bank, self._ROW, ts[:1], column[:1], False)

    def copy(self) -> Self:
        twin = self.__class__(**self.params.model_dump())
        twin.bank = {name: array.copy() for name, array in self.bank.items()}
        twin.columns = None if self.columns is None else list(self.columns)
        return twin

    # -- state ------------------------------------------------------------------------------

    def get_state(self) -> State:
        return {}, {name: array.copy() for name, array in self.bank.items()}

    def set_state(self, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
        fresh = self.new_bank(1)
        for name, array in fresh.items():
            given = arrays.get(name)
            if given is None or given.shape != array.shape or given.dtype != array.dtype:
                raise ValueError(f"state array {name!r} missing or of the wrong shape or dtype")
        self.bank = {name: arrays[name].copy() for name in fresh}


def _histograms(view: View) -> list[str]:
    """The bank's histograms of ``view`` (their last axis is its grid)."""
    return [f"{view.name}_{part}" for part in ("counts", "recent", "phase")
            if part != "recent" or view.recent]  # fmt: skip


def _scalar(value: float | Floats, detector: str) -> float:
    if isinstance(value, float | int):
        return float(value)
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size != 1:
        raise BadInputError(detector, f"scores one value column, got {array.size} values")
    return float(array[0])


def _column(values: Floats, detector: str) -> Floats:
    if values.ndim != 1:
        raise BadInputError(detector, f"scores one value column, got {values.shape[1]}")
    return values.astype(np.float64, copy=False)
